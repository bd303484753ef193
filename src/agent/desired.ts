/**
 * From the control plane's views to the agent's desired state, purely: which listeners the data plane
 * must have (every VIP endpoint, with its load-balanced set, and every ILPIP port), which backends
 * each one has and which of them are probed and how, the source NAT of each DIP (R6), and which
 * workloads must run on the hosts this agent serves.
 */
import type {
  DesiredEndpoint,
  DesiredVm,
  DesiredVnet,
  SourceNat,
  WorkloadCommand,
} from '../dataplane/index.ts';
import type { ProbeSpec } from '../lb/index.ts';
import type { Endpoint, ServiceView, VmView, VnetView } from '../lifecycle/index.ts';

export interface ControlSnapshot {
  services: readonly ServiceView[];
  vms: readonly VmView[];
  /** The VNets with their subnets, for drivers that make hosts; a source that lacks them omits it. */
  vnets?: readonly VnetView[];
}

export interface AgentScope {
  /** Hosts whose VMs' workloads this agent runs; null for every host. */
  hosts: ReadonlySet<string> | null;
  /** Whether this agent runs the load balancer: listeners, probes, health. */
  lb: boolean;
}

/** A backend before health is known: the agent fills in `healthy` from its probes. */
export interface BackendTemplate {
  id: string;
  vm: string;
  dip: string;
  port: number;
  /** The health monitor's key, `service/vm/endpoint`, or null when the endpoint has no probe. */
  probe: string | null;
}

export type EndpointTemplate = Omit<DesiredEndpoint, 'backends'> & { backends: BackendTemplate[] };

/** A backend as health reports name it. */
export interface BackendInfo {
  key: string;
  subscription: string;
  service: string;
  endpoint: string;
  vm: string;
  dip: string;
  localPort: number;
  probed: boolean;
}

export interface DesiredWorkload {
  /** `service/vm`. */
  key: string;
  subscription: string;
  service: string;
  vm: string;
  dip: string;
  /** The workload as the VM states it: `whoami`, `echo` or a command line. */
  workload: string;
  env: Record<string, string>;
  /** Any change of it (a new DIP, say) restarts the workload. */
  fingerprint: string;
}

export interface AgentDesired {
  endpoints: EndpointTemplate[];
  snat: SourceNat[];
  probes: Map<string, ProbeSpec>;
  backends: BackendInfo[];
  workloads: DesiredWorkload[];
  /** Every VM with a workload in this agent's scope, running or not: their logs are kept. */
  knownWorkloads: Set<string>;
  /** Allocated VMs and their VNets (see DesiredDataPlane); undefined when the snapshot has no VNets. */
  vms?: DesiredVm[];
  vnets?: DesiredVnet[];
}

export const BUILTIN_WORKLOADS = ['whoami', 'echo'] as const;
export type BuiltinWorkload = (typeof BUILTIN_WORKLOADS)[number];
export const isBuiltin = (w: string): w is BuiltinWorkload =>
  (BUILTIN_WORKLOADS as readonly string[]).includes(w);

/** `VIPDIP_PORT_<NAME>`: the endpoint name uppercased, anything but letters and digits as `_`. */
export const envName = (endpoint: string) => endpoint.toUpperCase().replace(/[^A-Z0-9]/g, '_');

const MINUTE_MS = 60_000;
const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export const healthKey = (service: string, vm: string, endpoint: string) => `${service}/${vm}/${endpoint}`;

function probeSpec(vm: VmView, e: Endpoint): ProbeSpec | undefined {
  if (e.probe === undefined || vm.dip === null) return undefined;
  return {
    protocol: e.probe.protocol,
    address: vm.dip,
    port: e.probe.port,
    ...(e.probe.path !== undefined ? { path: e.probe.path } : {}),
    intervalMs: e.probe.intervalSeconds * 1000,
    timeoutMs: e.probe.timeoutSeconds * 1000,
  };
}

export function desiredState(snap: ControlSnapshot, scope: AgentScope): AgentDesired {
  const services = new Map(snap.services.map((s) => [s.name, s]));
  const vms = [...snap.vms].sort((a, b) =>
    a.service === b.service ? byName(a, b) : a.service < b.service ? -1 : 1,
  );
  const out: AgentDesired = {
    endpoints: [],
    snat: [],
    probes: new Map(),
    backends: [],
    workloads: [],
    knownWorkloads: new Set(),
  };

  // Source NAT of every allocated DIP; a DIP held twice (overlapping VNets of two subscriptions,
  // which loopback cannot tell apart) gets none rather than a wrong one.
  const sources = new Map<string, string | null>();
  for (const vm of vms) {
    if (vm.dip === null) continue;
    const source = vm.ilpip ?? services.get(vm.service)?.vip ?? null;
    if (source === null) continue;
    sources.set(vm.dip, sources.has(vm.dip) ? null : source);
  }
  for (const [dip, source] of sources) if (source !== null) out.snat.push({ dip, source });

  if (scope.lb) {
    const groups = new Map<string, EndpointTemplate>();
    for (const vm of vms) {
      const svc = services.get(vm.service);
      const serving = vm.state === 'running' && vm.dip !== null;
      for (const e of vm.endpoints) {
        const probe = serving ? probeSpec(vm, e) : undefined;
        const key = healthKey(vm.service, vm.name, e.name);
        if (probe !== undefined) out.probes.set(key, probe);
        if (serving) {
          out.backends.push({
            key,
            subscription: vm.subscription,
            service: vm.service,
            endpoint: e.name,
            vm: vm.name,
            dip: vm.dip!,
            localPort: e.localPort,
            probed: probe !== undefined,
          });
        }
        const backend: BackendTemplate | undefined = serving
          ? {
              id: `${vm.subscription}/${vm.service}/${vm.name}`,
              vm: vm.name,
              dip: vm.dip!,
              port: e.localPort,
              probe: probe === undefined ? null : key,
            }
          : undefined;

        if (svc?.vip != null) {
          const listenKey = `${e.protocol}/${svc.vip}:${e.publicPort}`;
          let g = groups.get(listenKey);
          if (g === undefined) {
            g = {
              key: listenKey,
              kind: 'vip',
              subscription: vm.subscription,
              service: vm.service,
              name: e.name,
              lbSet: e.lbSet ?? null,
              address: svc.vip,
              protocol: e.protocol,
              port: e.publicPort,
              distribution: e.distribution,
              idleMs: e.idleTimeoutMinutes * MINUTE_MS,
              acl: e.acl,
              proxyProtocol: e.proxyProtocol,
              backends: [],
            };
            groups.set(listenKey, g);
          }
          if (backend !== undefined) g.backends.push(backend);
        }
        // An ILPIP is the VM's own public address: its ports lead straight to the same ports of the DIP.
        if (vm.ilpip !== null && backend !== undefined) {
          const listenKey = `${e.protocol}/${vm.ilpip}:${e.localPort}`;
          if (!groups.has(listenKey)) {
            groups.set(listenKey, {
              key: listenKey,
              kind: 'ilpip',
              subscription: vm.subscription,
              service: vm.service,
              name: e.name,
              lbSet: null,
              address: vm.ilpip,
              protocol: e.protocol,
              port: e.localPort,
              distribution: 'fiveTuple',
              idleMs: e.idleTimeoutMinutes * MINUTE_MS,
              acl: [],
              proxyProtocol: e.proxyProtocol,
              backends: [backend],
            });
          }
        }
      }
    }
    out.endpoints = [...groups.values()];
  }

  if (snap.vnets !== undefined) Object.assign(out, hosts(vms, snap.vnets));

  for (const vm of vms) {
    if (vm.workload === null) continue;
    // A VM on another agent's host is that agent's; a deallocated one (no host) is whoever ran it
    // last, which keeps its logs.
    if (scope.hosts !== null && vm.host !== null && !scope.hosts.has(vm.host)) continue;
    const key = `${vm.service}/${vm.name}`;
    out.knownWorkloads.add(key);
    if (vm.state !== 'running' || vm.dip === null) continue;
    const env = workloadEnv(vm, services.get(vm.service));
    out.workloads.push({
      key,
      subscription: vm.subscription,
      service: vm.service,
      vm: vm.name,
      dip: vm.dip,
      workload: vm.workload,
      env,
      fingerprint: JSON.stringify([vm.workload, env]),
    });
  }
  return out;
}

/**
 * Every VM that holds a DIP, with its subnet's CIDR, and the VNets they sit in (only the subnets
 * that hold one): what a driver that makes real hosts builds namespaces and bridges from. A VM whose
 * subnet the snapshot does not know (deleted meanwhile) is left out until the next snapshot.
 */
export function hosts(
  vms: readonly VmView[],
  vnetViews: readonly VnetView[],
): { vms: DesiredVm[]; vnets: DesiredVnet[] } {
  const subnets = new Map<string, string>();
  for (const v of vnetViews) {
    for (const s of v.subnets) subnets.set(`${v.subscription}/${v.name}/${s.name}`, s.cidr);
  }
  const out: DesiredVm[] = [];
  const used = new Map<string, { subscription: string; name: string; cidrs: Set<string> }>();
  for (const vm of vms) {
    if (vm.dip === null) continue;
    const cidr = subnets.get(`${vm.subscription}/${vm.vnet}/${vm.subnet}`);
    if (cidr === undefined) continue;
    const vnet = `${vm.subscription}/${vm.vnet}`;
    out.push({
      key: `${vm.subscription}/${vm.service}/${vm.name}`,
      subscription: vm.subscription,
      service: vm.service,
      vm: vm.name,
      vnet,
      cidr,
      dip: vm.dip,
    });
    let u = used.get(vnet);
    if (u === undefined)
      used.set(vnet, (u = { subscription: vm.subscription, name: vm.vnet, cidrs: new Set() }));
    u.cidrs.add(cidr);
  }
  const vnets = [...used].map(([key, u]) => ({
    key,
    subscription: u.subscription,
    name: u.name,
    subnets: [...u.cidrs].sort(),
  }));
  return { vms: out, vnets: vnets.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)) };
}

/** The environment a workload runs with: who it is, where it is, and the ports it serves. */
export function workloadEnv(vm: VmView, svc: ServiceView | undefined): Record<string, string> {
  const env: Record<string, string> = {
    VIPDIP_SUBSCRIPTION: vm.subscription,
    VIPDIP_SERVICE: vm.service,
    VIPDIP_VM: vm.name,
    VIPDIP_HOST: vm.host ?? '',
    VIPDIP_DIP: vm.dip ?? '',
    VIPDIP_VIP: svc?.vip ?? '',
    VIPDIP_FQDN: vm.fqdns.internal,
  };
  if (vm.ilpip !== null) env.VIPDIP_ILPIP = vm.ilpip;
  for (const e of [...vm.endpoints].sort(byName)) {
    const n = envName(e.name);
    env[`VIPDIP_PORT_${n}`] = String(e.localPort);
    env[`VIPDIP_PROTOCOL_${n}`] = e.protocol;
    if (e.proxyProtocol) env[`VIPDIP_PROXY_${n}`] = '1';
    if (e.probe !== undefined && e.probe.port !== e.localPort) {
      env[`VIPDIP_PROBE_PORT_${n}`] = String(e.probe.port);
      env[`VIPDIP_PROBE_PROTOCOL_${n}`] = e.probe.protocol;
    }
  }
  return env;
}

/** How a workload is started: a built-in through the vipdip command itself, anything else by the shell. */
export function workloadCommand(workload: string, vipdipBin: string): WorkloadCommand {
  if (isBuiltin(workload)) return { command: process.execPath, args: [vipdipBin, 'workload', workload] };
  return { command: '/bin/sh', args: ['-c', workload] };
}
