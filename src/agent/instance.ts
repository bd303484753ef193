/**
 * A workload's running instance, as its supervisor (workloads.ts) sees it: its own process
 * (`ownProcess`), or its share of a shared built-in host (shared-hosts.ts). Either way the supervisor
 * hears when it runs, what it writes, and when it is gone, and can stop it or kill it.
 */
import type { WorkloadCommand } from '../dataplane/index.ts';
import { launchWorkload, type Sandbox } from './sandbox.ts';

export interface InstanceEvents {
  /** It runs, in the process `pid` (shared with other VMs in a shared host). */
  spawned(pid: number): void;
  /** Output, in chunks that need not end lines. */
  output(stream: 'stdout' | 'stderr', text: string): void;
  /** It could not be started (it still ends with `exited`). */
  failed(message: string): void;
  /** It is gone, after its last output: an exit code, or the signal that ended it. */
  exited(code: number | null, signal: string | null): void;
}

export interface Instance {
  /** The process it runs in, once it runs. */
  readonly pid: number | undefined;
  /** True while there is something to stop or kill. */
  readonly live: boolean;
  /** SIGTERM: stop (its process may take a grace period); SIGKILL: at once, as a crash. */
  signal(sig: 'SIGTERM' | 'SIGKILL'): void;
}

/**
 * A workload in a process of its own, in the sandbox. What it leaves in its process group when it
 * exits (a shell's background jobs, a fork loop's children) goes with it: they would hold its ports,
 * its process count and its output pipes.
 */
export function ownProcess(
  sb: Sandbox,
  key: string,
  cmd: WorkloadCommand,
  env: Readonly<Record<string, string>>,
  ev: InstanceEvents,
): Instance {
  const child = launchWorkload(sb, key, cmd, env);
  child.stdin?.on('error', () => {});
  child.stdout?.setEncoding('utf8').on('data', (d: string) => ev.output('stdout', d));
  child.stderr?.setEncoding('utf8').on('data', (d: string) => ev.output('stderr', d));
  child.on('spawn', () => ev.spawned(child.pid!));
  child.on('error', (e) => ev.failed(e.message));
  child.on('exit', () => {
    if (child.pid !== undefined) killGroup(child.pid);
  });
  child.on('close', (code, signal) => ev.exited(code, signal));
  return {
    get pid() {
      return child.pid;
    },
    get live() {
      return child.pid !== undefined;
    },
    signal: (sig) => {
      if (child.pid !== undefined) signalGroup(child.pid, sig);
    },
  };
}

export function killGroup(pgid: number): void {
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch {
    // nothing left
  }
}

/** Signals a process group (a detached launch), or the process alone when it has none. */
export function signalGroup(pid: number, sig: NodeJS.Signals): void {
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
