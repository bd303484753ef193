/**
 * `vipdip workload shared-host`: one process serving the built-in workloads of many VMs.
 *
 * A built-in alone in its process costs about 40 MB and 11 threads: 1,000 VMs would need 40 GB and
 * outrun the sandbox's process count. What a built-in does for a VM is a few listening sockets, so a
 * shared host serves many VMs' built-ins, each with its own environment, listeners and log, started
 * and stopped one by one. Under the netns driver it is given the sockets already opened inside each
 * VM's namespace (by the privileged launcher, agent/shared-hosts.ts), since the sandbox user cannot
 * enter a namespace; without sockets given it binds each DIP itself.
 *
 * Input (stdin, one JSON object a line):
 *   {"op":"add","key":K,"image":"whoami"|"echo","env":{VIPDIP_…},"sockets":{"tcp/8000":0,…}}
 *   {"op":"remove","key":K,"how":"SIGTERM"|"SIGKILL"}
 * `sockets` maps a port to its index in `--fds=[…]`, whose entries are inherited descriptors, or the
 * text of why the launcher could not open that one.
 * Output (stdout, one JSON object a line): {"key":K,"text":…,"stream"?:"stderr"} for a VM's line,
 * {"key":K,"up":true} once it listens, {"key":K,"exit":"code 0"|"code 1"|"SIGKILL"} once it is gone.
 * The host exits when stdin ends (the agent went), like a built-in alone.
 */
import { createInterface } from 'node:readline';
import { serveEcho } from './echo.ts';
import { readWorkloadEnv, type BuiltinIo, type Close, type ListenTarget, type WorkloadPort } from './env.ts';
import { serveWhoami } from './whoami.ts';

type Message =
  | { op: 'add'; key: string; image: string; env: Record<string, string>; sockets?: Record<string, number> }
  | { op: 'remove'; key: string; how?: string };

/** The `--fds=[…]` argument: descriptors, or why one could not be opened. Pure. */
export function parseFds(args: readonly string[]): (number | string)[] {
  const a = args.find((x) => x.startsWith('--fds='));
  if (a === undefined) return [];
  const v: unknown = JSON.parse(a.slice('--fds='.length));
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' || Number.isInteger(x)))
    throw new Error('--fds must be a JSON array of descriptors and texts');
  return v as (number | string)[];
}

export function runSharedHost(args: readonly string[]): void {
  const fds = parseFds(args);
  const served = new Map<string, Close>();
  /** VMs whose listeners are still being opened, and whether a remove came meanwhile. */
  const starting = new Map<string, { removed?: string }>();
  const say = (m: object) => void process.stdout.write(`${JSON.stringify(m)}\n`);

  const add = async (m: Extract<Message, { op: 'add' }>) => {
    if (served.has(m.key) || starting.has(m.key)) {
      say({ key: m.key, stream: 'stderr', text: 'already served by this host' });
      return;
    }
    const env = readWorkloadEnv(m.env);
    const listen = (p: WorkloadPort): ListenTarget => {
      if (m.sockets === undefined) return { host: env.dip, port: p.port };
      const i = m.sockets[`${p.protocol}/${p.port}`];
      const fd = i === undefined ? `no socket was opened for ${p.protocol} port ${p.port}` : fds[i];
      if (typeof fd !== 'number')
        throw new Error(`cannot listen on ${p.protocol} ${env.dip}:${p.port}: ${fd ?? 'no such socket'}`);
      return { fd };
    };
    const io: BuiltinIo = { listen, out: (text) => say({ key: m.key, text }) };
    const state: { removed?: string } = {};
    starting.set(m.key, state);
    let close: Close;
    try {
      if (m.image === 'whoami') close = await serveWhoami(env, io);
      else if (m.image === 'echo') close = await serveEcho(env, io);
      else throw new Error(`unknown built-in ${JSON.stringify(m.image)}`);
    } catch (e) {
      starting.delete(m.key);
      say({ key: m.key, stream: 'stderr', text: `vipdip workload ${m.image}: ${(e as Error).message}` });
      say({ key: m.key, exit: 'code 1' });
      return;
    }
    starting.delete(m.key);
    if (state.removed !== undefined) {
      close();
      say({ key: m.key, exit: state.removed });
      return;
    }
    served.set(m.key, close);
    say({ key: m.key, up: true });
  };

  const remove = (m: Extract<Message, { op: 'remove' }>) => {
    const how = m.how === 'SIGKILL' ? 'SIGKILL' : 'code 0';
    const pending = starting.get(m.key);
    if (pending !== undefined) return void (pending.removed = how);
    const close = served.get(m.key);
    if (close === undefined) return void say({ key: m.key, exit: how });
    served.delete(m.key);
    close();
    say({ key: m.key, exit: how });
  };

  const bye = () => {
    for (const close of served.values()) close();
    process.exit(0);
  };
  process.once('SIGTERM', bye);
  process.once('SIGINT', bye);
  const lines = createInterface({ input: process.stdin });
  lines.on('line', (line) => {
    let m: Message;
    try {
      m = JSON.parse(line) as Message;
    } catch {
      process.stderr.write(`shared host: not a message: ${line.slice(0, 200)}\n`);
      return;
    }
    if (m.op === 'add') void add(m);
    else if (m.op === 'remove') remove(m);
  });
  lines.on('close', bye);
}
