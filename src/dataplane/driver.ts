/**
 * The data-plane driver interface: desired state in, reconcile, status out. The agent computes the
 * desired state from the control plane (every VIP and ILPIP endpoint with its backends and their
 * health, the source NAT of each DIP), and a driver makes it true on its substrate: `none` records
 * it, `local` realizes it with userspace listeners on loopback, and a kernel `netns` driver would
 * render it to nftables rules and namespaces. Probes and workloads are the agent's, but where they
 * run from is the driver's business (a namespace, for netns), so the driver supplies the prober and
 * wraps workload commands.
 */
import type { Cidr } from '../core/index.ts';
import type { Prober } from '../lb/index.ts';
import type { AclRule, Distribution, ListenerReport, Protocol } from '../core/api-shapes.ts';

export type DriverName = 'none' | 'local' | 'netns';
export const DRIVER_NAMES: readonly DriverName[] = ['none', 'local', 'netns'];

/** One member of an endpoint's set, as the data plane needs it. */
export interface DesiredBackend {
  /** Stable identity, `subscription/service/vm`: the Maglev table hashes it, not the DIP. */
  readonly id: string;
  readonly vm: string;
  readonly dip: string;
  readonly port: number;
  /** Whether new flows may go to it: the agent's health verdict (its probe or implicit check; true for UDP without a probe). */
  readonly healthy: boolean;
}

/** One listening address:port of the data plane: a VIP endpoint, or an ILPIP port of one VM. */
export interface DesiredEndpoint {
  /** `tcp/127.100.0.5:8080`: unique in a desired state. */
  readonly key: string;
  readonly kind: 'vip' | 'ilpip';
  readonly subscription: string;
  readonly service: string;
  /** The endpoint's name (of the first member, for a load-balanced set). */
  readonly name: string;
  readonly lbSet: string | null;
  readonly address: string;
  readonly protocol: Protocol;
  readonly port: number;
  readonly distribution: Distribution;
  /** Idle timeout in (model) milliseconds. */
  readonly idleMs: number;
  readonly acl: readonly AclRule[];
  readonly proxyProtocol: boolean;
  readonly backends: readonly DesiredBackend[];
}

/** The address VM → VIP flows leave from (R6): a DIP's own ILPIP, else its service's VIP. */
export interface SourceNat {
  /**
   * The subscription whose VNet holds the DIP: DIPs of two subscriptions may be equal (their VNets
   * may overlap), and a driver that routes each subscription apart (netns) keys SNAT by both.
   */
  readonly subscription: string;
  readonly dip: string;
  readonly source: string;
}

/** An allocated VM as a driver that makes hosts (netns) needs it: where it sits and its address. */
export interface DesiredVm {
  /** `subscription/service/vm`. */
  readonly key: string;
  readonly subscription: string;
  readonly service: string;
  readonly vm: string;
  /** `subscription/vnet`: the VNet's key in `vnets`. */
  readonly vnet: string;
  /** The subnet's CIDR (`10.1.0.0/24`): its prefix length and, as its first address, the gateway. */
  readonly cidr: string;
  readonly dip: string;
}

/** A VNet with a VM in it. */
export interface DesiredVnet {
  /** `subscription/vnet`. */
  readonly key: string;
  readonly subscription: string;
  readonly name: string;
  /** The CIDRs of its subnets that hold a VM. */
  readonly subnets: readonly string[];
}

export interface DesiredDataPlane {
  readonly endpoints: readonly DesiredEndpoint[];
  readonly snat: readonly SourceNat[];
  /**
   * Every allocated VM and the VNets they sit in, for drivers that make real hosts (netns); absent
   * when the control source does not give subnets (listener-only drivers never need them).
   */
  readonly vms?: readonly DesiredVm[];
  readonly vnets?: readonly DesiredVnet[];
}

/** A listener's status: the shape an agent reports (the report route refuses any other field). */
export type ListenerStatus = Readonly<ListenerReport>;

export interface DriverStatus {
  readonly driver: DriverName;
  readonly listeners: readonly ListenerStatus[];
}

export interface ReconcileResult {
  opened: number;
  updated: number;
  closed: number;
  /** Endpoints that could not be realized, with the reason; the rest were. */
  failed: { key: string; error: string }[];
}

export interface WorkloadCommand {
  command: string;
  args: string[];
  /**
   * The network namespace the workload runs in (the netns driver's VM). Entering one needs root, so
   * the sandbox enters it first and drops to its user after (see agent/sandbox.ts).
   */
  netns?: string;
}

/**
 * Passive health's verdict on a backend: real connections to DIP:port failed often enough in a row
 * (refused, reset before any byte, no accept in time, ICMP unreachable) that new flows already avoid
 * it. The agent takes it out of rotation until its probe (or implicit check) passes again.
 */
export interface BackendFault {
  readonly dip: string;
  readonly port: number;
  readonly detail: string;
}

export interface DataPlaneDriver {
  readonly name: DriverName;
  /** False for `none`: no listener, no probe, no workload. */
  readonly carriesTraffic: boolean;
  /** Throws DRIVER_UNSUPPORTED for an address block this driver cannot carry. Pure. */
  checkAddressPlan(cidr: Cidr, what: string): void;
  /**
   * Brings the data plane to `desired`. Idempotent; one endpoint that cannot be realized is reported
   * in the result and retried later, never allowed to stop the others.
   */
  reconcile(desired: DesiredDataPlane): Promise<ReconcileResult>;
  status(): DriverStatus;
  /**
   * Subscribes to passive-health faults (never called by a driver that carries no traffic); returns
   * the unsubscribe. A faulted backend stays avoided until a reconcile gives it `healthy: false`
   * (the agent has taken it out) or it leaves every set.
   */
  onBackendFault(listener: (f: BackendFault) => void): () => void;
  /** Sends probes from where this driver's traffic comes from; undefined when it carries none. */
  readonly prober: Prober | undefined;
  /** The command that runs a VM's workload where the VM lives (as is, for local). */
  wrapWorkload(vm: { service: string; vm: string; dip: string }, cmd: WorkloadCommand): WorkloadCommand;
  close(): Promise<void>;
}

/** The driver limits that are operator settings rather than endpoint settings. */
export interface DriverLimits {
  /** Flows open at once per endpoint, and per client address on one endpoint. */
  maxFlowsPerEndpoint: number;
  maxFlowsPerClient: number;
  /**
   * The largest Maglev table, a prime: each endpoint's table is `maglevTableSize(backends, this)`,
   * the smallest size of lb/'s ladder with 100 slots per backend.
   */
  tableSize: number;
}

/**
 * Defaults: the machine's hard limit of 20,000 descriptors (two per TCP flow) bounds the first;
 * one client may hold a tenth of an endpoint, so a single misbehaving one cannot starve the rest.
 */
export const DEFAULT_DRIVER_LIMITS: DriverLimits = {
  maxFlowsPerEndpoint: 8192,
  maxFlowsPerClient: 1024,
  tableSize: 65537,
};
