/**
 * Passive health: what real connections say about a backend, between probes. Each failed connect
 * (refused, reset before any byte, no answer within the connect timeout; an ICMP unreachable for
 * UDP) counts; a successful one clears the count. At `threshold` consecutive failures the backend
 * trips: new flows avoid it at once, and the owner is told (once) so that its health turns down
 * until a probe passes again. A trip is a bridge, not a verdict: it lasts until the owner
 * acknowledges it (the backend is then out of the picker itself) or, if nobody does, for `holdMs`,
 * after which one more flow may try it (a half-open circuit breaker).
 *
 * Pure apart from the clock it is given; keyed by numbers (address × 65536 + port) so that the per-flow
 * check allocates nothing.
 */

/** Consecutive failed connects that take a backend out of rotation (HAProxy's `fall 3`). */
export const PASSIVE_FAILURE_THRESHOLD = 3;
/** An unacknowledged trip lasts this long (wall milliseconds). */
export const PASSIVE_HOLD_MS = 5000;

export const backendKey = (address: number, port: number): number => address * 65536 + port;

export interface PassiveHealthOptions {
  threshold?: number;
  holdMs?: number;
  /** Wall-clock milliseconds. */
  now?: () => number;
}

export class PassiveHealth {
  readonly threshold: number;
  private readonly holdMs: number;
  private readonly now: () => number;
  private readonly failures = new Map<number, number>();
  /** Tripped backends → when they tripped. */
  private readonly tripped = new Map<number, number>();

  constructor(opts: PassiveHealthOptions = {}) {
    this.threshold = opts.threshold ?? PASSIVE_FAILURE_THRESHOLD;
    this.holdMs = opts.holdMs ?? PASSIVE_HOLD_MS;
    this.now = opts.now ?? Date.now;
    if (!Number.isInteger(this.threshold) || this.threshold < 1) {
      throw new RangeError(`the passive failure threshold must be a positive integer, not ${this.threshold}`);
    }
  }

  /** Counts one failed connect; true exactly when this failure trips the backend. */
  failure(key: number): boolean {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    if (n < this.threshold || this.isOut(key)) return false;
    this.tripped.set(key, this.now());
    return true;
  }

  /** A connect that completed: the count starts again (a trip stays until acknowledged or held out). */
  success(key: number): void {
    if (this.failures.has(key)) this.failures.delete(key);
  }

  /** Whether new flows must avoid the backend. */
  isOut(key: number): boolean {
    if (this.tripped.size === 0) return false;
    const at = this.tripped.get(key);
    if (at === undefined) return false;
    if (this.now() - at < this.holdMs) return true;
    // Held out long enough without anyone taking over: let the next flow try it.
    this.tripped.delete(key);
    this.failures.set(key, this.threshold - 1);
    return false;
  }

  /** The owner has taken the backend out (or it is gone): forget what this monitor knew of it. */
  clear(key: number): void {
    this.tripped.delete(key);
    this.failures.delete(key);
  }

  /** Forgets every backend not in `keep` (backends that left every set). */
  retain(keep: ReadonlySet<number>): void {
    for (const k of this.failures.keys()) if (!keep.has(k)) this.failures.delete(k);
    for (const k of this.tripped.keys()) if (!keep.has(k)) this.tripped.delete(k);
  }

  /** Consecutive failures counted for the backend now. */
  count(key: number): number {
    return this.failures.get(key) ?? 0;
  }
}
