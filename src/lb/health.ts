/**
 * Health probes as a state machine per target, apart from the sockets that carry them: the monitor
 * decides when to probe and what a result means; a `Prober` (lb/probe.ts on loopback, something else
 * inside a network namespace) sends the probe. Tests drive the monitor with a manual clock and a fake
 * prober, and the real prober against real sockets.
 *
 * Semantics (Azure's): a probe goes out every `intervalMs`; a backend is up after its first success,
 * and down once it has failed to answer for `timeoutMs` (so within interval + timeout of its last
 * success). A new backend is `unknown` (and receives no flow) until its first answer; while unknown it
 * is probed more often than the interval, so a workload that starts in 100 ms serves in about as much
 * rather than after a whole interval. A backend can also be marked down from outside (passive health,
 * an exited workload): it is out at once, and back after the first probe sent since then passes; or
 * held down until released (a workload being replaced: the old process answers until it is stopped).
 */
import type { TimeSource, Timer } from './time.ts';

export type HealthState = 'up' | 'down' | 'unknown';

export interface ProbeSpec {
  readonly protocol: 'tcp' | 'http';
  /** Dotted-quad text: the prober connects to it as it is. */
  readonly address: string;
  readonly port: number;
  readonly path?: string;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /**
   * The network the address belongs to (its subscription), for drivers where equal addresses of
   * two subscriptions are different hosts (netns: the probe runs inside that subscription's router).
   */
  readonly network?: string;
}

export interface ProbeResult {
  readonly ok: boolean;
  /** What happened, for people: `HTTP 200`, `connection refused`, `no answer within 5000 ms`. */
  readonly detail: string;
}

/**
 * Sends one probe. It must settle by `deadlineWallMs` wall-clock milliseconds (answering not-ok when
 * nothing came back in time) and never reject.
 */
export type Prober = (spec: ProbeSpec, deadlineWallMs: number) => Promise<ProbeResult>;

export interface HealthStatus {
  readonly state: HealthState;
  /** Model time of the last change of `state`. */
  readonly since: number;
  readonly detail: string | null;
}

/** While a backend has never answered, it is probed at least this often (model ms). */
export const UNKNOWN_RETRY_MS = 1000;

interface Target {
  spec: ProbeSpec;
  status: HealthStatus;
  /** Model time of the last success, or of the target's creation before any. */
  lastOk: number;
  everOk: boolean;
  timer: Timer | undefined;
  /** Replaced or removed targets ignore the results of probes they had in flight. */
  live: boolean;
  /** Bumped by markDown(): a probe sent before it cannot bring the target back up. */
  generation: number;
  /** Marked down from outside (failed connects, an exited workload): probed often until it is up. */
  forced: boolean;
  /** Held down whatever its probes say, until released (its workload is being replaced). */
  held: boolean;
}

const sameSpec = (a: ProbeSpec, b: ProbeSpec) =>
  a.protocol === b.protocol &&
  a.address === b.address &&
  a.port === b.port &&
  a.path === b.path &&
  a.intervalMs === b.intervalMs &&
  a.timeoutMs === b.timeoutMs;

export interface HealthMonitorOptions {
  prober: Prober;
  time: TimeSource;
  /** Called on every change of a target's state (not on its creation as unknown). */
  onChange: (key: string, status: HealthStatus) => void;
}

export class HealthMonitor {
  private readonly targets = new Map<string, Target>();
  private closed = false;

  constructor(private readonly opts: HealthMonitorOptions) {}

  /**
   * Sets the whole set of targets. A target whose spec is unchanged keeps its state and its rhythm;
   * a new one, or one whose spec changed (a new DIP, say), starts again as unknown and is probed now.
   */
  setTargets(targets: ReadonlyMap<string, ProbeSpec>): void {
    if (this.closed) return;
    for (const [key, t] of this.targets) {
      if (!targets.has(key)) {
        this.drop(t);
        this.targets.delete(key);
      }
    }
    for (const [key, spec] of targets) {
      const old = this.targets.get(key);
      if (old !== undefined && sameSpec(old.spec, spec)) continue;
      const now = this.opts.time.now();
      if (old !== undefined) this.drop(old);
      const t: Target = {
        spec,
        status: { state: 'unknown', since: now, detail: old === undefined ? null : 'probe changed' },
        lastOk: now,
        everOk: false,
        timer: undefined,
        live: true,
        generation: 0,
        forced: false,
        held: false,
      };
      this.targets.set(key, t);
      if (old !== undefined && old.status.state !== 'unknown') this.opts.onChange(key, t.status);
      this.attempt(key, t);
    }
  }

  /**
   * Takes a target down now, on other evidence than its probe (passive health: connects failing in
   * a row; the agent: its workload exited). It comes back up only on a probe sent after this call,
   * and is probed as often as an unknown one meanwhile, so a restarted workload serves again soon.
   * False when the key is not a target.
   */
  markDown(key: string, detail: string, opts: { hold?: boolean } = {}): boolean {
    const t = this.targets.get(key);
    if (t === undefined || this.closed) return false;
    t.generation++;
    t.forced = true;
    if (opts.hold === true) t.held = true;
    if (t.status.state !== 'down') {
      t.status = { state: 'down', since: this.opts.time.now(), detail };
      this.opts.onChange(key, t.status);
    } else {
      t.status = { ...t.status, detail };
    }
    // Between probes: the next one comes at the quick rhythm. (A probe in flight reschedules itself.)
    if (t.timer !== undefined) {
      t.timer.cancel();
      t.timer = this.opts.time.after(Math.min(t.spec.intervalMs, UNKNOWN_RETRY_MS), () =>
        this.attempt(key, t),
      );
    }
    return true;
  }

  /**
   * Ends a hold of markDown(): from now on a passing probe (sent after this call) brings the target
   * back up. The agent holds a backend down while its workload is replaced, since the old process
   * still answers probes until it is stopped.
   */
  release(key: string): void {
    const t = this.targets.get(key);
    if (t === undefined || !t.held || this.closed) return;
    t.held = false;
    t.generation++;
  }

  status(key: string): HealthStatus | undefined {
    return this.targets.get(key)?.status;
  }

  keys(): IterableIterator<string> {
    return this.targets.keys();
  }

  close(): void {
    this.closed = true;
    for (const t of this.targets.values()) this.drop(t);
    this.targets.clear();
  }

  private drop(t: Target): void {
    t.live = false;
    t.timer?.cancel();
    t.timer = undefined;
  }

  private attempt(key: string, t: Target): void {
    t.timer = undefined;
    const started = this.opts.time.now();
    const { spec, generation } = t;
    const deadline = this.opts.time.wallMs(Math.min(spec.intervalMs, spec.timeoutMs));
    void this.opts.prober(spec, deadline).then(
      (r) => this.settle(key, t, started, generation, r),
      (e: unknown) =>
        this.settle(key, t, started, generation, { ok: false, detail: `probe failed: ${String(e)}` }),
    );
  }

  private settle(key: string, t: Target, started: number, generation: number, r: ProbeResult): void {
    if (!t.live || this.closed) return;
    const now = this.opts.time.now();
    const { state } = t.status;
    let next: HealthState = state;
    if (generation !== t.generation || t.held) {
      // Sent before the target was marked down (or released), or held: its answer says nothing of now.
    } else if (r.ok) {
      t.forced = false;
      t.lastOk = now;
      t.everOk = true;
      next = 'up';
    } else if (state !== 'down' && now - t.lastOk >= t.spec.timeoutMs) {
      next = 'down';
    }
    if (next !== state) {
      t.status = { state: next, since: now, detail: r.detail };
      this.opts.onChange(key, t.status);
    } else if (t.status.detail !== r.detail) {
      t.status = { ...t.status, detail: r.detail };
    }
    const quick = t.status.state === 'unknown' || (t.forced && t.status.state === 'down');
    const period = quick ? Math.min(t.spec.intervalMs, UNKNOWN_RETRY_MS) : t.spec.intervalMs;
    t.timer = this.opts.time.after(Math.max(0, started + period - now), () => this.attempt(key, t));
  }
}
