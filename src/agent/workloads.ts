/**
 * Workload supervision: one process (group) per running VM that has a workload. A workload is started
 * with its VM's identity and addresses in its environment, restarted when that environment changes
 * (a new DIP, a move to another host), stopped with SIGTERM and, after a grace period, SIGKILL when
 * its VM stops, and restarted with exponential backoff when it crashes. Its last output lines are
 * kept, also after it stops, for `vipdip logs`.
 */
import type { ChildProcess } from 'node:child_process';
import type { WorkloadCommand } from '../dataplane/index.ts';
import type { DesiredWorkload } from './desired.ts';
import {
  LOG_BYTES_KEPT,
  LOG_LINES_KEPT,
  LOG_LINE_MAX_CHARS,
  type LogLine,
  type WorkloadReport,
} from './report.ts';
import {
  defaultSandboxRoot,
  launchWorkload,
  prepareSandbox,
  removeSandbox,
  type Sandbox,
  type SandboxOptions,
} from './sandbox.ts';

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
}

type ProcOptions = Required<Pick<SupervisorOptions, 'command' | 'now' | 'stopGraceMs' | 'backoffFirstMs'>> &
  Pick<SupervisorOptions, 'onChange' | 'onExit'> & {
    /** The sandbox, once prepared; an error when it could not be (no workload then starts). */
    sandbox: () => Sandbox | Error;
  };

class Proc {
  status: WorkloadReport['status'] = 'starting';
  child: ChildProcess | undefined;
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
    let child: ChildProcess;
    try {
      const sb = this.opts.sandbox();
      if (sb instanceof Error) throw sb;
      child = launchWorkload(sb, this.spec.key, this.opts.command(this.spec), this.spec.env);
    } catch (e) {
      this.note(`cannot start: ${(e as Error).message}`);
      this.crashed();
      return;
    }
    this.child = child;
    let resolveExit!: () => void;
    this.exited = new Promise((r) => (resolveExit = r));
    child.stdin?.on('error', () => {});
    child.stdout?.setEncoding('utf8').on('data', (d: string) => this.output('stdout', d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => this.output('stderr', d));
    child.on('spawn', () => {
      if (this.child !== child) return;
      this.status = 'running';
      this.note(`started ${this.spec.workload} as pid ${child.pid} on ${this.spec.dip}`);
    });
    child.on('error', (e) => {
      this.note(`cannot start: ${e.message}`);
    });
    // What the workload left behind in its process group (a shell's background jobs, a fork loop's
    // children) goes with it: they would hold its ports, its process count and its output pipes.
    child.on('exit', () => {
      if (child.pid !== undefined) killGroup(child.pid);
    });
    child.on('close', (code, signal) => {
      this.flush();
      resolveExit();
      if (this.child !== child) return;
      this.child = undefined;
      if (!this.wanted) {
        this.status = 'stopped';
        this.note(`stopped (${signal ?? `exit code ${code}`})`);
        return;
      }
      this.note(`exited with ${signal ?? `code ${code}`}`);
      this.opts.onExit?.(this.spec.key, signal ?? `code ${code}`);
      this.crashed();
    });
    this.opts.onChange?.();
  }

  private crashed(): void {
    this.status = 'crashed';
    this.child = undefined;
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
    const child = this.child;
    if (child === undefined || child.pid === undefined) {
      if (this.status !== 'stopped') {
        this.status = 'stopped';
        this.opts.onChange?.();
      }
      return;
    }
    signal(child.pid, 'SIGTERM');
    const kill = setTimeout(() => signal(child.pid!, 'SIGKILL'), this.opts.stopGraceMs);
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
      pid: this.child?.pid ?? null,
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

function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // nothing left
  }
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pid, sig);
  } catch {
    try {
      process.kill(pid, sig);
    } catch {
      // already gone
    }
  }
}

export class WorkloadSupervisor {
  private readonly procs = new Map<string, Proc>();
  private readonly opts: ProcOptions;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;
  private sandbox: Sandbox | Error | undefined;
  private readonly sandboxOptions: SandboxOptions;

  constructor(opts: SupervisorOptions) {
    this.sandboxOptions = opts.sandbox ?? {};
    this.opts = {
      command: opts.command,
      now: opts.now ?? (() => new Date()),
      stopGraceMs: opts.stopGraceMs ?? STOP_GRACE_MS,
      backoffFirstMs: opts.backoffFirstMs ?? RESTART_BACKOFF_FIRST_MS,
      ...(opts.onChange ? { onChange: opts.onChange } : {}),
      sandbox: () => this.sandbox ?? new Error('the workload sandbox is not ready'),
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
    const pid = p?.child?.pid;
    if (p === undefined || !p.wanted || pid === undefined) return false;
    signal(pid, 'SIGKILL');
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
