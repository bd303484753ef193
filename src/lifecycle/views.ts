/** The shapes users, scripts and the API see (SPEC.md §7): names and dotted-quad text, never ids. */
import type { Endpoint } from './endpoints.ts';
import type { VmState } from './transitions.ts';

export interface VmView {
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
  /** `internal` resolves to the DIP; `public` to the ILPIP, when the VM has one enabled. */
  fqdns: { internal: string; public: string | null };
}

/** A workload image: a built-in (no command shown: it runs through vipdip itself) or the operator's. */
export interface ImageView {
  name: string;
  builtin: boolean;
  /** The command line it runs (`/bin/sh -c`); null for the built-ins. */
  command: string | null;
  env: Record<string, string>;
  /** Null for the built-ins. */
  createdAt: string | null;
}

export interface ServiceView {
  subscription: string;
  name: string;
  vip: string | null;
  reservedIp: string | null;
  dnsName: string;
  vnet: string | null;
  vms: string[];
}

export interface SubnetView {
  name: string;
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}

export interface VnetView {
  subscription: string;
  name: string;
  addressSpace: string[];
  dipPolicy: string;
  movePolicy: string;
  subnets: SubnetView[];
}

export interface ReservedIpView {
  subscription: string;
  name: string;
  address: string;
  service: string | null;
}

export interface PoolView {
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}

export interface HostView {
  name: string;
  rack: string;
  vms: number;
}

export interface SubscriptionView {
  name: string;
  createdAt: string;
}

export interface EventView {
  seq: number;
  time: string;
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}
