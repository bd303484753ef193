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
import {
  BUILTIN_IMAGES,
  isBuiltinImage,
  parseWorkload,
  type BuiltinImage,
  type Endpoint,
  type ImageView,
  type ServiceView,
  type VmView,
  type VnetView,
} from '../lifecycle/index.ts';

export interface ControlSnapshot {
  services: readonly ServiceView[];
  vms: readonly VmView[];
  /** The registered images (with their commands: an agent holds the operator's token). */
  images?: readonly ImageView[];
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
  /**
   * The health monitor's key, `service/vm/endpoint`, or null when nothing checks the backend (a UDP
   * endpoint without a probe).
   */
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
  /** Checked by the health monitor: by its probe, or by the implicit TCP check. */
  probed: boolean;
  /** `probe`: the endpoint's own; `implicit`: a TCP connect to DIP:localPort; `none`: UDP without a probe. */
  check: 'probe' | 'implicit' | 'none';
}

export interface DesiredWorkload {
  /** `service/vm`. */
  key: string;
  subscription: string;
  service: string;
  vm: string;
  dip: string;
  /** The workload as the VM states it: an image name or `command: …`. */
  workload: string;
  /** What runs: a built-in, or a shell command (an image's or the operator's inline one). */
  launch: WorkloadLaunch;
  /** The VM's VIPDIP_* variables and its image's environment. */
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

export const BUILTIN_WORKLOADS = BUILTIN_IMAGES;
export const isBuiltin = isBuiltinImage;

export type WorkloadLaunch =
  { kind: 'builtin'; image: BuiltinImage } | { kind: 'shell'; command: string; env: Record<string, string> };

/**
 * What a VM's workload runs, from the images the control plane knows; undefined when the text is
 * no workload or names an image that is gone (a delete refuses that, so only for a moment).
 */
export function resolveWorkload(
  workload: string,
  images: ReadonlyMap<string, ImageView>,
): WorkloadLaunch | undefined {
  let ref;
  try {
    ref = parseWorkload(workload);
  } catch {
    return undefined;
  }
  if (ref.kind === 'command') return { kind: 'shell', command: ref.command, env: {} };
  if (isBuiltinImage(ref.image)) return { kind: 'builtin', image: ref.image };
  const img = images.get(ref.image);
  if (img === undefined || img.command === null) return undefined;
  return { kind: 'shell', command: img.command, env: img.env };
}

/** `VIPDIP_PORT_<NAME>`: the endpoint name uppercased, anything but letters and digits as `_`. */
export const envName = (endpoint: string) => endpoint.toUpperCase().replace(/[^A-Z0-9]/g, '_');

const MINUTE_MS = 60_000;
const byName = <T extends { name: string }>(a: T, b: T) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

export const healthKey = (service: string, vm: string, endpoint: string) => `${service}/${vm}/${endpoint}`;

/**
 * An endpoint without a probe still enters rotation only once its backend accepts: a TCP connect to
 * DIP:localPort, as Azure's default probe is TCP, at Azure's default rhythm (15 s, down after 31 s;
 * model milliseconds). A new backend is checked every second until it first answers; a dead one is
 * taken out much sooner than the timeout by its exit or by failed connects (passive health).
 */
export const IMPLICIT_CHECK_INTERVAL_MS = 15_000;
export const IMPLICIT_CHECK_TIMEOUT_MS = 31_000;

function probeSpec(vm: VmView, e: Endpoint): ProbeSpec | undefined {
  if (vm.dip === null) return undefined;
  if (e.probe === undefined) {
    // UDP cannot be checked by a connect; its backends are judged by ICMP unreachable (passive) only.
    if (e.protocol !== 'tcp') return undefined;
    return {
      protocol: 'tcp',
      network: vm.subscription,
      address: vm.dip,
      port: e.localPort,
      intervalMs: IMPLICIT_CHECK_INTERVAL_MS,
      timeoutMs: IMPLICIT_CHECK_TIMEOUT_MS,
    };
  }
  return {
    protocol: e.probe.protocol,
    network: vm.subscription,
    address: vm.dip,
    port: e.probe.port,
    ...(e.probe.path !== undefined ? { path: e.probe.path } : {}),
    intervalMs: e.probe.intervalSeconds * 1000,
    timeoutMs: e.probe.timeoutSeconds * 1000,
  };
}

export function desiredState(snap: ControlSnapshot, scope: AgentScope): AgentDesired {
  const services = new Map(snap.services.map((s) => [s.name, s]));
  const images = new Map((snap.images ?? []).map((m) => [m.name, m]));
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

  // Source NAT of every allocated DIP, keyed by its subscription too: VNets of two subscriptions may
  // overlap (a driver that cannot tell their DIPs apart, on loopback, leaves such a DIP out).
  const sources = new Map<string, SourceNat>();
  for (const vm of vms) {
    if (vm.dip === null) continue;
    const source = vm.ilpip ?? services.get(vm.service)?.vip ?? null;
    if (source === null) continue;
    const key = `${vm.subscription} ${vm.dip}`;
    if (!sources.has(key)) sources.set(key, { subscription: vm.subscription, dip: vm.dip, source });
  }
  out.snat.push(...sources.values());

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
            check: e.probe !== undefined ? 'probe' : probe !== undefined ? 'implicit' : 'none',
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
    const launch = resolveWorkload(vm.workload, images);
    if (launch === undefined) continue;
    const env = {
      ...(launch.kind === 'shell' ? launch.env : {}),
      ...workloadEnv(vm, services.get(vm.service)),
    };
    out.workloads.push({
      key,
      subscription: vm.subscription,
      service: vm.service,
      vm: vm.name,
      dip: vm.dip,
      workload: vm.workload,
      launch,
      env,
      // An image changed by the operator restarts the VMs running it.
      fingerprint: JSON.stringify([vm.workload, launch, env]),
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

/** The shared host of built-ins (agent/shared-hosts.ts), through the vipdip command itself. */
export const sharedHostCommand = (vipdipBin: string): WorkloadCommand => ({
  command: process.execPath,
  args: [vipdipBin, 'workload', 'shared-host'],
});

/** How a workload is started: a built-in through the vipdip command itself, anything else by the shell. */
export function workloadCommand(launch: WorkloadLaunch, vipdipBin: string): WorkloadCommand {
  if (launch.kind === 'builtin') {
    return { command: process.execPath, args: [vipdipBin, 'workload', launch.image] };
  }
  return { command: '/bin/sh', args: ['-c', launch.command] };
}
