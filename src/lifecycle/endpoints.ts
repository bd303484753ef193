/**
 * Endpoint specs: validation and normalisation (defaults filled in, so that the stored form is
 * canonical and a declarative apply can compare it), and the per-service rule that a public port is
 * unique per protocol on the VIP except among the members of one load-balanced set.
 */
import type { AclRule, Endpoint, Probe } from '../core/api-shapes.ts';
import { VipdipError } from '../core/errors.ts';
import { formatCidr, parseCidr } from '../core/ip.ts';

// The vocabulary is core's (the balancer shares it and depends on core alone); re-exported here so
// that the lifecycle's importers keep one place to take it from.
export type { AclRule, Distribution, Endpoint, Probe, Protocol } from '../core/api-shapes.ts';

/** Azure's defaults: probe every 15 s, down after 31 s; idle timeout 4 to 30 minutes. */
export const PROBE_INTERVAL_DEFAULT_S = 15;
export const PROBE_TIMEOUT_DEFAULT_S = 31;
export const PROBE_INTERVAL_MIN_S = 5;
export const IDLE_TIMEOUT_MIN_MIN = 4;
export const IDLE_TIMEOUT_MAX_MIN = 30;

type Problem = (detail: string) => never;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function port(v: unknown, what: string, bad: Problem): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 65535) {
    bad(`${what} ${JSON.stringify(v)} is not a port number (1 to 65535)`);
  }
  return v;
}

function intIn(v: unknown, what: string, lo: number, hi: number, bad: Problem): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
    bad(`${what} ${JSON.stringify(v)} must be an integer from ${lo} to ${hi}`);
  }
  return v;
}

function oneOf<T extends string>(v: unknown, what: string, options: readonly T[], bad: Problem): T {
  if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
    bad(`${what} ${JSON.stringify(v)} must be one of ${options.join(', ')}`);
  }
  return v as T;
}

function name(v: unknown, what: string, bad: Problem): string {
  if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/.test(v)) {
    bad(`${what} ${JSON.stringify(v)} must be 1 to 32 letters, digits, '_' or '-'`);
  }
  return v;
}

/** Validates one endpoint spec from the outside world and returns its canonical form. */
export function normalizeEndpoint(input: unknown, where = 'endpoint'): Endpoint {
  const bad: Problem = (detail) => {
    throw new VipdipError('INVALID_ARGUMENT', `${where}: ${detail}`);
  };
  if (!isObject(input)) bad('must be an object');
  const e = input;
  const ep: Endpoint = {
    name: name(e.name, 'name', bad),
    protocol: oneOf(e.protocol ?? 'tcp', 'protocol', ['tcp', 'udp'] as const, bad),
    publicPort: port(e.publicPort, 'publicPort', bad),
    localPort: port(e.localPort ?? e.publicPort, 'localPort', bad),
    distribution: oneOf(
      e.distribution ?? 'fiveTuple',
      'distribution',
      ['fiveTuple', 'sourceIP', 'sourceIPProtocol'] as const,
      bad,
    ),
    idleTimeoutMinutes: intIn(
      e.idleTimeoutMinutes ?? IDLE_TIMEOUT_MIN_MIN,
      'idleTimeoutMinutes',
      IDLE_TIMEOUT_MIN_MIN,
      IDLE_TIMEOUT_MAX_MIN,
      bad,
    ),
    acl: [],
    proxyProtocol: false,
  };
  if (e.lbSet !== undefined && e.lbSet !== null) ep.lbSet = name(e.lbSet, 'lbSet', bad);
  if (e.proxyProtocol !== undefined) {
    if (typeof e.proxyProtocol !== 'boolean') bad('proxyProtocol must be true or false');
    ep.proxyProtocol = e.proxyProtocol;
  }
  if (e.probe !== undefined && e.probe !== null) ep.probe = normalizeProbe(e.probe, ep, bad);
  if (e.acl !== undefined && e.acl !== null) ep.acl = normalizeAcl(e.acl, bad);
  const known = new Set([
    'name',
    'protocol',
    'publicPort',
    'localPort',
    'lbSet',
    'probe',
    'distribution',
    'idleTimeoutMinutes',
    'acl',
    'proxyProtocol',
  ]);
  for (const k of Object.keys(e)) if (!known.has(k)) bad(`unknown field ${JSON.stringify(k)}`);
  return ep;
}

function normalizeProbe(input: unknown, ep: Endpoint, bad: Problem): Probe {
  if (!isObject(input)) bad('probe must be an object');
  const p = input;
  const probe: Probe = {
    protocol: oneOf(p.protocol ?? 'tcp', 'probe.protocol', ['tcp', 'http'] as const, bad),
    port: port(p.port ?? ep.localPort, 'probe.port', bad),
    intervalSeconds: intIn(
      p.intervalSeconds ?? PROBE_INTERVAL_DEFAULT_S,
      'probe.intervalSeconds',
      PROBE_INTERVAL_MIN_S,
      3600,
      bad,
    ),
    timeoutSeconds: intIn(p.timeoutSeconds ?? PROBE_TIMEOUT_DEFAULT_S, 'probe.timeoutSeconds', 1, 7200, bad),
  };
  if (probe.protocol === 'http') {
    const path = p.path ?? '/';
    if (typeof path !== 'string' || !path.startsWith('/') || path.length > 1024 || /\s/.test(path)) {
      bad(`probe.path ${JSON.stringify(path)} must be an absolute path without spaces`);
    }
    probe.path = path;
  } else if (p.path !== undefined) bad('probe.path is only for http probes');
  for (const k of Object.keys(p)) {
    if (!['protocol', 'port', 'path', 'intervalSeconds', 'timeoutSeconds'].includes(k)) {
      bad(`unknown probe field ${JSON.stringify(k)}`);
    }
  }
  if (ep.protocol === 'udp' && probe.protocol === 'http' && probe.port === ep.localPort) {
    bad('an http probe cannot target the UDP port itself');
  }
  return probe;
}

function normalizeAcl(input: unknown, bad: Problem): AclRule[] {
  if (!Array.isArray(input)) bad('acl must be a list of rules');
  const orders = new Set<number>();
  const rules = (input as unknown[]).map((r, i) => {
    if (!isObject(r)) bad(`acl[${i}] must be an object`);
    const o = r;
    const order = intIn(o.order, `acl[${i}].order`, 0, 65535, bad);
    if (orders.has(order)) bad(`acl[${i}].order ${order} is used twice`);
    orders.add(order);
    let cidr: string;
    try {
      cidr = formatCidr(parseCidr(o.remoteSubnet as string));
    } catch (e) {
      return bad(`acl[${i}].remoteSubnet: ${(e as Error).message}`);
    }
    const rule: AclRule = {
      order,
      action: oneOf(o.action, `acl[${i}].action`, ['permit', 'deny'] as const, bad),
      remoteSubnet: cidr,
    };
    if (o.description !== undefined) {
      if (typeof o.description !== 'string' || o.description.length > 256) {
        bad(`acl[${i}].description must be text of at most 256 characters`);
      }
      rule.description = o.description;
    }
    return rule;
  });
  return rules.sort((a, b) => a.order - b.order);
}

/** Validates a VM's endpoint list: names unique within the VM. */
export function normalizeEndpoints(input: unknown, where = 'endpoints'): Endpoint[] {
  if (input === undefined || input === null) return [];
  if (!Array.isArray(input)) throw new VipdipError('INVALID_ARGUMENT', `${where} must be a list`);
  const eps = input.map((e, i) => normalizeEndpoint(e, `${where}[${i}]`));
  const names = new Set<string>();
  for (const e of eps) {
    if (names.has(e.name))
      throw new VipdipError('INVALID_ARGUMENT', `${where}: endpoint name ${e.name} is used twice`);
    names.add(e.name);
  }
  return eps;
}

/**
 * Checks the endpoints of all VMs of one service together: a (protocol, public port) on the VIP
 * belongs to one endpoint, or to one load-balanced set whose members all use it.
 */
export function checkServiceEndpoints(
  service: string,
  vms: readonly { name: string; endpoints: readonly Endpoint[] }[],
): void {
  const byPort = new Map<string, { vm: string; lbSet: string | undefined }>();
  const setPort = new Map<string, string>();
  for (const vm of vms) {
    // One VM never publishes the same port twice, whatever the sets of the endpoints.
    const own = new Set<string>();
    for (const e of vm.endpoints) {
      const key = `${e.protocol}/${e.publicPort}`;
      if (own.has(key)) {
        throw new VipdipError(
          'CONFLICT',
          `VM ${vm.name} of service ${service} publishes public port ${key} twice`,
        );
      }
      own.add(key);
      const prev = byPort.get(key);
      if (prev !== undefined) {
        const shared = prev.lbSet !== undefined && prev.lbSet === e.lbSet;
        if (!shared) {
          throw new VipdipError(
            'CONFLICT',
            `public port ${key} of service ${service} is already used by VM ${prev.vm}` +
              (e.lbSet === undefined ? '' : ` outside load-balanced set ${e.lbSet}`),
          );
        }
      } else byPort.set(key, { vm: vm.name, lbSet: e.lbSet });
      if (e.lbSet !== undefined) {
        const p = setPort.get(e.lbSet);
        if (p !== undefined && p !== key) {
          throw new VipdipError(
            'CONFLICT',
            `load-balanced set ${e.lbSet} of service ${service} uses ${p}; VM ${vm.name} gives it ${key}`,
          );
        }
        setPort.set(e.lbSet, key);
      }
    }
  }
}
