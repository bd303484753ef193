/**
 * The API's JSON as the dashboard reads it. These mirror src/lifecycle/views.ts (which the browser
 * bundle cannot import: the lifecycle's index pulls in the store); api-types.test.ts checks at
 * compile time that the two stay assignable both ways.
 */
export type VmState = 'running' | 'stopped' | 'deallocated';

export interface Probe {
  protocol: 'tcp' | 'http';
  port: number;
  path?: string;
  intervalSeconds: number;
  timeoutSeconds: number;
}

export interface Endpoint {
  name: string;
  protocol: 'tcp' | 'udp';
  publicPort: number;
  localPort: number;
  lbSet?: string;
  probe?: Probe;
  distribution: 'fiveTuple' | 'sourceIP' | 'sourceIPProtocol';
  idleTimeoutMinutes: number;
  acl: { order: number; action: 'permit' | 'deny'; remoteSubnet: string; description?: string }[];
  proxyProtocol: boolean;
}

export interface Vm {
  subscription: string;
  service: string;
  name: string;
  state: VmState;
  dip: string | null;
  host: string | null;
  rack: string | null;
  subnet: string;
  vnet: string;
  staticDip: string | null;
  ilpip: string | null;
  ilpipEnabled: boolean;
  workload: string | null;
  endpoints: Endpoint[];
  fqdns: { internal: string; public: string | null };
}

export interface Service {
  subscription: string;
  name: string;
  vip: string | null;
  reservedIp: string | null;
  dnsName: string;
  vnet: string | null;
  vms: string[];
}

export interface Subnet {
  name: string;
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}

export interface Vnet {
  subscription: string;
  name: string;
  addressSpace: string[];
  dipPolicy: string;
  movePolicy: string;
  subnets: Subnet[];
}

export interface ReservedIp {
  subscription: string;
  name: string;
  address: string;
  service: string | null;
}

export interface Pool {
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}

export interface Host {
  name: string;
  rack: string;
  vms: number;
}

export interface Subscription {
  name: string;
  createdAt: string;
}

export interface ApiEvent {
  seq: number;
  time: string;
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}

export interface EventPage {
  events: ApiEvent[];
  next: number;
}

export interface Whoami {
  kind: 'operator' | 'subscription';
  name: string;
  subscription: string | null;
}

/** RFC 9457 problem details, as every API error is sent. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: { path: string; message: string }[];
}

// The data plane's routes (they answer 404 where no data plane runs).

export type BackendState = 'up' | 'down' | 'unknown';

export interface BackendHealth {
  vm: string;
  dip: string | null;
  localPort: number;
  state: BackendState;
  since: string | null;
  detail: string | null;
}

export interface EndpointHealth {
  name: string;
  protocol: string;
  publicPort: number;
  lbSet: string | null;
  vip: string | null;
  backends: BackendHealth[];
}

export interface ServiceHealth {
  service: string;
  endpoints: EndpointHealth[];
}

export type WorkloadStatus = 'none' | 'starting' | 'running' | 'stopped' | 'crashed';

export interface WorkloadLogs {
  vm: string;
  workload: string | null;
  status: WorkloadStatus;
  pid: number | null;
  restarts: number;
  lines: { time: string; stream: 'stdout' | 'stderr'; text: string }[];
}

/** The `data` of an `event: health` message on the stream (which carries no id). */
export interface HealthChange {
  service: string;
  endpoint: string;
  vm: string;
  dip: string | null;
  state: BackendState;
  since: string | null;
  detail: string | null;
}
