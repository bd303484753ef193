/**
 * The one place where a workload's process is launched (SPEC §8): every driver's command goes
 * through `launchWorkload`, so the `netns` driver wraps this same sandbox in a network namespace.
 *
 * When vipdip runs as root, a workload runs as the unprivileged system user `vipdip-workload`
 * (created on first start when missing), with a scrubbed environment (PATH and the VM's own
 * variables only), its own working directory, resource limits (processes, open files, address
 * space, CPU time) and a lower CPU priority; it can neither read the state directory (0700, root's)
 * nor signal the server. Otherwise it runs as the server's own user, with the same environment,
 * directory and limits but the process count (which would count the server's own processes).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  accessSync,
  constants,
  lstatSync,
  mkdirSync,
  chownSync,
  chmodSync,
  readFileSync,
  rmSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { VipdipError } from '../core/errors.ts';
import type { WorkloadCommand } from '../dataplane/index.ts';

const run = promisify(execFile);

/** The system user workloads run as when vipdip runs as root. */
export const SANDBOX_USER = 'vipdip-workload';
/** A workload's CPU priority: below the server's, which must stay responsive whatever it does. */
export const WORKLOAD_NICE = 10;
/** PATH when the server has none. */
const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export interface SandboxLimits {
  /**
   * Processes and threads of the sandbox user, all workloads together (RLIMIT_NPROC counts per user,
   * threads included: a built-in, being Node, has about 11). Only when the user is vipdip's own.
   */
  processes: number;
  openFiles: number;
  /** Address space of each process: a 10 GB allocation fails inside the workload. */
  addressSpaceBytes: number;
  /** CPU seconds of each process; at the limit it is killed, and restarted as after any crash. */
  cpuSeconds: number;
}

export const DEFAULT_SANDBOX_LIMITS: SandboxLimits = {
  processes: 2048,
  openFiles: 4096,
  addressSpaceBytes: 4 * 1024 ** 3,
  cpuSeconds: 3600,
};

/** The operator's overrides, from the server's environment (`VIPDIP_WORKLOAD_MAX_*`). */
export function sandboxLimits(env: Readonly<Record<string, string | undefined>>): SandboxLimits {
  const num = (name: string, fallback: number, scale = 1): number => {
    const v = env[name];
    if (v === undefined || v === '') return fallback;
    if (!/^[1-9][0-9]{0,12}$/.test(v)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `${name}=${v.slice(0, 40)}: a positive whole number is needed`,
      );
    }
    return Number(v) * scale;
  };
  const d = DEFAULT_SANDBOX_LIMITS;
  return {
    processes: num('VIPDIP_WORKLOAD_MAX_PROCESSES', d.processes),
    openFiles: num('VIPDIP_WORKLOAD_MAX_OPEN_FILES', d.openFiles),
    addressSpaceBytes: num('VIPDIP_WORKLOAD_MAX_MEMORY_MB', d.addressSpaceBytes, 1024 * 1024),
    cpuSeconds: num('VIPDIP_WORKLOAD_MAX_CPU_SECONDS', d.cpuSeconds),
  };
}

export interface Sandbox {
  /** Who workloads run as: the sandbox user's ids, or undefined for the server's own user. */
  user: { name: string; uid: number; gid: number } | undefined;
  /** Where the per-VM working directories are. */
  root: string;
  limits: SandboxLimits;
  /** prlimit(1) when present; else the limits are set by the shell's ulimit. */
  prlimit: string | undefined;
  nice: string | undefined;
  /** perl, which opens a shared host's sockets in VM namespaces (socket-opener.ts); without it, none. */
  perl: string | undefined;
  /** This server's hard limit of open files, which a shared host's may reach and not pass. */
  hardOpenFiles: number;
  /** The PATH workloads get. */
  path: string;
}

/**
 * The environment a workload gets: PATH and the given variables (the VM's VIPDIP_* and its image's),
 * nothing of the server's own (its token, its store URL, …). Pure.
 */
export function sandboxEnv(vars: Readonly<Record<string, string>>, path: string): Record<string, string> {
  return { ...vars, PATH: path };
}

/**
 * The command with its limits and priority applied, for `exec` by the launched process: prlimit(1)
 * sets them and executes the command, or, without prlimit, a POSIX shell's ulimit does (dash knows
 * no process limit: the count is then left to the user's default). Pure.
 */
export function limitedCommand(
  cmd: WorkloadCommand,
  limits: SandboxLimits,
  tools: { prlimit: string | undefined; nice: string | undefined; processes: boolean },
): WorkloadCommand {
  const inner =
    tools.nice === undefined
      ? [cmd.command, ...cmd.args]
      : [tools.nice, '-n', String(WORKLOAD_NICE), cmd.command, ...cmd.args];
  if (tools.prlimit !== undefined) {
    return {
      command: tools.prlimit,
      args: [
        ...(tools.processes ? [`--nproc=${limits.processes}`] : []),
        `--nofile=${limits.openFiles}`,
        `--as=${limits.addressSpaceBytes}`,
        `--cpu=${limits.cpuSeconds}`,
        '--',
        ...inner,
      ],
    };
  }
  const kib = Math.floor(limits.addressSpaceBytes / 1024);
  return {
    command: '/bin/sh',
    args: [
      '-c',
      `ulimit -n ${limits.openFiles} -v ${kib} -t ${limits.cpuSeconds} && exec "$@"`,
      'vipdip-sandbox',
      ...inner,
    ],
  };
}

/**
 * A launch inside a network namespace: `ip netns exec` needs root to enter it, then setpriv(1)
 * becomes the sandbox user for good (real, effective and saved ids, no supplementary groups, no
 * capabilities left) before the limits and the command run. Pure.
 */
export function inNamespace(
  netns: string,
  cmd: WorkloadCommand,
  user: { uid: number; gid: number } | undefined,
): WorkloadCommand {
  return { command: 'ip', args: ['netns', 'exec', netns, ...dropTo(user), cmd.command, ...cmd.args] };
}

/** setpriv(1)'s words that become `user` for good before the rest runs (none without a user). Pure. */
function dropTo(user: { uid: number; gid: number } | undefined): string[] {
  return user === undefined
    ? []
    : ['setpriv', `--reuid=${user.uid}`, `--regid=${user.gid}`, '--clear-groups', '--'];
}

/**
 * A shared built-in host's limits (builtins/host.ts): the open files and CPU time of one workload
 * for each VM it serves, so that serving many VMs in one process takes no VM's share; the process
 * count is the user's anyway, and the address space bounds one process either way. Pure.
 */
export function sharedHostLimits(limits: SandboxLimits, vms: number, hardOpenFiles: number): SandboxLimits {
  return {
    ...limits,
    // Not past this server's own hard limit: without CAP_SYS_RESOURCE (root in a container) even root
    // cannot raise it, and prlimit would refuse to start the host at all.
    openFiles: Math.max(limits.openFiles, Math.min(limits.openFiles * vms, hardOpenFiles)),
    cpuSeconds: limits.cpuSeconds * vms,
  };
}

/** A VM's working directory under the sandbox's root: `service.vm` (DNS labels hold no dot). Pure. */
export function workDirName(key: string): string {
  return key
    .split('/')
    .map((p) => p.replace(/[^A-Za-z0-9-]/g, '_'))
    .join('.');
}

/** The default root of the working directories: one per server (state) and user, in the temp dir. */
export function defaultSandboxRoot(stateKey: string): string {
  const hash = createHash('sha256').update(stateKey).digest('hex').slice(0, 12);
  return join(tmpdir(), `vipdip-workloads-${process.getuid?.() ?? 'u'}-${hash}`);
}

const isRoot = () => process.getuid?.() === 0;

function findTool(names: string[]): string | undefined {
  for (const n of names) {
    try {
      accessSync(n, constants.X_OK);
      return n;
    } catch {
      // next
    }
  }
  return undefined;
}

async function userIds(name: string): Promise<{ uid: number; gid: number } | undefined> {
  try {
    const uid = Number((await run('id', ['-u', name])).stdout.trim());
    const gid = Number((await run('id', ['-g', name])).stdout.trim());
    return Number.isInteger(uid) && Number.isInteger(gid) ? { uid, gid } : undefined;
  } catch {
    return undefined;
  }
}

/** The sandbox user's ids, creating the user when missing (another vipdip may do so at once). */
export async function ensureSandboxUser(name = SANDBOX_USER): Promise<{ uid: number; gid: number }> {
  const have = await userIds(name);
  if (have !== undefined) return notRoot(name, have);
  try {
    await run('useradd', ['--system', '--no-create-home', '--shell', '/usr/sbin/nologin', name]);
  } catch (e) {
    const again = await userIds(name);
    if (again !== undefined) return notRoot(name, again);
    throw new Error(`cannot create the workload user ${name}: ${(e as Error).message.split('\n')[0]}`);
  }
  const made = await userIds(name);
  if (made === undefined) throw new Error(`useradd made no user ${name}`);
  return notRoot(name, made);
}

function notRoot(name: string, ids: { uid: number; gid: number }): { uid: number; gid: number } {
  if (ids.uid === 0 || ids.gid === 0)
    throw new Error(`the workload user ${name} must not be root's uid or gid`);
  return ids;
}

/**
 * A directory this process made or owns, never a link: the root is in the shared temp directory,
 * where anyone may have put something under its name.
 */
function ownDir(path: string, mode: number, owner: { uid: number; gid: number } | undefined): void {
  try {
    mkdirSync(path, { mode });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
  const st = lstatSync(path);
  const me = process.getuid?.() ?? st.uid;
  if (!st.isDirectory() || st.isSymbolicLink() || (st.uid !== me && st.uid !== owner?.uid)) {
    throw new Error(`${path} is not a directory of vipdip's own: refusing to use it`);
  }
  if (owner !== undefined) chownSync(path, owner.uid, owner.gid);
  chmodSync(path, mode);
}

export interface SandboxOptions {
  /** Where the per-VM working directories go (default: defaultSandboxRoot of the agent's name). */
  root?: string;
  limits?: SandboxLimits;
  /** Said once at start: who workloads run as. */
  log?: (line: string) => void;
}

/** Makes the sandbox ready: its user (when root), its root directory, its tools. */
export async function prepareSandbox(opts: SandboxOptions & { root: string }): Promise<Sandbox> {
  const limits = opts.limits ?? sandboxLimits(process.env);
  let user: Sandbox['user'];
  if (isRoot()) {
    const ids = await ensureSandboxUser();
    user = { name: SANDBOX_USER, ...ids };
  } else {
    opts.log?.(
      `workloads run as the server's own user (${userInfo().username}): vipdip is not running as root, ` +
        `so it cannot run them as the unprivileged user ${SANDBOX_USER}`,
    );
  }
  // Root's own, and only traversable by others, so that no workload can put a link where another
  // VM's directory is made; each VM's directory is its user's, 0700.
  ownDir(opts.root, user === undefined ? 0o700 : 0o711, undefined);
  return {
    user,
    root: opts.root,
    limits,
    prlimit: findTool(['/usr/bin/prlimit', '/bin/prlimit']),
    perl: findTool(['/usr/bin/perl', '/bin/perl']),
    hardOpenFiles: hardOpenFiles(),
    nice: findTool(['/usr/bin/nice', '/bin/nice']),
    path: process.env.PATH ?? DEFAULT_PATH,
  };
}

/**
 * Launches one workload in the sandbox: its command (as the driver wraps it) under the limits, as
 * the sandbox user, in the VM's own directory, with only its own environment. Its own process group
 * (detached), so that a shell's children stop with it; stdin is a pipe that closes when the agent
 * dies, which the built-ins take as their cue to exit.
 */
export function launchWorkload(
  sb: Sandbox,
  key: string,
  cmd: WorkloadCommand,
  vars: Readonly<Record<string, string>>,
): ChildProcess {
  const cwd = join(sb.root, workDirName(key));
  ownDir(cwd, 0o700, sb.user);
  const limited = limitedCommand(cmd, sb.limits, {
    prlimit: sb.prlimit,
    nice: sb.nice,
    processes: sb.user !== undefined,
  });
  const full = cmd.netns === undefined ? limited : inNamespace(cmd.netns, limited, sb.user);
  return spawn(full.command, full.args, {
    cwd,
    env: sandboxEnv(vars, sb.path),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    // In a namespace the user is changed by setpriv, after `ip netns exec` has entered it as root.
    ...(sb.user !== undefined && cmd.netns === undefined ? { uid: sb.user.uid, gid: sb.user.gid } : {}),
  });
}

/** This process's hard limit of open files (/proc/self/limits), or 2^20 where that cannot be read. */
export function hardOpenFiles(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === undefined || hard === 'unlimited' ? 1 << 20 : Number(hard);
  } catch {
    return 1 << 20;
  }
}

/**
 * Launches a shared host of built-ins for `vms` VMs (builtins/host.ts) in the sandbox: the same
 * user, environment (PATH only: each VM's variables reach it with the VM), limits (sharedHostLimits)
 * and priority as a workload, in a directory of its own. `open` is the root launcher that opens the
 * VMs' sockets in their namespaces first (socket-opener.ts); the limits and the drop to the sandbox
 * user come after it, as after `ip netns exec`.
 */
export function launchSharedHost(
  sb: Sandbox,
  name: string,
  cmd: WorkloadCommand,
  vms: number,
  open: ((then: WorkloadCommand) => WorkloadCommand) | undefined,
): ChildProcess {
  const cwd = join(sb.root, workDirName(name));
  ownDir(cwd, 0o700, sb.user);
  const tools = { prlimit: sb.prlimit, nice: sb.nice, processes: sb.user !== undefined };
  const limits = sharedHostLimits(sb.limits, vms, sb.hardOpenFiles);
  // After the launcher, still root: the limits (root may raise the open files past the hard limit
  // this server was given, which the sandbox user could not), then the drop to the sandbox user.
  const dropped = [...dropTo(sb.user), cmd.command, ...cmd.args];
  const full =
    open === undefined
      ? limitedCommand(cmd, limits, tools)
      : open(limitedCommand({ command: dropped[0]!, args: dropped.slice(1) }, limits, tools));
  return spawn(full.command, full.args, {
    cwd,
    env: sandboxEnv({}, sb.path),
    stdio: ['pipe', 'pipe', 'pipe'],
    detached: true,
    ...(sb.user !== undefined && open === undefined ? { uid: sb.user.uid, gid: sb.user.gid } : {}),
  });
}

/**
 * Removes the working directories once every workload has stopped. Links inside are removed, never
 * followed.
 */
export function removeSandbox(sb: Sandbox): void {
  try {
    rmSync(sb.root, { recursive: true, force: true });
  } catch {
    // a leftover in the temp directory is no harm
  }
}
