/**
 * The tables, as Kysely sees them. Addresses are stored as integers (BIGINT on PostgreSQL, since an
 * unsigned 32-bit value does not fit INT4); flags as 0/1 integers; lists and endpoint specs as JSON
 * text, so both dialects store the same thing.
 *
 * The columns carry the domain's types where the database stores exactly what the type holds:
 * addresses are `Ipv4` (a branded number, so nothing changes at run time), states and policies
 * their unions of text. Only the 0/1 flags differ from their domain type; the repo turns them into
 * booleans where it reads rows and back where it writes them (`store.ts`).
 */
import type { Generated } from 'kysely';
import type { VmState } from '../core/api-shapes.ts';
import type { Ipv4 } from '../core/ip.ts';
import type { AllocationPolicy, MovePolicy } from '../ipam/index.ts';

/** A flag as both dialects store it: SQLite has no boolean type, so PostgreSQL keeps an integer too. */
export type StoredFlag = 0 | 1;

export interface SubscriptionsTable {
  id: Generated<number>;
  name: string;
  created_at: string;
}

export interface PublicPoolsTable {
  id: Generated<number>;
  cidr: string;
  base: Ipv4;
  prefix: number;
}

export interface HostsTable {
  id: Generated<number>;
  name: string;
  rack: string;
}

export interface VnetsTable {
  id: Generated<number>;
  subscription_id: number;
  name: string;
  /** JSON array of CIDR text. */
  address_space: string;
  dip_policy: AllocationPolicy;
  move_policy: MovePolicy;
}

export interface SubnetsTable {
  id: Generated<number>;
  vnet_id: number;
  name: string;
  cidr: string;
  base: Ipv4;
  prefix: number;
}

export interface ReservedIpsTable {
  id: Generated<number>;
  subscription_id: number;
  name: string;
  pool_id: number;
  address: Ipv4;
  service_id: number | null;
}

export interface CloudServicesTable {
  id: Generated<number>;
  subscription_id: number;
  name: string;
  vnet_id: number | null;
  reserved_ip_id: number | null;
  vip: Ipv4 | null;
  vip_pool_id: number | null;
}

export interface VmsTable {
  id: Generated<number>;
  service_id: number;
  name: string;
  subnet_id: number;
  state: VmState;
  dip: Ipv4 | null;
  host_id: number | null;
  static_dip: Ipv4 | null;
  /** The repo hands it out as a boolean (`VmRow`). */
  ilpip_enabled: StoredFlag;
  ilpip: Ipv4 | null;
  ilpip_pool_id: number | null;
  workload: string | null;
  /** JSON array of endpoint specs. */
  endpoints: string;
}

/**
 * Every bound address, one row each. The primary key (scope, address) is the last line of defence
 * for I1: whatever the code above does, one address of a pool or subnet cannot be bound twice.
 */
export interface AddressBindingsTable {
  /** `pool:<id>` or `subnet:<id>`. */
  scope: string;
  address: Ipv4;
  /** `vm:<id>`, `service:<id>` or `reserved-ip:<id>`. */
  owner: string;
  /** `dip`, `static` (a VM's static DIP, held for the VM's whole life), `vip`, `ilpip` or `reserved`. */
  kind: string;
}

export interface EventsTable {
  seq: Generated<number>;
  time: string;
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old: string | null;
  new: string | null;
  /**
   * Internal, never shown: on the first event of a transaction, the changes that transaction made
   * to the allocation indexes (JSON), so that every replica's index follows every other's.
   */
  changes: string | null;
}

/** PostgreSQL only: the one row whose lock orders event appends (see the 2026-12-02 design note). */
export interface EventCounterTable {
  id: number;
  seq: number;
  time: string;
}

export interface TokensTable {
  id: Generated<number>;
  /** SHA-256 of the token, hex: the token itself is never stored. */
  hash: string;
  name: string;
  /** Null for an operator token. */
  subscription_id: number | null;
  created_at: string;
}

/** Operator-registered workload images (the built-ins are not stored). */
export interface ImagesTable {
  name: string;
  command: string;
  /** JSON object of environment variables. */
  env: string;
  created_at: string;
}

export interface MetaTable {
  key: string;
  value: string;
}

export interface Database {
  subscriptions: SubscriptionsTable;
  public_pools: PublicPoolsTable;
  hosts: HostsTable;
  vnets: VnetsTable;
  subnets: SubnetsTable;
  reserved_ips: ReservedIpsTable;
  cloud_services: CloudServicesTable;
  vms: VmsTable;
  address_bindings: AddressBindingsTable;
  events: EventsTable;
  event_counter: EventCounterTable;
  meta: MetaTable;
  tokens: TokensTable;
  images: ImagesTable;
}
