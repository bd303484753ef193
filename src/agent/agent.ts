/**
 * The agent: control-plane state → desired data-plane state → driver reconcile, and workloads.
 *
 * Control path only. A committed change (pushed by the source) starts a cycle: snapshot, compute
 * the desired state (desired.ts, pure), point the health monitor at the probed backends, reconcile
 * the driver, reconcile the workloads. Cycles never overlap; changes that arrive during one are
 * folded into the next. A health change reconciles the driver again from the last desired state,
 * without a snapshot. Reports (health, workloads, listeners) go back to the control plane soon after
 * anything changes, and on a heartbeat so that silence means trouble.
 */
import type { BackendFault, DataPlaneDriver, DesiredDataPlane, DesiredEndpoint } from '../dataplane/index.ts';
import { HealthMonitor, type HealthStatus, type TimeSource } from '../lb/index.ts';
import {
  desiredState,
  sharedHostCommand,
  workloadCommand,
  type AgentDesired,
  type AgentScope,
} from './desired.ts';
import { AGENT_HEARTBEAT_MS } from './registry.ts';
import type { AgentReport, BackendReport } from './report.ts';
import type { ControlSource } from './source.ts';
import type { SandboxOptions } from './sandbox.ts';
import { WorkloadSupervisor } from './workloads.ts';

/**
 * Between taking a backend out of rotation and stopping its workload: connections the balancer sent
 * it just before (connect in flight, request not yet read) finish first, as a Kubernetes preStop sleep
 * does. Wall milliseconds; only cycles that stop or restart a workload wait, and they do not hold up
 * the next cycle's data plane.
 */
export const DRAIN_MS = 500;

/** Output lines are reported in batches at most this often; state changes go at once. */
export const REPORT_BATCH_MS = 250;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5000;

export interface AgentOptions {
  name: string;
  source: ControlSource;
  driver: DataPlaneDriver;
  time: TimeSource;
  scope: AgentScope;
  /** The vipdip entry point (bin/vipdip.js) that runs the built-in workloads. */
  vipdipBin: string;
  heartbeatMs?: number;
  stopGraceMs?: number;
  /** How long a backend leaving rotation keeps its workload (DRAIN_MS by default). */
  drainMs?: number;
  /** Where the agent says what went wrong (a listener that cannot bind, a report that failed). */
  log?: (line: string) => void;
  /** Where and how workloads are sandboxed (sandbox.ts). */
  sandbox?: SandboxOptions;
}

export class Agent {
  private desired: AgentDesired | undefined;
  private readonly health: HealthMonitor | undefined;
  private readonly supervisor: WorkloadSupervisor;
  /** When each unprobed backend was first seen: its `since`. */
  private readonly firstSeen = new Map<string, number>();
  private unsubscribe: (() => void) | undefined;
  private unsubscribeFaults: (() => void) | undefined;
  private running = false;
  private dirty = false;
  private closed = false;
  private retryMs = RETRY_FIRST_MS;
  private retryTimer: NodeJS.Timeout | undefined;
  private reportTimer: NodeJS.Timeout | undefined;
  private reportDue = Infinity;
  private heartbeat: NodeJS.Timeout | undefined;
  private workloadRun: Promise<void> = Promise.resolve();
  private lastFailures = '';
  /** Cycles completed, for tests and status. */
  cycles = 0;

  constructor(private readonly opts: AgentOptions) {
    const { driver, scope, time } = opts;
    if (driver.carriesTraffic && scope.lb && driver.prober !== undefined) {
      this.health = new HealthMonitor({
        prober: driver.prober,
        time,
        onChange: (key, status) => this.onHealth(key, status),
      });
    }
    this.supervisor = new WorkloadSupervisor({
      command: (w) =>
        driver.wrapWorkload(
          { service: w.service, vm: w.vm, dip: w.dip },
          workloadCommand(w.launch, opts.vipdipBin),
        ),
      sharedHost: sharedHostCommand(opts.vipdipBin),
      onChange: () => this.scheduleReport(REPORT_BATCH_MS),
      onExit: (key, how) => this.onWorkloadExit(key, how),
      ...(opts.stopGraceMs !== undefined ? { stopGraceMs: opts.stopGraceMs } : {}),
      ...(opts.sandbox !== undefined ? { sandbox: opts.sandbox } : {}),
    });
  }

  /** Subscribes to changes and runs the first cycle; resolves once the data plane matches the state. */
  async start(): Promise<void> {
    this.unsubscribe = this.opts.source.subscribe(() => this.kick());
    if (this.health !== undefined)
      this.unsubscribeFaults = this.opts.driver.onBackendFault((f) => this.onFault(f));
    this.heartbeat = setInterval(() => this.scheduleReport(0), this.opts.heartbeatMs ?? AGENT_HEARTBEAT_MS);
    this.heartbeat.unref();
    this.kick();
    await this.settled();
  }

  /** Asks for a cycle: now if idle, else right after the running one. */
  kick(): void {
    if (this.closed) return;
    if (this.running) {
      this.dirty = true;
      return;
    }
    void this.loop();
  }

  /** Resolves when no cycle is running or pending (and the workloads have been reconciled). */
  async settled(): Promise<void> {
    while (this.running || this.dirty) await new Promise((r) => setTimeout(r, 5));
    await this.workloadRun;
  }

  /**
   * Stops everything this agent runs (workloads get SIGTERM, then SIGKILL after the grace period;
   * listeners close), then sends a last report saying so: no backend, every workload stopped.
   */
  async stop(): Promise<void> {
    this.closed = true;
    this.unsubscribe?.();
    this.unsubscribeFaults?.();
    clearTimeout(this.retryTimer);
    clearInterval(this.heartbeat);
    clearTimeout(this.reportTimer);
    while (this.running) await new Promise((r) => setTimeout(r, 5));
    this.health?.close();
    await this.supervisor.close();
    await this.opts.driver.close();
    this.desired = undefined;
    try {
      await this.opts.source.report(this.report());
    } catch {
      // The control plane may be gone first; this agent's report then goes stale there.
    }
    await this.opts.source.close();
  }

  /** Crashes the workload of `service/vm` if this agent runs it (SIGKILL; restarted as after any crash). */
  crashWorkload(service: string, vm: string): boolean {
    return this.supervisor.crash(`${service}/${vm}`);
  }

  /** The report as it stands. */
  report(): AgentReport {
    const d = this.desired;
    const backends: BackendReport[] = [];
    for (const b of d?.backends ?? []) {
      let state: BackendReport['state'] = 'up';
      let since = this.firstSeen.get(b.key) ?? this.opts.time.now();
      let detail: string | null =
        'no probe (UDP): in rotation while its VM runs, out while its port is unreachable';
      if (!this.opts.driver.carriesTraffic) {
        state = 'unknown';
        detail = `the ${this.opts.driver.name} driver carries no traffic`;
      } else if (b.probed) {
        const s = this.health?.status(b.key);
        state = s?.state ?? 'unknown';
        since = s?.since ?? since;
        detail = s?.detail ?? null;
        if (b.check === 'implicit') {
          const what = `implicit TCP check of ${b.dip}:${b.localPort} (the endpoint has no probe)`;
          detail = detail === null ? what : `${what}: ${detail}`;
        }
      }
      backends.push({
        subscription: b.subscription,
        service: b.service,
        endpoint: b.endpoint,
        vm: b.vm,
        dip: b.dip,
        localPort: b.localPort,
        state,
        since: this.opts.time.iso(since),
        detail,
      });
    }
    return {
      agent: this.opts.name,
      hosts: this.opts.scope.hosts === null ? null : [...this.opts.scope.hosts].sort(),
      lb: this.opts.scope.lb,
      driver: this.opts.driver.name,
      backends,
      workloads: this.supervisor.reports(),
      listeners: [...this.opts.driver.status().listeners],
    };
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      do {
        this.dirty = false;
        await this.cycle();
      } while (this.dirty && !this.closed);
    } finally {
      this.running = false;
    }
  }

  private async cycle(): Promise<void> {
    let desired: AgentDesired;
    try {
      desired = desiredState(await this.opts.source.snapshot(), this.opts.scope);
    } catch (e) {
      this.log(
        `cannot read the control plane's state: ${(e as Error).message}; retrying in ${this.retryMs} ms`,
      );
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.kick(), this.retryMs);
      this.retryTimer.unref();
      this.retryMs = Math.min(RETRY_MAX_MS, this.retryMs * 2);
      return;
    }
    this.retryMs = RETRY_FIRST_MS;
    if (this.closed) return;
    this.desired = desired;
    const now = this.opts.time.now();
    const keys = new Set(desired.backends.map((b) => b.key));
    for (const k of this.firstSeen.keys()) if (!keys.has(k)) this.firstSeen.delete(k);
    for (const k of keys) if (!this.firstSeen.has(k)) this.firstSeen.set(k, now);
    this.health?.setTargets(desired.probes);
    // Draining: a backend whose workload is about to be stopped leaves rotation first. A VM that stops,
    // deallocates or moves is no longer a backend of `desired` at all; one whose workload restarts in
    // place (same DIP, new environment) is marked down until its check passes on the new process.
    const held: string[] = [];
    for (const key of this.supervisor.restarting(desired.workloads)) {
      for (const b of desired.backends) {
        if (`${b.service}/${b.vm}` !== key) continue;
        // Held: the old process answers probes until it is stopped, and must not be put back.
        if (this.health?.markDown(b.key, 'the workload is restarting', { hold: true }) === true)
          held.push(b.key);
      }
    }
    // The data plane first, the workloads after: no new flow goes to a process about to be stopped,
    // and the flows sent to it just before get DRAIN_MS to be served.
    await this.pushDataPlane();
    const draining =
      this.supervisor.stopping(desired.workloads).length > 0 ||
      this.supervisor.restarting(desired.workloads).length > 0;
    // Chained, so that workload reconciles keep the order of the cycles whatever each one waits.
    this.workloadRun = this.workloadRun
      .then(async () => {
        if (draining && !this.closed) await new Promise((r) => setTimeout(r, this.opts.drainMs ?? DRAIN_MS));
        if (this.closed) return;
        await this.supervisor.reconcile(desired.workloads, desired.knownWorkloads);
        // The new processes run: their checks decide from now on.
        for (const k of held) this.health?.release(k);
      })
      .catch((e: unknown) => this.log(`workloads: ${(e as Error).message}`));
    this.cycles++;
    this.scheduleReport(0);
  }

  private dataPlane(d: AgentDesired): DesiredDataPlane {
    const healthy = (probe: string | null) =>
      probe === null ? true : this.health?.status(probe)?.state === 'up';
    const endpoints: DesiredEndpoint[] = d.endpoints.map((e) => ({
      ...e,
      backends: e.backends.map((b) => ({
        id: b.id,
        vm: b.vm,
        dip: b.dip,
        port: b.port,
        healthy: healthy(b.probe),
      })),
    }));
    return {
      endpoints,
      snat: d.snat,
      ...(d.vms !== undefined ? { vms: d.vms } : {}),
      ...(d.vnets !== undefined ? { vnets: d.vnets } : {}),
    };
  }

  private async pushDataPlane(): Promise<void> {
    if (this.desired === undefined) return;
    try {
      const r = await this.opts.driver.reconcile(this.dataPlane(this.desired));
      const failures = r.failed.map((f) => f.error).join('; ');
      if (failures !== '' && failures !== this.lastFailures) this.log(failures);
      this.lastFailures = failures;
    } catch (e) {
      this.log(`the ${this.opts.driver.name} driver failed to reconcile: ${(e as Error).message}`);
    }
  }

  /** Passive health faulted DIP:port: every backend there is down until its check passes again. */
  private onFault(f: BackendFault): void {
    if (this.closed) return;
    for (const b of this.desired?.backends ?? []) {
      if (b.dip === f.dip && b.localPort === f.port) this.health?.markDown(b.key, f.detail);
    }
  }

  /** A workload exited unasked: its backends leave rotation now; the check brings them back. */
  private onWorkloadExit(key: string, how: string): void {
    if (this.closed) return;
    for (const b of this.desired?.backends ?? []) {
      if (`${b.service}/${b.vm}` === key) this.health?.markDown(b.key, `the workload exited (${how})`);
    }
  }

  private onHealth(_key: string, _status: HealthStatus): void {
    if (this.closed) return;
    // The report follows the data plane, so a backend reads down only once no new flow can reach it.
    void this.pushDataPlane().then(() => this.scheduleReport(0));
  }

  /** Sends the report within `delayMs` (sooner if already due sooner). */
  private scheduleReport(delayMs: number): void {
    if (this.closed) return;
    const due = Date.now() + delayMs;
    if (this.reportTimer !== undefined && this.reportDue <= due) return;
    clearTimeout(this.reportTimer);
    this.reportDue = due;
    this.reportTimer = setTimeout(() => {
      this.reportTimer = undefined;
      this.reportDue = Infinity;
      this.opts.source.report(this.report()).catch((e: unknown) => {
        this.log(`cannot report to the control plane: ${(e as Error).message}`);
      });
    }, delayMs);
    this.reportTimer.unref();
  }

  private log(line: string): void {
    (this.opts.log ?? ((l: string) => process.stderr.write(`vipdip agent ${this.opts.name}: ${l}\n`)))(line);
  }
}
