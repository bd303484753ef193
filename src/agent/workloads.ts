/**
 * Workload supervision: one instance per running VM that has a workload: a process (group) of its
 * own, or, for a built-in in a network namespace, its share of a shared host (shared-hosts.ts). A
 * workload is started
 * with its VM's identity and addresses in its environment, restarted when that environment changes
 * (a new DIP, a move to another host), stopped with SIGTERM and, after a grace period, SIGKILL when
 * its VM stops, and restarted with exponential backoff when it crashes. Its last output lines are
 * kept, also after it stops, for `vipdip logs`.
 */
import { setnsSyscall, type WorkloadCommand } from '../dataplane/index.ts';
import type { DesiredWorkload } from './desired.ts';
import { ownProcess, type Instance, type InstanceEvents } from './instance.ts';
import {
  LOG_BYTES_KEPT,
  LOG_LINES_KEPT,
  LOG_LINE_MAX_CHARS,
  type LogLine,
  type WorkloadReport,
} from './report.ts';
import {
  defaultSandboxRoot,
  prepareSandbox,
  removeSandbox,
  type Sandbox,
  type SandboxOptions,
} from './sandbox.ts';
import { SharedHosts } from './shared-hosts.ts';

/** SIGTERM, then SIGKILL after this long. */
export const STOP_GRACE_MS = 5000;
/** Restart delays after a crash: doubling from the first to the last. */
export const RESTART_BACKOFF_FIRST_MS = 500;
export const RESTART_BACKOFF_MAX_MS = 30_000;
/** A workload that ran this long before crashing starts its backoff again from the first delay. */
export const STABLE_RUN_MS = 10_000;

export interface SupervisorOptions {
  /** The command that runs a workload (the driver wraps it for where the VM lives). */
  command: (w: DesiredWorkload) => WorkloadCommand;
  /** Called after any change of a workload's status or output. */
  onChange?: () => void;
  /**
   * Called when a workload's process exits while it is wanted (a crash, a kill -9), before its
   * restart is scheduled: its backends must leave rotation now, not when a probe notices.
   */
  onExit?: (key: string, how: string) => void;
  now?: () => Date;
  stopGraceMs?: number;
  backoffFirstMs?: number;
  /** Where and how workloads are sandboxed (sandbox.ts); the defaults suit a test. */
  sandbox?: SandboxOptions;
  /**
   * `vipdip workload shared-host`: when given (and setns(2) is known here), the built-ins of VMs in
   * network namespaces run many to a shared host (shared-hosts.ts), not in a process each.
   */
  sharedHost?: WorkloadCommand;
}

type ProcOptions = Required<Pick<SupervisorOptions, 'now' | 'stopGraceMs' | 'backoffFirstMs'>> &
  Pick<SupervisorOptions, 'onChange' | 'onExit'> & {
    /** Starts an instance of a workload; throws when it cannot (no sandbox, say). */
    launch: (spec: DesiredWorkload, ev: InstanceEvents) => Instance;
  };

class Proc {
  status: WorkloadReport['status'] = 'starting';
  instance: Instance | undefined;
  restarts = 0;
  starts = 0;
  crashes = 0;
  startedAt = 0;
  lines: LogLine[] = [];
  /** The bytes of `lines`' texts: the ring is bounded in both. */
  private bytes = 0;
  private partial = { stdout: '', stderr: '' };
  private backoff: NodeJS.Timeout | undefined;
  private exited: Promise<void> = Promise.resolve();
  /** True while the supervisor wants this workload running. */
  wanted = false;

  constructor(
    public spec: DesiredWorkload,
    private readonly opts: ProcOptions,
  ) {}

  start(): void {
    this.wanted = true;
    clearTimeout(this.backoff);
    this.backoff = undefined;
    if (this.starts > 0) this.restarts++;
    this.starts++;
    this.status = 'starting';
    this.startedAt = Date.now();
    let resolveExit!: () => void;
    const exited = new Promise<void>((r) => (resolveExit = r));
    let instance: Instance | undefined;
    const mine = () => instance !== undefined && this.instance === instance;
    const events: InstanceEvents = {
      spawned: (pid) => {
        if (!mine()) return;
        this.status = 'running';
        this.note(`started ${this.spec.workload} as pid ${pid} on ${this.spec.dip}`);
      },
      output: (stream, text) => this.output(stream, text),
      failed: (message) => this.note(`cannot start: ${message}`),
      exited: (code, signal) => {
        this.flush();
        resolveExit();
        if (!mine()) return;
        this.instance = undefined;
        if (!this.wanted) {
          this.status = 'stopped';
          this.note(`stopped (${signal ?? `exit code ${code}`})`);
          return;
        }
        this.note(`exited with ${signal ?? `code ${code}`}`);
        this.opts.onExit?.(this.spec.key, signal ?? `code ${code}`);
        this.crashed();
      },
    };
    try {
      instance = this.opts.launch(this.spec, events);
    } catch (e) {
      this.note(`cannot start: ${(e as Error).message}`);
      this.crashed();
      return;
    }
    this.instance = instance;
    this.exited = exited;
    this.opts.onChange?.();
  }

  private crashed(): void {
    this.status = 'crashed';
    this.instance = undefined;
    if (Date.now() - this.startedAt >= STABLE_RUN_MS) this.crashes = 0;
    const delay = Math.min(RESTART_BACKOFF_MAX_MS, this.opts.backoffFirstMs * 2 ** this.crashes);
    this.crashes++;
    this.note(`restarting in ${delay} ms`);
    this.backoff = setTimeout(() => {
      if (this.wanted) this.start();
    }, delay);
    this.backoff.unref();
  }

  /** Stops the process: SIGTERM to its group, SIGKILL after the grace period. Resolves once it is gone. */
  async stop(): Promise<void> {
    this.wanted = false;
    clearTimeout(this.backoff);
    this.backoff = undefined;
    const instance = this.instance;
    if (instance === undefined || !instance.live) {
      if (this.status !== 'stopped') {
        this.status = 'stopped';
        this.opts.onChange?.();
      }
      return;
    }
    instance.signal('SIGTERM');
    const kill = setTimeout(() => instance.signal('SIGKILL'), this.opts.stopGraceMs);
    await this.exited;
    clearTimeout(kill);
  }

  report(): WorkloadReport {
    return {
      subscription: this.spec.subscription,
      service: this.spec.service,
      vm: this.spec.vm,
      workload: this.spec.workload,
      status: this.status,
      pid: this.instance?.pid ?? null,
      restarts: this.restarts,
      lines: [...this.lines],
    };
  }

  private output(stream: 'stdout' | 'stderr', text: string): void {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop()!;
    for (const p of parts) this.line(stream, p);
    if (this.partial[stream].length > LOG_LINE_MAX_CHARS) {
      this.line(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
    this.opts.onChange?.();
  }

  private flush(): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream] !== '') this.line(stream, this.partial[stream]);
      this.partial[stream] = '';
    }
  }

  private line(stream: 'stdout' | 'stderr', text: string): void {
    const t = text.endsWith('\r') ? text.slice(0, -1) : text;
    const kept = t.length > LOG_LINE_MAX_CHARS ? `${t.slice(0, LOG_LINE_MAX_CHARS)}…` : t;
    this.lines.push({ time: this.opts.now().toISOString(), stream, text: kept });
    this.bytes += Buffer.byteLength(kept);
    let drop = 0;
    while (
      this.lines.length - drop > 1 &&
      (this.lines.length - drop > LOG_LINES_KEPT || this.bytes > LOG_BYTES_KEPT)
    ) {
      this.bytes -= Buffer.byteLength(this.lines[drop]!.text);
      drop++;
    }
    if (drop > 0) this.lines.splice(0, drop);
  }

  /** The supervisor's own notes go into the same log, marked, so `vipdip logs` tells the whole story. */
  private note(text: string): void {
    this.line('stderr', `[vipdip] ${text}`);
    this.opts.onChange?.();
  }
}

export class WorkloadSupervisor {
  private readonly procs = new Map<string, Proc>();
  private readonly opts: ProcOptions;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private sandbox: Sandbox | Error | undefined;
  private shared: SharedHosts | undefined;
  private readonly sandboxOptions: SandboxOptions;

  constructor(opts: SupervisorOptions) {
    this.sandboxOptions = opts.sandbox ?? {};
    const setns = setnsSyscall();
    const sharedHost = opts.sharedHost;
    this.opts = {
      launch: (spec, ev) => {
        const sb = this.sandbox ?? new Error('the workload sandbox is not ready');
        if (sb instanceof Error) throw sb;
        const cmd = opts.command(spec);
        // Where sockets cannot be opened in namespaces (no perl, no known setns), a process each.
        if (spec.launch.kind === 'builtin' && cmd.netns !== undefined && sharedHost && setns && sb.perl) {
          this.shared ??= new SharedHosts({ sandbox: sb, command: sharedHost, setns, perl: sb.perl });
          const { key, subscription, env, dip } = spec;
          const image = spec.launch.image;
          return this.shared.launch({ key, subscription, image, env, dip, netns: cmd.netns }, ev);
        }
        return ownProcess(sb, spec.key, cmd, spec.env, ev);
      },
      now: opts.now ?? (() => new Date()),
      stopGraceMs: opts.stopGraceMs ?? STOP_GRACE_MS,
      backoffFirstMs: opts.backoffFirstMs ?? RESTART_BACKOFF_FIRST_MS,
      ...(opts.onChange ? { onChange: opts.onChange } : {}),
      ...(opts.onExit ? { onExit: opts.onExit } : {}),
    };
    // At start: the sandbox user is made (or the server says workloads run as its own user) before
    // any VM asks for a workload.
    void this.ready();
  }

  private preparing: Promise<void> | undefined;

  /**
   * Prepares the sandbox once, before the first workload starts. A failure (no user could be made)
   * is kept: every workload's log then says why it cannot start, and none runs unsandboxed.
   */
  private ready(): Promise<void> {
    this.preparing ??= this.prepare();
    return this.preparing;
  }

  private async prepare(): Promise<void> {
    const o = this.sandboxOptions;
    try {
      this.sandbox = await prepareSandbox({ ...o, root: o.root ?? defaultSandboxRoot(process.cwd()) });
    } catch (e) {
      this.sandbox = new Error(`no sandbox: ${(e as Error).message}`);
      o.log?.(`workloads cannot start: ${this.sandbox.message}`);
    }
  }

  /**
   * Makes exactly `desired` run. Workloads of `known` VMs that are not desired are stopped and their
   * logs kept; the others are stopped and forgotten. Reconciles run one at a time, in order.
   */
  reconcile(desired: readonly DesiredWorkload[], known: ReadonlySet<string>): Promise<void> {
    const run = this.queue.then(() => this.apply(desired, known));
    this.queue = run.catch(() => {});
    return run;
  }

  private async apply(desired: readonly DesiredWorkload[], known: ReadonlySet<string>): Promise<void> {
    if (this.closed) return;
    if (desired.length > 0) await this.ready();
    const want = new Map(desired.map((d) => [d.key, d]));
    const stops: Promise<void>[] = [];
    for (const [key, p] of this.procs) {
      if (want.has(key)) continue;
      stops.push(p.stop());
      if (!known.has(key)) this.procs.delete(key);
    }
    const restarts: Promise<void>[] = [];
    for (const d of desired) {
      const p = this.procs.get(d.key);
      if (p === undefined) {
        const proc = new Proc(d, this.opts);
        this.procs.set(d.key, proc);
        proc.start();
      } else if (p.spec.fingerprint !== d.fingerprint) {
        // A new DIP (or any other part of its environment): the old process goes before the new starts.
        restarts.push(
          p.stop().then(() => {
            p.spec = d;
            if (!this.closed) p.start();
          }),
        );
      } else if (!p.wanted) {
        p.spec = d;
        p.start();
      }
    }
    await Promise.all([...stops, ...restarts]);
  }

  /** The workloads running now that reconciling to `desired` would stop (their VM stops, goes or moves away). */
  stopping(desired: readonly DesiredWorkload[]): string[] {
    const want = new Set(desired.map((d) => d.key));
    const out: string[] = [];
    for (const [key, p] of this.procs) if (p.wanted && !want.has(key)) out.push(key);
    return out;
  }

  /**
   * The workloads that reconciling to `desired` would stop and start again (their environment
   * changed: a new DIP, another command), so that their backends can be drained first.
   */
  restarting(desired: readonly DesiredWorkload[]): string[] {
    const out: string[] = [];
    for (const d of desired) {
      const p = this.procs.get(d.key);
      if (p !== undefined && p.wanted && p.spec.fingerprint !== d.fingerprint) out.push(d.key);
    }
    return out;
  }

  /**
   * Kills a running workload's process group with SIGKILL, as a crash would (chaos does this); the
   * supervisor then restarts it as after any crash. False when it has no live process to kill.
   */
  crash(key: string): boolean {
    const p = this.procs.get(key);
    const instance = p?.instance;
    if (p === undefined || !p.wanted || instance === undefined || !instance.live) return false;
    instance.signal('SIGKILL');
    return true;
  }

  status(key: string): WorkloadReport | undefined {
    return this.procs.get(key)?.report();
  }

  reports(): WorkloadReport[] {
    return [...this.procs.values()].map((p) => p.report());
  }

  /** Stops every workload (SIGTERM, then SIGKILL after the grace period) and resolves once all are gone. */
  async close(): Promise<void> {
    this.closed = true;
    await this.queue;
    await Promise.all([...this.procs.values()].map((p) => p.stop()));
    await this.preparing;
    // The VMs' directories are scratch: they last while this agent runs, across restarts.
    if (this.sandbox !== undefined && !(this.sandbox instanceof Error)) removeSandbox(this.sandbox);
  }
}
