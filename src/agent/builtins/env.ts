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
