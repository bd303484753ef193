/** What a built-in workload reads from its environment (set by the agent; see agent/desired.ts). */
export interface WorkloadPort {
  endpoint: string;
  protocol: 'tcp' | 'udp';
  port: number;
  proxyProtocol: boolean;
}

export interface WorkloadEnv {
  subscription: string;
  service: string;
  vm: string;
  host: string;
  dip: string;
  vip: string;
  ports: WorkloadPort[];
}

export function readWorkloadEnv(env: NodeJS.ProcessEnv = process.env): WorkloadEnv {
  const ports: WorkloadPort[] = [];
  for (const [k, v] of Object.entries(env)) {
    const m = /^VIPDIP_(PROBE_)?PORT_([A-Z0-9_]+)$/.exec(k);
    if (m === null || v === undefined || !/^\d{1,5}$/.test(v)) continue;
    const n = m[2]!;
    const probe = m[1] !== undefined;
    const protocol = probe ? 'tcp' : env[`VIPDIP_PROTOCOL_${n}`] === 'udp' ? 'udp' : 'tcp';
    ports.push({
      endpoint: n.toLowerCase(),
      protocol,
      port: Number(v),
      proxyProtocol: !probe && env[`VIPDIP_PROXY_${n}`] === '1',
    });
  }
  return {
    subscription: env.VIPDIP_SUBSCRIPTION ?? '',
    service: env.VIPDIP_SERVICE ?? '',
    vm: env.VIPDIP_VM ?? '',
    host: env.VIPDIP_HOST ?? '',
    dip: env.VIPDIP_DIP || '127.0.0.1',
    vip: env.VIPDIP_VIP ?? '',
    ports,
  };
}

/** One listener per protocol and port, whatever several endpoints (or a probe) share. */
export function uniquePorts(ports: readonly WorkloadPort[]): WorkloadPort[] {
  const seen = new Map<string, WorkloadPort>();
  for (const p of ports) {
    const k = `${p.protocol}/${p.port}`;
    const prev = seen.get(k);
    if (prev === undefined) seen.set(k, p);
    else if (p.proxyProtocol && !prev.proxyProtocol) seen.set(k, p);
  }
  return [...seen.values()];
}

/** Where a built-in listens on one of its ports: its own bind to the DIP, or a socket opened for it. */
export type ListenTarget = { host: string; port: number } | { fd: number };

/**
 * What a built-in serving one VM is given: where to listen, and where its output lines go. A
 * built-in alone in its process binds the DIP itself and writes to stdout; in a shared host
 * (host.ts) it gets sockets its VM's namespace was entered for, and its lines are tagged with its VM.
 */
export interface BuiltinIo {
  listen(p: WorkloadPort): ListenTarget;
  out(text: string): void;
}

/** A built-in's own process: it binds its DIP and writes its lines to stdout. */
export const ownProcessIo = (env: WorkloadEnv): BuiltinIo => ({
  listen: (p) => ({ host: env.dip, port: p.port }),
  out: (text) => void process.stdout.write(`${text}\n`),
});

/** A served VM's end: closes its listeners and every connection they accepted, as its process's exit would. */
export type Close = () => void;

/**
 * Exits when the agent goes: its end of stdin closes with it, even when it is killed outright, so a
 * built-in never outlives the agent holding its DIP's ports. SIGTERM (the agent's stop) exits at once.
 */
export function exitWithParent(close: () => void): void {
  const bye = () => {
    close();
    process.exit(0);
  };
  process.stdin.on('end', bye);
  process.stdin.on('error', bye);
  process.stdin.resume();
  process.once('SIGTERM', bye);
  process.once('SIGINT', bye);
}
