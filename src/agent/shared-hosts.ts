/**
 * Shared built-in hosts: the built-in workloads (whoami, echo) of VMs in network namespaces, many VMs
 * to a process (builtins/host.ts), instead of a 40 MB Node process each.
 *
 * The VMs of one subscription that a reconcile starts together (every launch in one turn of the
 * event loop) go to new hosts of at most VMS_PER_SHARED_HOST each. No host serves two tenants: its
 * sockets are in its VMs' namespaces, and one process holding two subscriptions' would be a path
 * between them if the built-in code could ever be made to use it. Each host is launched by the root
 * socket opener (socket-opener.ts), which opens its VMs' sockets in their namespaces before
 * becoming the sandbox user. A host cannot take a VM later (an unprivileged process can be handed no further socket), so
 * a VM started on its own (a restart after a DIP change, a crash) gets a host of its own, which costs
 * what a built-in alone costs; a host exits once it serves no VM. A VM's share is an `Instance`:
 * stopping or killing it touches only that VM; only a host that stops answering is killed whole,
 * and when a host dies every VM on it is told so, and restarted by its supervisor.
 */
import type { ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import type { WorkloadCommand } from '../dataplane/index.ts';
import { echoPorts } from './builtins/echo.ts';
import { readWorkloadEnv, type WorkloadPort } from './builtins/env.ts';
import { whoamiPorts } from './builtins/whoami.ts';
import { killGroup, signalGroup, type Instance, type InstanceEvents } from './instance.ts';
import { launchSharedHost, type Sandbox } from './sandbox.ts';
import { openerCommand, type SocketToOpen } from './socket-opener.ts';

/** VMs a host serves at most: a host's crash takes this many down, and its descriptors grow with it. */
export const VMS_PER_SHARED_HOST = 128;

/** The ports a built-in listens on for a VM (the sockets opened for it). Pure. */
export function builtinPorts(image: string, env: Readonly<Record<string, string>>): WorkloadPort[] {
  const e = readWorkloadEnv(env);
  return image === 'echo' ? echoPorts(e) : whoamiPorts(e);
}

export interface SharedLaunch {
  key: string;
  /** The VM's subscription: a host serves one subscription's VMs only. */
  subscription: string;
  image: string;
  env: Readonly<Record<string, string>>;
  /** The VM's namespace and address, where its sockets are opened. */
  netns: string;
  dip: string;
}

export interface SharedHostsOptions {
  sandbox: Sandbox;
  /** `vipdip workload shared-host`, as the sandbox runs it. */
  command: WorkloadCommand;
  /** setns(2)'s number on this machine, and perl, which calls it. */
  setns: number;
  perl: string;
  perHost?: number;
}

export class SharedHosts {
  private queued: Member[] = [];
  private flushing = false;
  private seq = 0;

  constructor(private readonly opts: SharedHostsOptions) {}

  /** A VM's share of a host that starts with the others launched in this turn of the event loop. */
  launch(spec: SharedLaunch, ev: InstanceEvents): Instance {
    const m = new Member(spec, ev, this);
    this.queued.push(m);
    if (!this.flushing) {
      this.flushing = true;
      setImmediate(() => this.flush());
    }
    return m;
  }

  /** A member stopped before its host was launched. */
  dequeue(m: Member): void {
    this.queued = this.queued.filter((q) => q !== m);
  }

  private flush(): void {
    this.flushing = false;
    const all = this.queued;
    this.queued = [];
    const per = this.opts.perHost ?? VMS_PER_SHARED_HOST;
    const bySubscription = new Map<string, Member[]>();
    for (const m of all) {
      const list = bySubscription.get(m.spec.subscription);
      if (list === undefined) bySubscription.set(m.spec.subscription, [m]);
      else list.push(m);
    }
    for (const list of bySubscription.values()) {
      for (let i = 0; i < list.length; i += per) this.launchHost(list.slice(i, i + per));
    }
  }

  private launchHost(members: Member[]): void {
    try {
      new Host(`shared-host-${++this.seq}`, members, this.opts);
    } catch (e) {
      for (const m of members) {
        m.ev.failed((e as Error).message);
        m.finish(1, null);
      }
    }
  }
}

class Member implements Instance {
  host: Host | undefined;
  pid: number | undefined;
  done = false;
  /** A stop was asked of the host (a second, SIGKILL, means it does not answer). */
  asked = false;
  /** The index in the host's descriptors of each socket opened for it, by `protocol/port`. */
  readonly sockets: Record<string, number> = {};

  constructor(
    readonly spec: SharedLaunch,
    readonly ev: InstanceEvents,
    private readonly owner: SharedHosts,
  ) {}

  get live(): boolean {
    return !this.done;
  }

  signal(sig: 'SIGTERM' | 'SIGKILL'): void {
    if (this.done) return;
    if (this.host !== undefined) return this.host.stop(this, sig);
    this.owner.dequeue(this);
    setImmediate(() => this.finish(null, sig));
  }

  finish(code: number | null, signal: string | null): void {
    if (this.done) return;
    this.done = true;
    this.host?.forget(this);
    this.ev.exited(code, signal);
  }
}

class Host {
  private readonly child: ChildProcess;
  private readonly members = new Map<string, Member>();

  constructor(name: string, members: readonly Member[], opts: SharedHostsOptions) {
    const sockets: SocketToOpen[] = [];
    for (const m of members) {
      for (const p of builtinPorts(m.spec.image, m.spec.env)) {
        m.sockets[`${p.protocol}/${p.port}`] = sockets.length;
        sockets.push({ netns: m.spec.netns, protocol: p.protocol, address: m.spec.dip, port: p.port });
      }
    }
    this.child = launchSharedHost(opts.sandbox, name, opts.command, members.length, (then) =>
      openerCommand(opts.perl, opts.setns, sockets, then),
    );
    const child = this.child;
    for (const m of members) {
      m.host = this;
      this.members.set(m.spec.key, m);
    }
    child.stdin?.on('error', () => {});
    for (const m of members) {
      const add = { op: 'add', key: m.spec.key, image: m.spec.image, env: m.spec.env, sockets: m.sockets };
      child.stdin?.write(`${JSON.stringify(add)}\n`);
    }
    child.on('spawn', () => {
      for (const m of this.members.values()) m.pid = child.pid;
    });
    child.on('error', (e) => {
      for (const m of this.members.values()) m.ev.failed(e.message);
    });
    createInterface({ input: child.stdout! }).on('line', (line) => this.message(line));
    // The host's own words (not a VM's): every VM on it hears them (a launch that failed, a crash).
    createInterface({ input: child.stderr! }).on('line', (line) => {
      for (const m of this.members.values()) m.ev.output('stderr', `[shared host ${child.pid}] ${line}\n`);
    });
    child.on('exit', () => {
      if (child.pid !== undefined) killGroup(child.pid);
    });
    child.on('close', (code, signal) => {
      for (const m of [...this.members.values()]) m.finish(code, signal);
    });
  }

  private message(line: string): void {
    let msg: { key?: string; text?: string; stream?: string; up?: boolean; exit?: string };
    try {
      msg = JSON.parse(line) as typeof msg;
    } catch {
      return;
    }
    const m = msg.key === undefined ? undefined : this.members.get(msg.key);
    if (m === undefined) return;
    if (msg.text !== undefined) m.ev.output(msg.stream === 'stderr' ? 'stderr' : 'stdout', `${msg.text}\n`);
    if (msg.up === true && this.child.pid !== undefined) m.ev.spawned(this.child.pid);
    if (msg.exit !== undefined) {
      const code = /^code (\d+)$/.exec(msg.exit);
      m.finish(code === null ? null : Number(code[1]), code === null ? msg.exit : null);
    }
  }

  stop(m: Member, sig: 'SIGTERM' | 'SIGKILL'): void {
    if (m.asked && sig === 'SIGKILL') {
      // Asked once already, and still there: the host does not answer. It goes, with every VM on it.
      if (this.child.pid !== undefined) signalGroup(this.child.pid, 'SIGKILL');
      return;
    }
    m.asked = true;
    this.child.stdin?.write(`${JSON.stringify({ op: 'remove', key: m.spec.key, how: sig })}\n`);
  }

  forget(m: Member): void {
    if (this.members.get(m.spec.key) !== m) return;
    this.members.delete(m.spec.key);
    // No VM left: its stdin's end is the host's cue to exit.
    if (this.members.size === 0) this.child.stdin?.end();
  }
}
