/**
 * The store: every read and write of the control plane's state, as domain-shaped methods over one
 * Kysely schema. The same code runs on SQLite and PostgreSQL; a dialect adapter (sqlite/, postgres/)
 * supplies only the connection and how a transaction is opened.
 */
import type { Insertable, Kysely, Selectable, Transaction, Updateable } from 'kysely';
import type { Ipv4 } from '../core/ip.ts';
import type {
  CloudServicesTable,
  Database,
  EventsTable,
  HostsTable,
  ImagesTable,
  PublicPoolsTable,
  ReservedIpsTable,
  SubnetsTable,
  StoredFlag,
  SubscriptionsTable,
  TokensTable,
  VmsTable,
  VnetsTable,
} from './schema.ts';

export type SubscriptionRow = Selectable<SubscriptionsTable>;
export type PoolRow = Selectable<PublicPoolsTable>;
export type HostRow = Selectable<HostsTable>;
export type VnetRow = Selectable<VnetsTable>;
export type SubnetRow = Selectable<SubnetsTable>;
export type ReservedIpRow = Selectable<ReservedIpsTable>;
export type ServiceRow = Selectable<CloudServicesTable>;
/** A VM as the repo hands it out: its 0/1 flag is a boolean. */
export type VmRow = Flagged<Selectable<VmsTable>>;
/** A VM as the repo takes it in, flag as a boolean; the repo writes 0/1. */
export type NewVmRow = Flagged<Insertable<VmsTable>>;
export type VmPatch = Omit<Updateable<VmsTable>, 'ilpip_enabled'> & { ilpip_enabled?: boolean };
export type EventRow = Selectable<EventsTable>;
export type TokenRow = Selectable<TokensTable>;
export type ImageRow = Selectable<ImagesTable>;

/** A row with its stored flag as the boolean it means. */
export type Flagged<T extends { ilpip_enabled: StoredFlag }> = Omit<T, 'ilpip_enabled'> & {
  ilpip_enabled: boolean;
};

/** A row as the database returns it, its flag still 0/1: what `vmFromStore` takes. */
export type Unflagged<T extends { ilpip_enabled: boolean }> = Omit<T, 'ilpip_enabled'> & {
  ilpip_enabled: StoredFlag;
};

/**
 * The read boundary of a VM row (or of a row that carries a VM's columns): the stored 0/1 flag
 * becomes a boolean. In place, since a listing of 10,000 VMs should not copy 10,000 rows; the row
 * comes fresh from the driver and nothing else holds it. A repo that reads VM rows with its own
 * statements must pass them through here too.
 */
export function vmFromStore<T extends { ilpip_enabled: StoredFlag }>(row: T): Flagged<T> {
  const out = row as unknown as Flagged<T>;
  // Boolean() rather than `=== 1`: the same for 0/1, and a row passed through twice stays right.
  out.ilpip_enabled = Boolean(row.ilpip_enabled);
  return out;
}

/** The write boundary: the flag goes to the database as 0/1, as both dialects have always stored it. */
export function flagToStore(flag: boolean): StoredFlag {
  return flag ? 1 : 0;
}

/** SQLite's limit on the parameters of one statement (SQLITE_MAX_VARIABLE_NUMBER since 3.32). */
export const SQLITE_MAX_PARAMS = 32_766;
/** PostgreSQL's: the wire protocol counts parameters in 16 bits. */
export const POSTGRES_MAX_PARAMS = 65_535;
/** Parameters one appended event binds (every column of `events` but `seq`). */
export const EVENT_PARAMS = 8;

/** Splits a list into runs of at most `size` items, for statements that bind a parameter per item. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A page of the event log: oldest first after `since`, or newest first before `before`. */
export interface EventQuery {
  since?: number;
  before?: number;
  order?: 'asc' | 'desc';
  limit?: number;
  subscription?: string;
  /** Only the events of these resources (`vm/shop/web1`, `service/shop`…). */
  resources?: readonly string[];
}
export interface BindingRow {
  scope: string;
  address: Ipv4;
  owner: string;
  kind: string;
}

/** An event as appended: the store gives it its sequence number inside the writing transaction. */
export type NewEvent = Omit<Insertable<EventsTable>, 'seq'>;
/**
 * What the store made of an appended event: its sequence number, and its time, which is never
 * earlier than the previous event's (several writers' clocks may disagree).
 */
export interface AppendedEvent {
  seq: number;
  time: string;
}

export type VmDetailRow = VmRow & {
  service_name: string;
  subscription_name: string;
  subnet_name: string;
  vnet_name: string;
  host_name: string | null;
  host_rack: string | null;
};

export type VmContextRow = VmDetailRow & {
  subscription_id: number;
  service_vnet_id: number | null;
  service_reserved_ip_id: number | null;
  service_vip: Ipv4 | null;
  service_vip_pool_id: number | null;
  dip_policy: VnetRow['dip_policy'];
  move_policy: VnetRow['move_policy'];
};

export interface VmFilter {
  serviceId?: number;
  subscriptionId?: number;
  hostIds?: readonly number[];
  subnetId?: number;
}

export interface RepoOptions {
  /**
   * Lock the rows a write transaction reads in order to change them (`FOR UPDATE`). PostgreSQL
   * write transactions run at READ COMMITTED with several writers at once, so a decision made on a
   * row must hold that row until commit; SQLite has one writer at a time and needs none.
   */
  lock?: boolean;
}

/** Reads and writes inside one transaction (or, for `read`, one consistent snapshot). */
export class Repo {
  private readonly undo: (() => void)[] = [];
  protected readonly lock: boolean;

  /** Whether this repo locks what it reads (several writers at once). */
  get locks(): boolean {
    return this.lock;
  }

  constructor(
    readonly db: Kysely<Database> | Transaction<Database>,
    opts: RepoOptions = {},
  ) {
    this.lock = opts.lock === true;
  }

  /** Registers an in-memory change to reverse if the transaction rolls back. */
  onRollback(fn: () => void): void {
    this.undo.push(fn);
  }

  /** Runs the undo actions newest first. Called by the store on rollback. */
  rollbackMemory(): void {
    for (let i = this.undo.length - 1; i >= 0; i--) this.undo[i]!();
    this.undo.length = 0;
  }

  // Subscriptions

  subscriptionByName(name: string): Promise<SubscriptionRow | undefined> {
    return this.db.selectFrom('subscriptions').selectAll().where('name', '=', name).executeTakeFirst();
  }
  subscriptionById(id: number): Promise<SubscriptionRow | undefined> {
    return this.db.selectFrom('subscriptions').selectAll().where('id', '=', id).executeTakeFirst();
  }
  subscriptions(): Promise<SubscriptionRow[]> {
    return this.db.selectFrom('subscriptions').selectAll().orderBy('name').execute();
  }
  insertSubscription(row: Insertable<SubscriptionsTable>): Promise<SubscriptionRow> {
    return this.db.insertInto('subscriptions').values(row).returningAll().executeTakeFirstOrThrow();
  }
  /** Deletes a subscription and revokes its tokens with it. */
  async deleteSubscription(id: number): Promise<void> {
    await this.db.deleteFrom('tokens').where('subscription_id', '=', id).execute();
    await this.db.deleteFrom('subscriptions').where('id', '=', id).execute();
  }

  // Public pools

  pools(): Promise<PoolRow[]> {
    return this.db.selectFrom('public_pools').selectAll().orderBy('id').execute();
  }
  insertPool(row: Insertable<PublicPoolsTable>): Promise<PoolRow> {
    return this.db.insertInto('public_pools').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async deletePool(id: number): Promise<void> {
    await this.db.deleteFrom('public_pools').where('id', '=', id).execute();
  }

  // Hosts

  hosts(): Promise<HostRow[]> {
    return this.db.selectFrom('hosts').selectAll().orderBy('name').execute();
  }
  insertHost(row: Insertable<HostsTable>): Promise<HostRow> {
    return this.db.insertInto('hosts').values(row).returningAll().executeTakeFirstOrThrow();
  }
  /** Allocated VMs per host id. */
  async hostLoads(): Promise<Map<number, number>> {
    const rows = await this.db
      .selectFrom('vms')
      .select(['host_id', (eb) => eb.fn.countAll<number>().as('n')])
      .where('host_id', 'is not', null)
      .groupBy('host_id')
      .execute();
    return new Map(rows.map((r) => [Number(r.host_id), Number(r.n)]));
  }

  // Virtual networks and subnets

  vnet(subscriptionId: number, name: string): Promise<VnetRow | undefined> {
    return this.db
      .selectFrom('vnets')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .where('name', '=', name)
      .$if(this.lock, (q) => q.forUpdate())
      .executeTakeFirst();
  }
  vnetById(id: number): Promise<VnetRow | undefined> {
    return this.db.selectFrom('vnets').selectAll().where('id', '=', id).executeTakeFirst();
  }
  vnets(subscriptionId?: number): Promise<VnetRow[]> {
    let q = this.db.selectFrom('vnets').selectAll();
    if (subscriptionId !== undefined) q = q.where('subscription_id', '=', subscriptionId);
    return q.orderBy('name').execute();
  }
  insertVnet(row: Insertable<VnetsTable>): Promise<VnetRow> {
    return this.db.insertInto('vnets').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async updateVnet(id: number, patch: Updateable<VnetsTable>): Promise<void> {
    await this.db.updateTable('vnets').set(patch).where('id', '=', id).execute();
  }
  async deleteVnet(id: number): Promise<void> {
    await this.db.deleteFrom('vnets').where('id', '=', id).execute();
  }
  subnets(vnetId?: number): Promise<SubnetRow[]> {
    let q = this.db.selectFrom('subnets').selectAll();
    if (vnetId !== undefined) q = q.where('vnet_id', '=', vnetId);
    return q.orderBy('base').execute();
  }
  subnetById(id: number): Promise<SubnetRow | undefined> {
    return this.db.selectFrom('subnets').selectAll().where('id', '=', id).executeTakeFirst();
  }
  insertSubnet(row: Insertable<SubnetsTable>): Promise<SubnetRow> {
    return this.db.insertInto('subnets').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async deleteSubnet(id: number): Promise<void> {
    await this.db.deleteFrom('subnets').where('id', '=', id).execute();
  }

  // Reserved IPs

  /** `lock: false` to learn which service to lock first (the lock order: services, then these). */
  reservedIp(
    subscriptionId: number,
    name: string,
    opts: { lock?: boolean } = {},
  ): Promise<ReservedIpRow | undefined> {
    return this.db
      .selectFrom('reserved_ips')
      .selectAll()
      .where('subscription_id', '=', subscriptionId)
      .where('name', '=', name)
      .$if(this.lock && opts.lock !== false, (q) => q.forUpdate())
      .executeTakeFirst();
  }
  /** `lock: false` for a lookup of names only. */
  reservedIpById(id: number, opts: { lock?: boolean } = {}): Promise<ReservedIpRow | undefined> {
    return this.db
      .selectFrom('reserved_ips')
      .selectAll()
      .where('id', '=', id)
      .$if(this.lock && opts.lock !== false, (q) => q.forUpdate())
      .executeTakeFirst();
  }
  reservedIps(subscriptionId?: number): Promise<ReservedIpRow[]> {
    let q = this.db.selectFrom('reserved_ips').selectAll();
    if (subscriptionId !== undefined) q = q.where('subscription_id', '=', subscriptionId);
    return q.orderBy('name').execute();
  }
  insertReservedIp(row: Insertable<ReservedIpsTable>): Promise<ReservedIpRow> {
    return this.db.insertInto('reserved_ips').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async updateReservedIp(id: number, patch: Updateable<ReservedIpsTable>): Promise<void> {
    await this.db.updateTable('reserved_ips').set(patch).where('id', '=', id).execute();
  }
  async deleteReservedIp(id: number): Promise<void> {
    await this.db.deleteFrom('reserved_ips').where('id', '=', id).execute();
  }

  // Cloud services

  service(name: string): Promise<ServiceRow | undefined> {
    return this.db
      .selectFrom('cloud_services')
      .selectAll()
      .where('name', '=', name)
      .$if(this.lock, (q) => q.forUpdate())
      .executeTakeFirst();
  }
  /** `lock: false` for a lookup of names only, which must not wait for the service's writers. */
  serviceById(id: number, opts: { lock?: boolean } = {}): Promise<ServiceRow | undefined> {
    return this.db
      .selectFrom('cloud_services')
      .selectAll()
      .where('id', '=', id)
      .$if(this.lock && opts.lock !== false, (q) => q.forUpdate())
      .executeTakeFirst();
  }
  services(subscriptionId?: number): Promise<ServiceRow[]> {
    let q = this.db.selectFrom('cloud_services').selectAll();
    if (subscriptionId !== undefined) q = q.where('subscription_id', '=', subscriptionId);
    return q.orderBy('name').execute();
  }
  insertService(row: Insertable<CloudServicesTable>): Promise<ServiceRow> {
    return this.db.insertInto('cloud_services').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async updateService(id: number, patch: Updateable<CloudServicesTable>): Promise<void> {
    await this.db.updateTable('cloud_services').set(patch).where('id', '=', id).execute();
  }
  async deleteService(id: number): Promise<void> {
    await this.db.deleteFrom('cloud_services').where('id', '=', id).execute();
  }

  // VMs

  async vm(serviceId: number, name: string): Promise<VmRow | undefined> {
    const r = await this.db
      .selectFrom('vms')
      .selectAll()
      .where('service_id', '=', serviceId)
      .where('name', '=', name)
      .executeTakeFirst();
    return r === undefined ? undefined : vmFromStore(r);
  }
  async vmById(id: number): Promise<VmRow | undefined> {
    const r = await this.db.selectFrom('vms').selectAll().where('id', '=', id).executeTakeFirst();
    return r === undefined ? undefined : vmFromStore(r);
  }
  /** `lock: true` in a write that changes the VMs it lists. */
  async vms(filter: VmFilter = {}, opts: { lock?: boolean } = {}): Promise<VmRow[]> {
    let q = this.db.selectFrom('vms').selectAll('vms');
    if (filter.serviceId !== undefined) q = q.where('service_id', '=', filter.serviceId);
    if (filter.subnetId !== undefined) q = q.where('subnet_id', '=', filter.subnetId);
    if (filter.hostIds !== undefined) q = q.where('host_id', 'in', [...filter.hostIds, -1]);
    if (filter.subscriptionId !== undefined) {
      q = q
        .innerJoin('cloud_services', 'cloud_services.id', 'vms.service_id')
        .where('cloud_services.subscription_id', '=', filter.subscriptionId);
    }
    // Rows are locked in this order, so two writers locking overlapping sets cannot deadlock.
    const rows = await q
      .orderBy('vms.service_id')
      .orderBy('vms.name')
      .$if(this.lock && opts.lock === true, (q) => q.forUpdate('vms'))
      .execute();
    return rows.map(vmFromStore);
  }
  /** VMs with the names of everything they refer to, for views: one query however many VMs. */
  async vmDetails(
    filter: { vmId?: number; serviceId?: number; subscriptionId?: number } = {},
  ): Promise<VmDetailRow[]> {
    let q = this.db
      .selectFrom('vms')
      .innerJoin('cloud_services', 'cloud_services.id', 'vms.service_id')
      .innerJoin('subscriptions', 'subscriptions.id', 'cloud_services.subscription_id')
      .innerJoin('subnets', 'subnets.id', 'vms.subnet_id')
      .innerJoin('vnets', 'vnets.id', 'subnets.vnet_id')
      .leftJoin('hosts', 'hosts.id', 'vms.host_id')
      .selectAll('vms')
      .select([
        'cloud_services.name as service_name',
        'subscriptions.name as subscription_name',
        'subnets.name as subnet_name',
        'vnets.name as vnet_name',
        'hosts.name as host_name',
        'hosts.rack as host_rack',
      ]);
    // One VM: by its key, unordered. Ordered by service name, PostgreSQL without statistics (tables
    // filled inside one large apply) walked the services' name index and scanned every VM for each:
    // an apply of 2,000 VMs took minutes.
    if (filter.vmId !== undefined)
      return (await q.where('vms.id', '=', filter.vmId).execute()).map(vmFromStore);
    if (filter.serviceId !== undefined) q = q.where('vms.service_id', '=', filter.serviceId);
    if (filter.subscriptionId !== undefined)
      q = q.where('cloud_services.subscription_id', '=', filter.subscriptionId);
    return (await q.orderBy('cloud_services.name').orderBy('vms.name').execute()).map(vmFromStore);
  }

  /**
   * Everything one VM operation needs, in one query: the VM, its service, subscription, network
   * policies and host. Undefined when no such VM exists.
   *
   * In a write it locks the VM, and its service exclusively (`service: 'update'`, the default) for
   * an operation that may change what depends on every VM of the service (deallocation and
   * deletion may give its VIP back; endpoints are checked across its VMs): such operations on one
   * service take turns. With `service: 'share'` the service cannot gain or lose its VIP meanwhile
   * and other VMs' operations run side by side.
   */
  async vmContext(
    serviceName: string,
    vmName: string,
    opts: { service?: 'share' | 'update' } = {},
  ): Promise<VmContextRow | undefined> {
    if (this.lock) {
      // Lock first, then read: after waiting for a lock, PostgreSQL re-reads the locked rows but
      // not the joined ones (a VM started meanwhile would come back with its host outer-joined from
      // before), while a statement issued after the lock is granted sees every committed row.
      const locked = await this.db
        .selectFrom('vms')
        .innerJoin('cloud_services', 'cloud_services.id', 'vms.service_id')
        .select('vms.id')
        .where('cloud_services.name', '=', serviceName)
        .where('vms.name', '=', vmName)
        .$if(opts.service !== 'share', (q) => q.forUpdate(['cloud_services', 'vms']))
        .$if(opts.service === 'share', (q) => q.forShare('cloud_services').forUpdate('vms'))
        .executeTakeFirst();
      if (locked === undefined) return undefined;
      const r = await this.contextQuery().where('vms.id', '=', locked.id).executeTakeFirst();
      return r === undefined ? undefined : vmFromStore(r);
    }
    const r = await this.contextQuery()
      .where('cloud_services.name', '=', serviceName)
      .where('vms.name', '=', vmName)
      .executeTakeFirst();
    return r === undefined ? undefined : vmFromStore(r);
  }

  private contextQuery() {
    return this.db
      .selectFrom('vms')
      .innerJoin('cloud_services', 'cloud_services.id', 'vms.service_id')
      .innerJoin('subscriptions', 'subscriptions.id', 'cloud_services.subscription_id')
      .innerJoin('subnets', 'subnets.id', 'vms.subnet_id')
      .innerJoin('vnets', 'vnets.id', 'subnets.vnet_id')
      .leftJoin('hosts', 'hosts.id', 'vms.host_id')
      .selectAll('vms')
      .select([
        'cloud_services.name as service_name',
        'cloud_services.subscription_id as subscription_id',
        'cloud_services.vnet_id as service_vnet_id',
        'cloud_services.reserved_ip_id as service_reserved_ip_id',
        'cloud_services.vip as service_vip',
        'cloud_services.vip_pool_id as service_vip_pool_id',
        'subscriptions.name as subscription_name',
        'subnets.name as subnet_name',
        'vnets.name as vnet_name',
        'vnets.dip_policy as dip_policy',
        'vnets.move_policy as move_policy',
        'hosts.name as host_name',
        'hosts.rack as host_rack',
      ]);
  }

  /** How many VMs of a service hold their allocation (running or stopped). */
  async allocatedVmCount(serviceId: number): Promise<number> {
    const r = await this.db
      .selectFrom('vms')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('service_id', '=', serviceId)
      .where('state', '!=', 'deallocated')
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }
  async insertVm(row: NewVmRow): Promise<VmRow> {
    const stored = { ...row, ilpip_enabled: flagToStore(row.ilpip_enabled) };
    return vmFromStore(
      await this.db.insertInto('vms').values(stored).returningAll().executeTakeFirstOrThrow(),
    );
  }
  async updateVm(id: number, patch: VmPatch): Promise<void> {
    const { ilpip_enabled, ...rest } = patch;
    const stored =
      ilpip_enabled === undefined ? rest : { ...rest, ilpip_enabled: flagToStore(ilpip_enabled) };
    await this.db.updateTable('vms').set(stored).where('id', '=', id).execute();
  }
  async deleteVm(id: number): Promise<void> {
    await this.db.deleteFrom('vms').where('id', '=', id).execute();
  }

  // Address bindings

  /** Binds an address; false (and nothing written) when the database already has it bound. */
  async bind(b: BindingRow): Promise<boolean> {
    const r = await this.db
      .insertInto('address_bindings')
      .values(b)
      .onConflict((oc) => oc.columns(['scope', 'address']).doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
  }
  async unbind(scope: string, address: Ipv4): Promise<void> {
    await this.db
      .deleteFrom('address_bindings')
      .where('scope', '=', scope)
      .where('address', '=', address)
      .execute();
  }
  /** Unbinds an address if, and only if, `owner` holds it; true when it did. */
  async unbindOwned(scope: string, address: Ipv4, owner: string): Promise<boolean> {
    const r = await this.db
      .deleteFrom('address_bindings')
      .where('scope', '=', scope)
      .where('address', '=', address)
      .where('owner', '=', owner)
      .executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }
  /** Who holds an address of a pool or subnet, if anyone. */
  async bindingOwner(scope: string, address: Ipv4): Promise<string | undefined> {
    const r = await this.db
      .selectFrom('address_bindings')
      .select('owner')
      .where('scope', '=', scope)
      .where('address', '=', address)
      .executeTakeFirst();
    return r?.owner;
  }
  async rebind(scope: string, address: Ipv4, owner: string, kind: string): Promise<void> {
    await this.db
      .updateTable('address_bindings')
      .set({ owner, kind })
      .where('scope', '=', scope)
      .where('address', '=', address)
      .execute();
  }
  bindings(): Promise<BindingRow[]> {
    return this.db.selectFrom('address_bindings').selectAll().orderBy('scope').orderBy('address').execute();
  }
  /**
   * The addresses bound in one pool or subnet, and nothing else: rebuilding the indexes of a large
   * state reads a million of them, and the owner texts would cost more than the addresses.
   */
  async boundAddresses(scope: string): Promise<Ipv4[]> {
    const rows = await this.db
      .selectFrom('address_bindings')
      .select('address')
      .where('scope', '=', scope)
      .execute();
    return rows.map((r) => r.address);
  }
  async boundCount(scope: string): Promise<number> {
    const r = await this.db
      .selectFrom('address_bindings')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('scope', '=', scope)
      .executeTakeFirstOrThrow();
    return Number(r.n);
  }
  /**
   * Serializes the transactions that add public pools (their overlap check reads every pool), where
   * several writers run at once. Nothing to do on SQLite.
   */
  async lockPools(): Promise<void> {}

  // Images

  images(): Promise<ImageRow[]> {
    return this.db.selectFrom('images').selectAll().orderBy('name').execute();
  }
  image(name: string): Promise<ImageRow | undefined> {
    return this.db.selectFrom('images').selectAll().where('name', '=', name).executeTakeFirst();
  }
  async insertImage(row: Insertable<ImagesTable>): Promise<void> {
    await this.db.insertInto('images').values(row).execute();
  }
  async updateImage(name: string, patch: Updateable<ImagesTable>): Promise<void> {
    await this.db.updateTable('images').set(patch).where('name', '=', name).execute();
  }
  async deleteImage(name: string): Promise<void> {
    await this.db.deleteFrom('images').where('name', '=', name).execute();
  }
  /** The VMs whose workload names the image, as `service/vm`, at most `limit`. */
  async vmsUsingImage(name: string, limit: number): Promise<string[]> {
    const rows = await this.db
      .selectFrom('vms')
      .innerJoin('cloud_services', 'cloud_services.id', 'vms.service_id')
      .select(['cloud_services.name as service', 'vms.name as vm'])
      .where('vms.workload', '=', name)
      .orderBy('vms.id')
      .limit(limit)
      .execute();
    return rows.map((r) => `${r.service}/${r.vm}`);
  }
  /**
   * Serializes a change of images with the VMs that name them (a VM created naming an image that a
   * delete removes at the same time), where several writers run at once. Nothing to do on SQLite.
   */
  async lockImages(): Promise<void> {}

  // Events

  /**
   * Appends a transaction's events in one statement and returns their sequence numbers, in order.
   * SQLite's AUTOINCREMENT numbers them inside the (single) writing transaction, so a rollback
   * leaves no gap; the PostgreSQL repo overrides this. It must be a write's last statement: the
   * PostgreSQL store commits the transaction with it.
   */
  async appendEvents(events: readonly NewEvent[]): Promise<AppendedEvent[]> {
    const out: AppendedEvent[] = [];
    // One statement per chunk: a batch (a declarative apply of 10,000 VMs) emits more events than
    // one statement may bind parameters for.
    for (const chunk of chunks(events, Math.floor(SQLITE_MAX_PARAMS / EVENT_PARAMS))) {
      const rows = await this.db.insertInto('events').values(chunk).returning('seq').execute();
      const seqs = rows.map((r) => Number(r.seq)).sort((a, b) => a - b);
      chunk.forEach((e, i) => out.push({ seq: seqs[i]!, time: e.time }));
    }
    return out;
  }
  events(opts: EventQuery = {}): Promise<EventRow[]> {
    let q = this.db.selectFrom('events').selectAll();
    if (opts.order === 'desc') {
      if (opts.before !== undefined) q = q.where('seq', '<', opts.before);
    } else q = q.where('seq', '>', opts.since ?? 0);
    if (opts.subscription !== undefined) q = q.where('subscription', '=', opts.subscription);
    if (opts.resources !== undefined) {
      if (opts.resources.length === 0) return Promise.resolve([]);
      q = q.where('resource', 'in', [...opts.resources]);
    }
    return q
      .orderBy('seq', opts.order === 'desc' ? 'desc' : 'asc')
      .limit(opts.limit ?? 1000)
      .execute();
  }
  /** Events after a sequence number with their internal index changes, for replicas to follow. */
  eventsAfter(since: number, limit: number): Promise<EventRow[]> {
    return this.db
      .selectFrom('events')
      .selectAll()
      .where('seq', '>', since)
      .orderBy('seq')
      .limit(limit)
      .execute();
  }
  async lastSeq(): Promise<number> {
    const r = await this.db
      .selectFrom('events')
      .select((eb) => eb.fn.max('seq').as('m'))
      .executeTakeFirst();
    return Number(r?.m ?? 0);
  }

  // Tokens

  tokenByHash(hash: string): Promise<TokenRow | undefined> {
    return this.db.selectFrom('tokens').selectAll().where('hash', '=', hash).executeTakeFirst();
  }
  tokens(): Promise<TokenRow[]> {
    return this.db.selectFrom('tokens').selectAll().orderBy('id').execute();
  }
  insertToken(row: Insertable<TokensTable>): Promise<TokenRow> {
    return this.db.insertInto('tokens').values(row).returningAll().executeTakeFirstOrThrow();
  }
  async deleteToken(id: number): Promise<void> {
    await this.db.deleteFrom('tokens').where('id', '=', id).execute();
  }

  // Meta

  async meta(key: string): Promise<string | undefined> {
    const r = await this.db.selectFrom('meta').select('value').where('key', '=', key).executeTakeFirst();
    return r?.value;
  }
  async setMeta(key: string, value: string): Promise<void> {
    await this.db
      .insertInto('meta')
      .values({ key, value })
      .onConflict((oc) => oc.column('key').doUpdateSet({ value }))
      .execute();
  }
}

/**
 * Thrown inside `Store.write` to have the transaction rolled back and run again at once: the
 * function learnt it needs stronger locks than it took, and takes them from the start next time.
 */
export class RunAgain extends Error {
  constructor() {
    super('run the transaction again');
  }
}

/** What the lifecycle needs of a store: transactions over a `Repo`, and a way to close it. */
export interface Store {
  readonly dialect: 'sqlite' | 'postgres';
  /**
   * Runs `fn` in one transaction: all of its writes commit together, or none do. Where several
   * writers run at once, a transaction that loses a race the database detects (unique or foreign
   * key violation, serialization failure, deadlock) is rolled back and `fn` runs again, a bounded
   * number of times: `fn` must keep its effects to the repo and to memory it undoes on rollback.
   */
  write<T>(fn: (repo: Repo) => Promise<T>): Promise<T>;
  /** Runs reads that need no transaction of their own. */
  read<T>(fn: (repo: Repo) => Promise<T>): Promise<T>;
  /** Runs reads in one read-only transaction: all of them see the same committed state. */
  snapshot<T>(fn: (repo: Repo) => Promise<T>): Promise<T>;
  /**
   * Where other processes write to the same database: calls `wake` whenever they may have
   * appended events (and after a lost connection comes back), with the events when the wake-up
   * carried them (a hint: they may be old, or follow a gap). Returns the function that stops it.
   */
  watch?(wake: (events?: readonly EventRow[]) => void): () => void;
  /** Statements sent to the database since the store opened: its round trips. */
  readonly statements: number;
  /**
   * Transactions committed that wrote something, where the store groups concurrent writes into one
   * commit (SQLite): with `writes`, the writes per commit.
   */
  readonly commits?: number;
  /** Writes committed, each in its group's commit (see `commits`). */
  readonly writes?: number;
  /** Transactions run again after losing a race (where several writers run at once). */
  readonly retries?: number;
  /** Of those, the transactions the database chose as a deadlock's victim (none: one lock order). */
  readonly deadlocks?: number;
  close(): Promise<void>;
}
