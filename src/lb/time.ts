/**
 * Time for the balancer and the agent. Every duration they are configured with (probe intervals and
 * timeouts, idle timeouts) is in model milliseconds, as the user wrote it; a `TimeSource` maps model
 * time onto the wall clock. Production runs at scale 1. Tests run the same code at a scale such as
 * 0.01, so a 4-minute idle timeout passes in 2.4 s of wall time without the endpoint validation
 * (4 to 30 minutes, probes every 5 s or more) being weakened for them.
 */

export interface Timer {
  cancel(): void;
}

export interface TimeSource {
  /** Model milliseconds since an arbitrary origin; only differences mean anything. */
  now(): number;
  /** Runs `fn` once after `ms` model milliseconds. The timer never keeps the process alive. */
  after(ms: number, fn: () => void): Timer;
  /** The wall-clock milliseconds that `ms` model milliseconds last (for timeouts handed to Node). */
  wallMs(ms: number): number;
  /** The model-time clock as wall-clock ISO text, for `since` fields that people read. */
  iso(modelMs: number): string;
}

/** Wall time scaled by `scale` (1 = real time; 0.01 = a hundred times faster). */
export function scaledTime(scale = 1): TimeSource {
  if (!(scale > 0 && scale <= 1)) throw new RangeError(`time scale ${scale} must be in (0, 1]`);
  // Model time starts at the wall clock's now, so that iso() of a recent instant reads as a recent date.
  const originWall = Date.now();
  const originPerf = performance.now();
  const now = () => originWall + (performance.now() - originPerf) / scale;
  return {
    now,
    after(ms, fn) {
      const t = setTimeout(fn, Math.max(0, ms * scale));
      t.unref();
      return { cancel: () => clearTimeout(t) };
    },
    wallMs: (ms) => Math.max(1, Math.round(ms * scale)),
    iso: (modelMs) => new Date(originWall + (modelMs - originWall) * scale).toISOString(),
  };
}

/** A clock that moves only when told to, for unit tests of the pure parts (no real timer at all). */
export class ManualTime implements TimeSource {
  private t = Date.UTC(2026, 0, 1);
  private readonly timers = new Set<{ at: number; fn: () => void }>();

  now(): number {
    return this.t;
  }

  after(ms: number, fn: () => void): Timer {
    const entry = { at: this.t + Math.max(0, ms), fn };
    this.timers.add(entry);
    return { cancel: () => this.timers.delete(entry) };
  }

  wallMs(ms: number): number {
    return ms;
  }

  iso(modelMs: number): string {
    return new Date(modelMs).toISOString();
  }

  /** Moves the clock forward by `ms`, running every timer that falls due, in time order. */
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      let next: { at: number; fn: () => void } | undefined;
      for (const e of this.timers) if (e.at <= end && (next === undefined || e.at < next.at)) next = e;
      if (next === undefined) break;
      this.timers.delete(next);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }

  get pending(): number {
    return this.timers.size;
  }
}
