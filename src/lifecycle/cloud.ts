/**
 * The control plane's lifecycle: every operation on subscriptions, networks, reserved IPs, cloud
 * services, VMs and hosts, each one store transaction that applies rules R1–R8 and appends an event
 * for every state and address change (I6). It knows nothing of HTTP, sockets or processes: the API,
 * the data-plane agent, DNS and the dashboard consume it and the events it publishes.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Clock } from '../core/clock.ts';
import { VipdipError, isVipdipError } from '../core/errors.ts';
import {
  cidrContainsCidr,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  parseCidr,
  parseIpv4,
  type Cidr,
  type Ipv4,
} from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import { ALLOCATION_POLICIES, MIN_INDEXED_PREFIX, type AllocationPolicy } from '../ipam/index.ts';
import {
  RunAgain,
  type EventQuery,
  type EventRow,
  type ImageRow,
  type Repo,
  type ReservedIpRow,
  type ServiceRow,
  type Store,
  type SubnetRow,
  type SubscriptionRow,
  type VmContextRow,
  type VmDetailRow,
  type VmRow,
  type VnetRow,
} from '../store/index.ts';
import { AddressBook, poolScope, subnetScope, type BookChange, type BookTx } from './address-book.ts';
import { checkServiceEndpoints, normalizeEndpoints, type Endpoint } from './endpoints.ts';
import {
  DEFAULT_INTERNAL_ZONE,
  DEFAULT_PUBLIC_ZONE,
  serviceFqdn,
  vmFqdns,
  type DnsZones,
} from './dns-names.ts';
import { EventFeed } from './feed.ts';
import { checkDnsLabel, checkName, checkSubscriptionName } from './names.ts';
import {
  BUILTIN_IMAGES,
  checkImageName,
  isBuiltinImage,
  normalizeImage,
  parseWorkload,
  type ImageSpec,
} from './images.ts';
import { pickHost, type HostInfo } from './placement.ts';
import { HostLoads, countMove, type TxLoads } from './host-loads.ts';
import { isAllocated, nextState, type VmOperation, type VmState } from './transitions.ts';
import type {
  EventView,
  HostView,
  ImageView,
  PoolView,
  ReservedIpView,
  ServiceView,
  SubscriptionView,
  VmView,
  VnetView,
} from './views.ts';

export type MovePolicy = 'redraw' | 'keep';
export const MOVE_POLICIES: readonly MovePolicy[] = ['redraw', 'keep'];

/** Without a fabric in the topology a state starts with two racks of two hosts each. */
export const DEFAULT_FABRIC: readonly { name: string; hosts: string[] }[] = [
  { name: 'rack1', hosts: ['rack1-host1', 'rack1-host2'] },
  { name: 'rack2', hosts: ['rack2-host1', 'rack2-host2'] },
];
/** Azure's smallest subnet is a /29 (three usable addresses). */
export const MAX_SUBNET_PREFIX = 29;

export interface CloudOptions {
  random: Random;
  clock: Clock;
  /** Public pools created when the state has none (the driver's default). */
  defaultPublicPools?: readonly string[];
  /** Create the default fabric when the state has no host (true unless said otherwise). */
  defaultFabric?: boolean;
  publicZone?: string;
  internalZone?: string;
  /**
   * The data-plane driver's say on the address plan: called with every VNet address space and public
   * pool before it is created, it throws (DRIVER_UNSUPPORTED) for blocks the driver cannot carry, so a
   * plan that could never carry traffic is refused up front rather than accepted and left dead.
   */
  checkAddressPlan?: (cidr: Cidr, what: string) => void;
  /** Told of failures of the background work (following the other replicas' commits). */
  onError?: (e: unknown) => void;
}

export interface VnetSpec {
  name: string;
  addressSpace: readonly string[];
  subnets?: readonly { name: string; cidr: string }[];
  dipPolicy?: AllocationPolicy;
  movePolicy?: MovePolicy;
}

export interface VmSpec {
  name: string;
  subnet: string;
  staticDip?: string | null;
  ilpip?: boolean;
  workload?: string | null;
  endpoints?: unknown;
}

/** Where a VM is: `service/vm`, optionally checked against the caller's subscription. */
export interface VmRef {
  service: string;
  vm: string;
  subscription?: string | undefined;
}

/** What VM operations need of a subscription. */
type SubRef = Pick<SubscriptionRow, 'id' | 'name'>;

interface FoundVm {
  sub: SubRef;
  service: ServiceRow;
  vm: VmRow;
  context: VmContextRow;
}

/** What an operation changed of its VM's row (and host), for the view it returns. */
type VmChange = Partial<
  Pick<VmDetailRow, 'state' | 'dip' | 'host_id' | 'host_name' | 'host_rack' | 'ilpip' | 'ilpip_pool_id'>
>;

type EventInput = {
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old?: Record<string, unknown> | null;
  new?: Record<string, unknown> | null;
};

/**
 * One write transaction: the repo, the events it emits and the index changes it makes. Both are
 * kept here and written in one statement just before commit (the index changes ride on the first
 * event), which is also where the store numbers the events; they are published after commit.
 */
/**
 * The ambient write transaction, one for the whole module rather than one per Cloud: every enabled
 * AsyncLocalStorage costs each promise of the process a little, so one per Cloud made a process
 * that had opened many (tests, benchmarks) slower with each (2.6× on VM cycles after 12 opens).
 */
const AMBIENT = new AsyncLocalStorage<Tx>();

class Tx implements BookTx {
  readonly events: EventRow[] = [];
  readonly changes: BookChange[] = [];
  /** This transaction's own VM placements, counted before they commit (see host-loads.ts). */
  readonly hostMoves: TxLoads = new Map();
  constructor(
    /** The Cloud whose transaction this is: the ambient transaction is one per async context. */
    readonly owner: object,
    readonly repo: Repo,
    private readonly clock: Clock,
  ) {}

  emit(e: EventInput): Promise<void> {
    if (e.type === 'vm.host') {
      const host = (x: Record<string, unknown> | null | undefined) =>
        (x?.host as string | null | undefined) ?? null;
      countMove(this.hostMoves, { old: host(e.old), new: host(e.new) });
    }
    this.events.push({
      seq: 0,
      time: this.clock.now().toISOString(),
      type: e.type,
      subscription: e.subscription,
      resource: e.resource,
      reason: e.reason,
      old: e.old === undefined || e.old === null ? null : JSON.stringify(e.old),
      new: e.new === undefined || e.new === null ? null : JSON.stringify(e.new),
      changes: null,
    });
    return Promise.resolve();
  }

  record(change: BookChange): void {
    this.changes.push(change);
  }

  async flush(): Promise<void> {
    if (this.events.length === 0) {
      // Every change of an address is an event (I6); the index changes travel with them.
      if (this.changes.length > 0) throw new Error('internal: address changes without an event');
      return;
    }
    this.events[0]!.changes = this.changes.length > 0 ? JSON.stringify(this.changes) : null;
    const stored = await this.repo.appendEvents(this.events.map(({ seq: _seq, ...e }) => e));
    stored.forEach((a, i) => {
      this.events[i]!.seq = a.seq;
      this.events[i]!.time = a.time;
    });
  }
}

const ip = (n: number | null): string | null => (n === null ? null : formatIpv4(n as Ipv4));
/** The binding that reserves a VM's static DIP for the VM's whole life. */
const staticOwner = (vmId: number) => ({ owner: `vm:${vmId}`, kind: 'static' as const });
const vmResource = (service: string, vm: string) => `vm/${service}/${vm}`;
const imageResource = (name: string) => `image/${name}`;
/** A delete refused because VMs name the image lists at most this many of them. */
const IMAGE_USERS_LISTED = 5;

function imageView(r: ImageRow): ImageView {
  return {
    name: r.name,
    builtin: false,
    command: r.command,
    env: JSON.parse(r.env) as Record<string, string>,
    createdAt: r.created_at,
  };
}

const builtinImageView = (name: string): ImageView => ({
  name,
  builtin: true,
  command: null,
  env: {},
  createdAt: null,
});

/**
 * Whether a workload may be set by this caller, checked inside the transaction that sets it: an
 * image must exist (a delete of it waits for the lock), an inline command needs the operator.
 */
async function checkWorkload(
  repo: Repo,
  vm: string,
  workload: string | null,
  commands: boolean,
): Promise<void> {
  if (workload === null) return;
  let ref;
  try {
    ref = parseWorkload(workload);
  } catch (e) {
    if (isVipdipError(e)) throw new VipdipError(e.code, `VM ${vm}: ${e.detail}`);
    throw e;
  }
  if (ref.kind === 'command') {
    if (!commands) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `VM ${vm}: only the operator may give a VM a command; choose an image (vipdip image list)`,
      );
    }
    return;
  }
  if (isBuiltinImage(ref.image)) return;
  await repo.lockImages();
  if ((await repo.image(ref.image)) === undefined) {
    throw new VipdipError('INVALID_ARGUMENT', `VM ${vm}: image ${ref.image} does not exist`);
  }
}
const serviceResource = (service: string) => `service/${service}`;

function detailView(d: VmDetailRow, zones: DnsZones): VmView {
  const ilpipEnabled = d.ilpip_enabled === 1;
  return {
    subscription: d.subscription_name,
    service: d.service_name,
    name: d.name,
    state: d.state as VmState,
    dip: ip(d.dip),
    host: d.host_name,
    rack: d.host_rack,
    subnet: d.subnet_name,
    vnet: d.vnet_name,
    staticDip: ip(d.static_dip),
    ilpip: ip(d.ilpip),
    ilpipEnabled,
    workload: d.workload,
    endpoints: JSON.parse(d.endpoints) as Endpoint[],
    fqdns: vmFqdns({ service: d.service_name, name: d.name, ilpipEnabled }, zones),
  };
}

export function toEventView(r: EventRow): EventView {
  return {
    seq: Number(r.seq),
    time: r.time,
    type: r.type,
    subscription: r.subscription,
    resource: r.resource,
    reason: r.reason,
    old: r.old === null ? null : (JSON.parse(r.old) as Record<string, unknown>),
    new: r.new === null ? null : (JSON.parse(r.new) as Record<string, unknown>),
  };
}

/** A public pool's CIDR, within the sizes an index is kept for. */
function parsePoolCidr(text: string): Cidr {
  const cidr = parseCidr(text);
  if (cidr.prefix < MIN_INDEXED_PREFIX || cidr.prefix > 30) {
    throw new VipdipError(
      'INVALID_CIDR',
      `public pool ${formatCidr(cidr)} must be between /${MIN_INDEXED_PREFIX} and /30`,
    );
  }
  return cidr;
}

function notFound(what: string): never {
  throw new VipdipError('NOT_FOUND', `${what} does not exist`);
}

function parseCidrList(what: string, list: unknown): Cidr[] {
  if (!Array.isArray(list) || list.length === 0) {
    throw new VipdipError('INVALID_ARGUMENT', `${what} must be a non-empty list of CIDR blocks`);
  }
  return list.map((c) => checkSpaceBlock(what, parseCidr(c as string)));
}

/** An address space block must hold at least the smallest subnet (a /29), or nothing fits in it. */
export function checkSpaceBlock(what: string, cidr: Cidr): Cidr {
  if (cidr.prefix > MAX_SUBNET_PREFIX) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `${what}: ${formatCidr(cidr)} is smaller than the smallest subnet, a /${MAX_SUBNET_PREFIX}`,
    );
  }
  return cidr;
}

export class Cloud {
  private readonly listeners = new Set<(events: readonly EventView[]) => void>();
  /** The transaction of the batch an operation runs in, if any. */
  private readonly zones: DnsZones;
  private readonly checkAddressPlan: (cidr: Cidr, what: string) => void;
  /** Every replica's committed transactions, applied here in order. */
  readonly feed: EventFeed;

  private constructor(
    readonly store: Store,
    readonly book: AddressBook,
    private readonly hostLoads: HostLoads,
    position: number,
    private readonly random: Random,
    private readonly clock: Clock,
    opts: CloudOptions,
  ) {
    this.checkAddressPlan = opts.checkAddressPlan ?? (() => {});
    this.zones = {
      publicZone: opts.publicZone ?? DEFAULT_PUBLIC_ZONE,
      internalZone: opts.internalZone ?? DEFAULT_INTERNAL_ZONE,
    };
    this.feed = new EventFeed(store, book, position, (rows) => this.publish(rows), opts.onError);
  }

  /**
   * Opens the control plane over a store: the allocation indexes are rebuilt from one snapshot,
   * together with the log position they match, and from then on follow the log.
   */
  static async open(store: Store, opts: CloudOptions): Promise<Cloud> {
    const { book, hostLoads, position } = await store.snapshot(async (repo) => ({
      book: await AddressBook.load(repo, opts.random),
      hostLoads: HostLoads.from(await repo.hosts(), await repo.hostLoads()),
      position: await repo.lastSeq(),
    }));
    const cloud = new Cloud(store, book, hostLoads, position, opts.random, opts.clock, opts);
    cloud.feed.start();
    // Decided inside the transaction: replicas opening an empty state together create it once
    // (the one that loses the race on the unique names runs again and finds it made).
    await cloud.write(async (tx) => {
      if (opts.defaultFabric !== false && (await tx.repo.hosts()).length === 0) {
        for (const rack of DEFAULT_FABRIC)
          for (const h of rack.hosts) await cloud.insertHost(tx, h, rack.name);
      }
      if ((opts.defaultPublicPools ?? []).length > 0 && (await tx.repo.pools()).length === 0) {
        for (const p of opts.defaultPublicPools ?? []) {
          const cidr = parsePoolCidr(p);
          cloud.checkAddressPlan(cidr, 'public pool');
          await cloud.insertPool(tx, cidr);
        }
      }
    });
    return cloud;
  }

  /** Stops following the other replicas (the store is closed by its owner). */
  close(): void {
    this.feed.stop();
  }

  /**
   * Subscribes to committed events of every replica, in commit order, each once. Returns the
   * unsubscribe function.
   */
  onEvents(fn: (events: readonly EventView[]) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves once this replica has applied every change committed anywhere before the call. */
  sync(): Promise<void> {
    return this.feed.sync();
  }

  private publish(rows: readonly EventRow[]): void {
    this.hostLoads.apply(rows);
    if (this.listeners.size === 0) return;
    const views = rows.map(toEventView);
    for (const l of this.listeners) l(views);
  }

  /**
   * Runs several operations as one transaction: all of them commit, or none does (a declarative
   * apply is all or nothing). Operations called inside join the batch's transaction.
   */
  async batch<T>(fn: () => Promise<T>): Promise<T> {
    if (this.ambientTx() !== undefined) return fn();
    return this.write(() => fn());
  }

  /** The transaction of this Cloud that the caller runs inside, if any (a batch, or an operation). */
  private ambientTx(): Tx | undefined {
    const t = AMBIENT.getStore();
    return t !== undefined && t.owner === this ? t : undefined;
  }

  /** Reads see the batch's uncommitted writes, and never wait for the connection it holds. */
  private read<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    const outer = this.ambientTx();
    return outer !== undefined ? fn(outer.repo) : this.store.read(fn);
  }

  private async write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const outer = this.ambientTx();
    if (outer !== undefined) return fn(outer);
    let tx: Tx | undefined;
    const result = await this.store.write(async (repo) => {
      const t = new Tx(this, repo, this.clock);
      tx = t;
      const r = await AMBIENT.run(t, () => fn(t));
      await t.flush();
      return r;
    });
    if (tx !== undefined && tx.events.length > 0) this.feed.committed(tx);
    return result;
  }

  // ---------------------------------------------------------------- subscriptions

  async createSubscription(name: string): Promise<SubscriptionView> {
    checkSubscriptionName(name);
    return this.write(async (tx) => {
      if (await tx.repo.subscriptionByName(name)) {
        throw new VipdipError('ALREADY_EXISTS', `subscription ${name} already exists`);
      }
      const row = await tx.repo.insertSubscription({ name, created_at: this.clock.now().toISOString() });
      await tx.emit({
        type: 'subscription.created',
        subscription: name,
        resource: `subscription/${name}`,
        reason: 'create',
      });
      return { name: row.name, createdAt: row.created_at };
    });
  }

  async deleteSubscription(name: string): Promise<void> {
    await this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, name);
      const [services, vnets, rips] = [
        await tx.repo.services(sub.id),
        await tx.repo.vnets(sub.id),
        await tx.repo.reservedIps(sub.id),
      ];
      if (services.length + vnets.length + rips.length > 0) {
        throw new VipdipError(
          'IN_USE',
          `subscription ${name} still has ${services.length} cloud services, ${vnets.length} virtual networks and ${rips.length} reserved IPs`,
        );
      }
      await tx.repo.deleteSubscription(sub.id);
      await tx.emit({
        type: 'subscription.deleted',
        subscription: name,
        resource: `subscription/${name}`,
        reason: 'delete',
      });
    });
  }

  listSubscriptions(): Promise<SubscriptionView[]> {
    return this.read(async (r) =>
      (await r.subscriptions()).map((s) => ({ name: s.name, createdAt: s.created_at })),
    );
  }

  // ---------------------------------------------------------------- fabric: pools and hosts

  async addPublicPool(cidrText: string): Promise<PoolView> {
    const cidr = parsePoolCidr(cidrText);
    this.checkAddressPlan(cidr, 'public pool');
    return this.write(async (tx) => {
      const id = await this.insertPool(tx, cidr);
      return this.poolView(tx.repo, id, formatCidr(cidr));
    });
  }

  private async insertPool(tx: Tx, cidr: Cidr): Promise<number> {
    // The overlap check reads every pool: two writers adding pools take turns.
    await tx.repo.lockPools();
    for (const p of await tx.repo.pools()) {
      if (cidrsOverlap(parseCidr(p.cidr), cidr)) {
        throw new VipdipError('OVERLAP', `public pool ${formatCidr(cidr)} overlaps public pool ${p.cidr}`);
      }
    }
    const row = await tx.repo.insertPool({ cidr: formatCidr(cidr), base: cidr.base, prefix: cidr.prefix });
    this.book.createPool(tx, row.id, cidr);
    await tx.emit({
      type: 'pool.created',
      subscription: null,
      resource: `pool/${row.cidr}`,
      reason: 'create',
      new: { cidr: row.cidr },
    });
    return row.id;
  }

  async deletePublicPool(cidrText: string): Promise<void> {
    const cidr = formatCidr(parseCidr(cidrText));
    await this.write(async (tx) => {
      const pool = (await tx.repo.pools()).find((p) => p.cidr === cidr) ?? notFound(`public pool ${cidr}`);
      const scope = poolScope(pool.id);
      // The store, not this replica's index, says whether anything is still bound; a binding made
      // meanwhile by another replica has an owner row that refers to the pool, so the delete waits
      // for it and fails (and runs again).
      const bound = await tx.repo.boundCount(scope);
      if (bound > 0) {
        throw new VipdipError('IN_USE', `public pool ${cidr} still has ${bound} bound addresses`);
      }
      await tx.repo.deletePool(pool.id);
      await tx.emit({
        type: 'pool.deleted',
        subscription: null,
        resource: `pool/${cidr}`,
        reason: 'delete',
        old: { cidr },
      });
      this.book.dropRange(tx, scope);
    });
  }

  listPools(): Promise<PoolView[]> {
    return this.read(async (r) => {
      const out: PoolView[] = [];
      for (const p of await r.pools()) out.push(await this.poolView(r, p.id, p.cidr));
      return out;
    });
  }

  /** Counts from this replica's index: they follow the other replicas' changes within moments. */
  private async poolView(repo: Repo, id: number, cidr: string): Promise<PoolView> {
    const range = await this.book.ensure(repo, poolScope(id));
    return { cidr, usable: range.usable, bound: range.boundCount, free: range.freeCount };
  }

  async addHost(name: string, rack: string): Promise<HostView> {
    checkName('host', name);
    checkName('rack', rack);
    return this.write(async (tx) => {
      if ((await tx.repo.hosts()).some((h) => h.name === name)) {
        throw new VipdipError('ALREADY_EXISTS', `host ${name} already exists`);
      }
      await this.insertHost(tx, name, rack);
      return { name, rack, vms: 0 };
    });
  }

  private async insertHost(tx: Tx, name: string, rack: string): Promise<void> {
    await tx.repo.insertHost({ name, rack });
    await tx.emit({
      type: 'host.created',
      subscription: null,
      resource: `host/${name}`,
      reason: 'create',
      new: { rack },
    });
  }

  listHosts(): Promise<HostView[]> {
    return this.read(async (r) => {
      const loads = await r.hostLoads();
      return (await r.hosts()).map((h) => ({ name: h.name, rack: h.rack, vms: loads.get(h.id) ?? 0 }));
    });
  }

  /**
   * Host or rack maintenance ("service healing"): every allocated VM on the hosts is moved to
   * another host outside them, its DIP redrawn per its network's policy (R5). All or nothing.
   * `opts.reason` replaces the events' reason (chaos names its run there).
   */
  async maintenance(
    target: { host: string } | { rack: string },
    opts: { reason?: string } = {},
  ): Promise<VmView[]> {
    return this.write(async (tx) => {
      const hosts = await tx.repo.hosts();
      const affected =
        'host' in target
          ? hosts.filter((h) => h.name === target.host)
          : hosts.filter((h) => h.rack === target.rack);
      if (affected.length === 0) {
        notFound('host' in target ? `host ${target.host}` : `rack ${target.rack}`);
      }
      const exclude = new Set(affected.map((h) => h.id));
      const what = 'host' in target ? `host ${target.host}` : `rack ${target.rack}`;
      const reason = opts.reason ?? `maintenance of ${what}`;
      await tx.emit({
        type: 'host.maintenance',
        subscription: null,
        resource: 'host' in target ? `host/${target.host}` : `rack/${target.rack}`,
        reason,
        new: { hosts: affected.map((h) => h.name) },
      });
      const loads = await tx.repo.hostLoads();
      const moved: VmRow[] = [];
      for (const vm of await tx.repo.vms({ hostIds: [...exclude] }, { lock: true })) {
        if (!isAllocated(vm.state as VmState)) continue;
        await this.moveVm(tx, vm, hosts, loads, exclude, reason);
        moved.push(vm);
      }
      const views: VmView[] = [];
      for (const vm of moved) views.push(await this.vmView(tx.repo, (await tx.repo.vmById(vm.id))!));
      return views;
    });
  }

  // ---------------------------------------------------------------- virtual networks

  async createVnet(subscription: string, spec: VnetSpec): Promise<VnetView> {
    checkName('virtual network', spec.name);
    const space = parseCidrList(`virtual network ${spec.name} addressSpace`, spec.addressSpace);
    for (const c of space) this.checkAddressPlan(c, `virtual network ${spec.name}`);
    for (let i = 0; i < space.length; i++) {
      for (let j = i + 1; j < space.length; j++) {
        if (cidrsOverlap(space[i]!, space[j]!)) {
          throw new VipdipError(
            'OVERLAP',
            `address space ${formatCidr(space[i]!)} overlaps ${formatCidr(space[j]!)} in virtual network ${spec.name}`,
          );
        }
      }
    }
    const dipPolicy = spec.dipPolicy ?? 'random';
    if (!ALLOCATION_POLICIES.includes(dipPolicy)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `dipPolicy ${JSON.stringify(dipPolicy)} must be random or sequential`,
      );
    }
    const movePolicy = spec.movePolicy ?? 'redraw';
    if (!MOVE_POLICIES.includes(movePolicy)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `movePolicy ${JSON.stringify(movePolicy)} must be redraw or keep`,
      );
    }
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      if (await tx.repo.vnet(sub.id, spec.name)) {
        throw new VipdipError(
          'ALREADY_EXISTS',
          `virtual network ${spec.name} already exists in subscription ${subscription}`,
        );
      }
      const vnet = await tx.repo.insertVnet({
        subscription_id: sub.id,
        name: spec.name,
        address_space: JSON.stringify(space.map(formatCidr)),
        dip_policy: dipPolicy,
        move_policy: movePolicy,
      });
      await tx.emit({
        type: 'vnet.created',
        subscription,
        resource: `vnet/${subscription}/${spec.name}`,
        reason: 'create',
        new: { addressSpace: space.map(formatCidr), dipPolicy, movePolicy },
      });
      for (const s of spec.subnets ?? []) await this.insertSubnet(tx, sub, vnet, s);
      return this.vnetView(tx.repo, vnet, sub.name);
    });
  }

  async addSubnet(
    subscription: string,
    vnetName: string,
    spec: { name: string; cidr: string },
  ): Promise<VnetView> {
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const vnet = await this.findVnet(tx.repo, sub, vnetName);
      await this.insertSubnet(tx, sub, vnet, spec);
      return this.vnetView(tx.repo, vnet, sub.name);
    });
  }

  private async insertSubnet(
    tx: Tx,
    sub: SubRef,
    vnet: VnetRow,
    spec: { name: string; cidr: string },
  ): Promise<void> {
    checkName('subnet', spec.name);
    const cidr = parseCidr(spec.cidr);
    const where = `subnet ${vnet.name}/${spec.name}`;
    if (cidr.prefix < MIN_INDEXED_PREFIX || cidr.prefix > MAX_SUBNET_PREFIX) {
      throw new VipdipError(
        'INVALID_CIDR',
        `${where}: ${formatCidr(cidr)} must be between /${MIN_INDEXED_PREFIX} and /${MAX_SUBNET_PREFIX}`,
      );
    }
    const space = (JSON.parse(vnet.address_space) as string[]).map(parseCidr);
    if (!space.some((s) => cidrContainsCidr(s, cidr))) {
      throw new VipdipError(
        'ADDRESS_OUT_OF_RANGE',
        `${where}: ${formatCidr(cidr)} is outside the address space ${space.map(formatCidr).join(', ')}`,
      );
    }
    for (const other of await tx.repo.subnets(vnet.id)) {
      if (other.name === spec.name) throw new VipdipError('ALREADY_EXISTS', `${where} already exists`);
      if (cidrsOverlap(parseCidr(other.cidr), cidr)) {
        throw new VipdipError(
          'OVERLAP',
          `${where}: ${formatCidr(cidr)} overlaps subnet ${other.name} (${other.cidr})`,
        );
      }
    }
    const row = await tx.repo.insertSubnet({
      vnet_id: vnet.id,
      name: spec.name,
      cidr: formatCidr(cidr),
      base: cidr.base,
      prefix: cidr.prefix,
    });
    this.book.createSubnet(tx, row.id, where, cidr);
    await tx.emit({
      type: 'subnet.created',
      subscription: sub.name,
      resource: `vnet/${sub.name}/${vnet.name}/${spec.name}`,
      reason: 'create',
      new: { cidr: formatCidr(cidr) },
    });
  }

  async deleteSubnet(subscription: string, vnetName: string, subnetName: string): Promise<void> {
    await this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const vnet = await this.findVnet(tx.repo, sub, vnetName);
      const subnet =
        (await tx.repo.subnets(vnet.id)).find((s) => s.name === subnetName) ??
        notFound(`subnet ${vnetName}/${subnetName}`);
      const vms = await tx.repo.vms({ subnetId: subnet.id });
      if (vms.length > 0)
        throw new VipdipError('IN_USE', `subnet ${vnetName}/${subnetName} still has ${vms.length} VMs`);
      await tx.repo.deleteSubnet(subnet.id);
      await tx.emit({
        type: 'subnet.deleted',
        subscription,
        resource: `vnet/${subscription}/${vnetName}/${subnetName}`,
        reason: 'delete',
        old: { cidr: subnet.cidr },
      });
      this.book.dropRange(tx, subnetScope(subnet.id));
    });
  }

  async setVnetPolicy(
    subscription: string,
    vnetName: string,
    policy: { dipPolicy?: AllocationPolicy; movePolicy?: MovePolicy },
  ): Promise<VnetView> {
    if (policy.dipPolicy !== undefined && !ALLOCATION_POLICIES.includes(policy.dipPolicy)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `dipPolicy ${JSON.stringify(policy.dipPolicy)} must be random or sequential`,
      );
    }
    if (policy.movePolicy !== undefined && !MOVE_POLICIES.includes(policy.movePolicy)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `movePolicy ${JSON.stringify(policy.movePolicy)} must be redraw or keep`,
      );
    }
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const vnet = await this.findVnet(tx.repo, sub, vnetName);
      const next = {
        dip_policy: policy.dipPolicy ?? vnet.dip_policy,
        move_policy: policy.movePolicy ?? vnet.move_policy,
      };
      if (next.dip_policy !== vnet.dip_policy || next.move_policy !== vnet.move_policy) {
        await tx.repo.updateVnet(vnet.id, next);
        await tx.emit({
          type: 'vnet.updated',
          subscription,
          resource: `vnet/${subscription}/${vnetName}`,
          reason: 'update',
          old: { dipPolicy: vnet.dip_policy, movePolicy: vnet.move_policy },
          new: { dipPolicy: next.dip_policy, movePolicy: next.move_policy },
        });
      }
      return this.vnetView(tx.repo, { ...vnet, ...next }, sub.name);
    });
  }

  async deleteVnet(subscription: string, vnetName: string): Promise<void> {
    await this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const vnet = await this.findVnet(tx.repo, sub, vnetName);
      const users = (await tx.repo.services(sub.id)).filter((s) => s.vnet_id === vnet.id);
      if (users.length > 0) {
        throw new VipdipError(
          'IN_USE',
          `virtual network ${vnetName} is used by cloud services ${users.map((s) => s.name).join(', ')}`,
        );
      }
      const subnets = await tx.repo.subnets(vnet.id);
      for (const s of subnets) await tx.repo.deleteSubnet(s.id);
      await tx.repo.deleteVnet(vnet.id);
      await tx.emit({
        type: 'vnet.deleted',
        subscription,
        resource: `vnet/${subscription}/${vnetName}`,
        reason: 'delete',
      });
      for (const s of subnets) this.book.dropRange(tx, subnetScope(s.id));
    });
  }

  listVnets(subscription?: string): Promise<VnetView[]> {
    return this.read(async (r) => {
      const subs = new Map((await r.subscriptions()).map((s) => [s.id, s.name]));
      const sub = subscription === undefined ? undefined : await this.findSubscription(r, subscription);
      const out: VnetView[] = [];
      for (const v of await r.vnets(sub?.id))
        out.push(await this.vnetView(r, v, subs.get(v.subscription_id)!));
      return out;
    });
  }

  getVnet(subscription: string, name: string): Promise<VnetView> {
    return this.read(async (r) => {
      const sub = await this.findSubscription(r, subscription);
      return this.vnetView(r, await this.findVnet(r, sub, name), sub.name);
    });
  }

  private async vnetView(repo: Repo, v: VnetRow, subscription: string): Promise<VnetView> {
    return {
      subscription,
      name: v.name,
      addressSpace: JSON.parse(v.address_space) as string[],
      dipPolicy: v.dip_policy,
      movePolicy: v.move_policy,
      subnets: await Promise.all(
        (await repo.subnets(v.id)).map(async (s) => {
          const range = await this.book.ensure(repo, subnetScope(s.id));
          return {
            name: s.name,
            cidr: s.cidr,
            usable: range.usable,
            bound: range.boundCount,
            free: range.freeCount,
          };
        }),
      ),
    };
  }

  // ---------------------------------------------------------------- reserved IPs

  async createReservedIp(subscription: string, name: string): Promise<ReservedIpView> {
    checkName('reserved IP', name);
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      if (await tx.repo.reservedIp(sub.id, name)) {
        throw new VipdipError(
          'ALREADY_EXISTS',
          `reserved IP ${name} already exists in subscription ${subscription}`,
        );
      }
      // The owner's id exists only after the insert: bind under a provisional owner, then rename it.
      const provisional = `reserved-ip:new:${sub.id}:${name}`;
      const { ip: address, scope } = await this.book.drawPublic(tx, {
        owner: provisional,
        kind: 'reserved',
      });
      const row = await tx.repo.insertReservedIp({
        subscription_id: sub.id,
        name,
        pool_id: Number(scope.slice('pool:'.length)),
        address,
        service_id: null,
      });
      await tx.repo.rebind(scope, address, `reserved-ip:${row.id}`, 'reserved');
      await tx.emit({
        type: 'reserved-ip.address',
        subscription,
        resource: `reserved-ip/${subscription}/${name}`,
        reason: 'create',
        old: { address: null },
        new: { address: formatIpv4(address) },
      });
      return { subscription, name, address: formatIpv4(address), service: null };
    });
  }

  async deleteReservedIp(subscription: string, name: string): Promise<void> {
    await this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const rip = await this.findReservedIp(tx.repo, sub, name);
      if (rip.service_id !== null) {
        // A name for the message: no lock on the service after the reserved IP (store/LOCKS.md).
        const svc = await tx.repo.serviceById(rip.service_id, { lock: false });
        throw new VipdipError(
          'IN_USE',
          `reserved IP ${name} is associated with cloud service ${svc?.name ?? '?'}; disassociate it first`,
        );
      }
      await tx.repo.deleteReservedIp(rip.id);
      await this.book.free(tx, poolScope(rip.pool_id), rip.address as Ipv4);
      await tx.emit({
        type: 'reserved-ip.address',
        subscription,
        resource: `reserved-ip/${subscription}/${name}`,
        reason: 'delete',
        old: { address: formatIpv4(rip.address as Ipv4) },
        new: { address: null },
      });
    });
  }

  /** Makes a reserved IP the VIP of a service (at once, R1); the service's drawn VIP goes back. */
  async associateReservedIp(subscription: string, name: string, serviceName: string): Promise<ServiceView> {
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      // A missing reserved IP is named before a missing service, as ever; but the lock order
      // (store/LOCKS.md) takes the service first, then the reserved IP.
      if ((await tx.repo.reservedIp(sub.id, name, { lock: false })) === undefined)
        notFound(`reserved IP ${name} in subscription ${sub.name}`);
      const { service } = await this.findService(tx.repo, serviceName, subscription);
      const rip = await this.findReservedIp(tx.repo, sub, name);
      await this.associate(tx, sub, rip, service);
      return this.serviceView(tx.repo, (await tx.repo.serviceById(service.id))!);
    });
  }

  private async associate(tx: Tx, sub: SubRef, rip: ReservedIpRow, service: ServiceRow): Promise<void> {
    if (rip.service_id === service.id) return;
    // The other service and reserved IP are looked up for their names only, without a lock: this
    // transaction holds a service and a reserved IP already, and locking a third row here is what
    // deadlocked against a disassociation of it.
    if (rip.service_id !== null) {
      const other = await tx.repo.serviceById(rip.service_id, { lock: false });
      throw new VipdipError(
        'IN_USE',
        `reserved IP ${rip.name} is already associated with cloud service ${other?.name ?? '?'}`,
      );
    }
    if (service.reserved_ip_id !== null) {
      const other = await tx.repo.reservedIpById(service.reserved_ip_id, { lock: false });
      throw new VipdipError(
        'CONFLICT',
        `cloud service ${service.name} already uses reserved IP ${other?.name ?? '?'}`,
      );
    }
    const reason = `reserved IP ${rip.name} associated`;
    if (service.vip !== null) {
      await this.book.free(tx, poolScope(service.vip_pool_id!), service.vip as Ipv4);
    }
    await tx.repo.updateReservedIp(rip.id, { service_id: service.id });
    await tx.repo.updateService(service.id, {
      reserved_ip_id: rip.id,
      vip: rip.address,
      vip_pool_id: rip.pool_id,
    });
    await tx.emit({
      type: 'reserved-ip.associated',
      subscription: sub.name,
      resource: `reserved-ip/${sub.name}/${rip.name}`,
      reason: `associate with ${service.name}`,
      new: { service: service.name },
    });
    await this.emitVip(tx, sub.name, service.name, service.vip, rip.address, reason);
  }

  /** Takes a reserved IP off its service; a service with allocated VMs draws a new VIP. */
  async disassociateReservedIp(subscription: string, name: string): Promise<ReservedIpView> {
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      // The lock order (store/LOCKS.md) puts the service first: learn it, lock it, then lock the
      // reserved IP and make sure it is still the service's.
      const seen = await tx.repo.reservedIp(sub.id, name, { lock: false });
      if (seen === undefined) notFound(`reserved IP ${name} in subscription ${sub.name}`);
      const service = seen.service_id === null ? undefined : await tx.repo.serviceById(seen.service_id);
      const rip = await this.findReservedIp(tx.repo, sub, name);
      if (rip.service_id === null) {
        throw new VipdipError('CONFLICT', `reserved IP ${name} is not associated with any cloud service`);
      }
      // Associated elsewhere meanwhile: run again, locking that service first.
      if (service === undefined || rip.service_id !== service.id) throw new RunAgain();
      await this.disassociate(tx, sub, rip, service, `reserved IP ${name} disassociated`);
      return this.reservedIpView(tx.repo, (await tx.repo.reservedIpById(rip.id))!, sub.name);
    });
  }

  private async disassociate(
    tx: Tx,
    sub: SubRef,
    rip: ReservedIpRow,
    service: ServiceRow,
    reason: string,
  ): Promise<void> {
    await tx.repo.updateService(service.id, { reserved_ip_id: null, vip: null, vip_pool_id: null });
    await tx.repo.updateReservedIp(rip.id, { service_id: null });
    await tx.emit({
      type: 'reserved-ip.disassociated',
      subscription: sub.name,
      resource: `reserved-ip/${sub.name}/${rip.name}`,
      reason: `disassociate from ${service.name}`,
      old: { service: service.name },
    });
    let vip: number | null = null;
    if ((await tx.repo.allocatedVmCount(service.id)) > 0) {
      const drawn = await this.book.drawPublic(tx, { owner: `service:${service.id}`, kind: 'vip' });
      await tx.repo.updateService(service.id, { vip: drawn.ip, vip_pool_id: Number(drawn.scope.slice(5)) });
      vip = drawn.ip;
    }
    await this.emitVip(tx, sub.name, service.name, service.vip, vip, reason);
  }

  /** Turns a service's current VIP into a reserved IP in place: the address does not change. */
  async reserveServiceVip(subscription: string, serviceName: string, name: string): Promise<ReservedIpView> {
    checkName('reserved IP', name);
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      const { service } = await this.findService(tx.repo, serviceName, subscription);
      if (await tx.repo.reservedIp(sub.id, name)) {
        throw new VipdipError(
          'ALREADY_EXISTS',
          `reserved IP ${name} already exists in subscription ${subscription}`,
        );
      }
      if (service.reserved_ip_id !== null) {
        throw new VipdipError('CONFLICT', `cloud service ${serviceName} already uses a reserved IP`);
      }
      if (service.vip === null) {
        throw new VipdipError(
          'CONFLICT',
          `cloud service ${serviceName} has no VIP to reserve (no VM is allocated)`,
        );
      }
      const row = await tx.repo.insertReservedIp({
        subscription_id: sub.id,
        name,
        pool_id: service.vip_pool_id!,
        address: service.vip,
        service_id: service.id,
      });
      await tx.repo.rebind(poolScope(service.vip_pool_id!), service.vip, `reserved-ip:${row.id}`, 'reserved');
      await tx.repo.updateService(service.id, { reserved_ip_id: row.id });
      await tx.emit({
        type: 'reserved-ip.address',
        subscription,
        resource: `reserved-ip/${subscription}/${name}`,
        reason: `reserve the VIP of ${serviceName} in place`,
        old: { address: null },
        new: { address: formatIpv4(service.vip as Ipv4) },
      });
      await tx.emit({
        type: 'reserved-ip.associated',
        subscription,
        resource: `reserved-ip/${subscription}/${name}`,
        reason: `associate with ${serviceName}`,
        new: { service: serviceName },
      });
      return this.reservedIpView(tx.repo, row, subscription);
    });
  }

  listReservedIps(subscription?: string): Promise<ReservedIpView[]> {
    return this.read(async (r) => {
      const subs = new Map((await r.subscriptions()).map((s) => [s.id, s.name]));
      const sub = subscription === undefined ? undefined : await this.findSubscription(r, subscription);
      const out: ReservedIpView[] = [];
      for (const x of await r.reservedIps(sub?.id))
        out.push(await this.reservedIpView(r, x, subs.get(x.subscription_id)!));
      return out;
    });
  }

  private async reservedIpView(repo: Repo, r: ReservedIpRow, subscription: string): Promise<ReservedIpView> {
    const svc = r.service_id === null ? undefined : await repo.serviceById(r.service_id, { lock: false });
    return { subscription, name: r.name, address: formatIpv4(r.address as Ipv4), service: svc?.name ?? null };
  }

  // ---------------------------------------------------------------- cloud services

  async createService(
    subscription: string,
    spec: { name: string; vnet?: string | null; reservedIp?: string | null },
  ): Promise<ServiceView> {
    checkDnsLabel('cloud service', spec.name);
    return this.write(async (tx) => {
      const sub = await this.findSubscription(tx.repo, subscription);
      if (await tx.repo.service(spec.name)) {
        throw new VipdipError(
          'ALREADY_EXISTS',
          `cloud service ${spec.name} already exists (its DNS label is unique across the system)`,
        );
      }
      const vnet = spec.vnet == null ? undefined : await this.findVnet(tx.repo, sub, spec.vnet);
      const rip =
        spec.reservedIp == null ? undefined : await this.findReservedIp(tx.repo, sub, spec.reservedIp);
      const row = await tx.repo.insertService({
        subscription_id: sub.id,
        name: spec.name,
        vnet_id: vnet?.id ?? null,
        reserved_ip_id: null,
        vip: null,
        vip_pool_id: null,
      });
      await tx.emit({
        type: 'service.created',
        subscription,
        resource: serviceResource(spec.name),
        reason: 'create',
        new: { vnet: vnet?.name ?? null },
      });
      if (rip !== undefined) await this.associate(tx, sub, rip, row);
      return this.serviceView(tx.repo, (await tx.repo.serviceById(row.id))!);
    });
  }

  /** Deletes a service and all its VMs; its VIP goes back to the pool, a reserved IP survives. */
  async deleteService(name: string, subscription?: string): Promise<void> {
    await this.write(async (tx) => {
      const { service, sub } = await this.findService(tx.repo, name, subscription);
      for (const vm of await tx.repo.vms({ serviceId: service.id }, { lock: true }))
        await this.deleteVmRow(tx, sub, service, vm, 'delete of the cloud service');
      const fresh = (await tx.repo.serviceById(service.id))!;
      if (fresh.reserved_ip_id !== null) {
        const rip = (await tx.repo.reservedIpById(fresh.reserved_ip_id))!;
        await this.disassociate(tx, sub, rip, fresh, 'cloud service deleted');
      } else await this.settleVip(tx, sub, fresh, 'cloud service deleted');
      await tx.repo.deleteService(service.id);
      await tx.emit({
        type: 'service.deleted',
        subscription: sub.name,
        resource: serviceResource(name),
        reason: 'delete',
      });
    });
  }

  listServices(subscription?: string): Promise<ServiceView[]> {
    return this.read(async (r) => {
      const sub = subscription === undefined ? undefined : await this.findSubscription(r, subscription);
      const out: ServiceView[] = [];
      for (const s of await r.services(sub?.id)) out.push(await this.serviceView(r, s));
      return out;
    });
  }

  getService(name: string, subscription?: string): Promise<ServiceView> {
    return this.read(async (r) =>
      this.serviceView(r, (await this.findService(r, name, subscription)).service),
    );
  }

  private async serviceView(repo: Repo, s: ServiceRow): Promise<ServiceView> {
    const sub = await repo.subscriptionById(s.subscription_id);
    const vnet = s.vnet_id === null ? undefined : await repo.vnetById(s.vnet_id);
    const rip =
      s.reserved_ip_id === null ? undefined : await repo.reservedIpById(s.reserved_ip_id, { lock: false });
    return {
      subscription: sub?.name ?? '?',
      name: s.name,
      vip: ip(s.vip),
      reservedIp: rip?.name ?? null,
      dnsName: serviceFqdn(s.name, this.zones.publicZone),
      vnet: vnet?.name ?? null,
      vms: (await repo.vms({ serviceId: s.id })).map((v) => v.name),
    };
  }

  /**
   * R1 and R3: a service without a reserved IP holds a VIP exactly while it has an allocated VM.
   * `justAllocated`: the caller has just allocated one of its VMs, so there is one (no count).
   */
  private async settleVip(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    reason: string,
    justAllocated = false,
  ): Promise<void> {
    if (service.reserved_ip_id !== null) return;
    if (justAllocated && service.vip !== null) return;
    const allocated = justAllocated ? 1 : await tx.repo.allocatedVmCount(service.id);
    if (allocated > 0 && service.vip === null) {
      // The first allocated VM (its operation holds the service exclusively).
      const { ip: vip, scope } = await this.book.drawPublic(tx, {
        owner: `service:${service.id}`,
        kind: 'vip',
      });
      await tx.repo.updateService(service.id, { vip, vip_pool_id: Number(scope.slice(5)) });
      await this.emitVip(tx, sub.name, service.name, null, vip, `first VM allocated (${reason})`);
    } else if (allocated === 0 && service.vip !== null) {
      await tx.repo.updateService(service.id, { vip: null, vip_pool_id: null });
      await this.book.free(tx, poolScope(service.vip_pool_id!), service.vip as Ipv4);
      await this.emitVip(
        tx,
        sub.name,
        service.name,
        service.vip,
        null,
        `no VM allocated any more (${reason})`,
      );
    }
  }

  private async emitVip(
    tx: Tx,
    subscription: string,
    service: string,
    old: number | null,
    now: number | null,
    reason: string,
  ): Promise<void> {
    if (old === now) return;
    await tx.emit({
      type: 'service.vip',
      subscription,
      resource: serviceResource(service),
      reason,
      old: { vip: ip(old) },
      new: { vip: ip(now) },
    });
  }

  // ---------------------------------------------------------------- images

  /** The built-ins first, then the operator's, by name. */
  listImages(): Promise<ImageView[]> {
    return this.read(async (r) => [
      ...BUILTIN_IMAGES.map(builtinImageView),
      ...(await r.images()).map(imageView),
    ]);
  }

  getImage(name: string): Promise<ImageView> {
    if (isBuiltinImage(name)) return Promise.resolve(builtinImageView(name));
    return this.read(async (r) => {
      const row = await r.image(name);
      return row === undefined ? notFound(`image ${name}`) : imageView(row);
    });
  }

  /** Registers an image (operator); ALREADY_EXISTS for a built-in or a registered name. */
  async createImage(name: string, spec: ImageSpec): Promise<ImageView> {
    const img = normalizeImage(name, spec);
    return this.write(async (tx) => {
      await tx.repo.lockImages();
      if ((await tx.repo.image(name)) !== undefined) {
        throw new VipdipError('ALREADY_EXISTS', `image ${name} already exists`);
      }
      const row = {
        name,
        command: img.command,
        env: JSON.stringify(img.env),
        created_at: this.clock.now().toISOString(),
      };
      await tx.repo.insertImage(row);
      await tx.emit({
        type: 'image.created',
        subscription: null,
        resource: imageResource(name),
        reason: 'create',
        new: { command: img.command, env: Object.keys(img.env) },
      });
      return imageView(row);
    });
  }

  /** Changes an image's command or environment; the VMs running it restart with the new one. */
  async updateImage(name: string, spec: ImageSpec): Promise<ImageView> {
    const img = normalizeImage(name, spec);
    return this.write(async (tx) => {
      await tx.repo.lockImages();
      const cur = (await tx.repo.image(name)) ?? notFound(`image ${name}`);
      const env = JSON.stringify(img.env);
      if (cur.command !== img.command || cur.env !== env) {
        await tx.repo.updateImage(name, { command: img.command, env });
        await tx.emit({
          type: 'image.updated',
          subscription: null,
          resource: imageResource(name),
          reason: 'update',
          old: { command: cur.command, env: Object.keys(JSON.parse(cur.env) as object) },
          new: { command: img.command, env: Object.keys(img.env) },
        });
      }
      return imageView({ ...cur, command: img.command, env });
    });
  }

  /** Deletes an image; IN_USE while any VM names it. */
  async deleteImage(name: string): Promise<void> {
    checkImageName(name);
    if (isBuiltinImage(name)) throw new VipdipError('IN_USE', `image ${name} is built in`);
    await this.write(async (tx) => {
      await tx.repo.lockImages();
      const cur = (await tx.repo.image(name)) ?? notFound(`image ${name}`);
      const users = await tx.repo.vmsUsingImage(name, IMAGE_USERS_LISTED + 1);
      if (users.length > 0) {
        const more = users.length > IMAGE_USERS_LISTED ? ' and more' : '';
        throw new VipdipError(
          'IN_USE',
          `image ${name} is the workload of ${users.slice(0, IMAGE_USERS_LISTED).join(', ')}${more}`,
        );
      }
      await tx.repo.deleteImage(name);
      await tx.emit({
        type: 'image.deleted',
        subscription: null,
        resource: imageResource(name),
        reason: 'delete',
        old: { command: cur.command },
      });
    });
  }

  // ---------------------------------------------------------------- VMs

  /** Creates a VM in a service and, unless told otherwise, starts it (allocating its addresses). */
  async createVm(
    serviceName: string,
    spec: VmSpec,
    opts: { subscription?: string; start?: boolean; commands?: boolean } = {},
  ): Promise<VmView> {
    checkDnsLabel('VM', spec.name);
    const endpoints = normalizeEndpoints(spec.endpoints, `VM ${spec.name} endpoints`);
    const workload = spec.workload ?? null;
    if (
      workload !== null &&
      (typeof workload !== 'string' || workload.length === 0 || workload.length > 4096)
    ) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `VM ${spec.name}: workload must name an image (or be "command: …" from the operator)`,
      );
    }
    const staticDip = spec.staticDip == null ? null : parseIpv4(spec.staticDip);
    return this.write(async (tx) => {
      const { service, sub } = await this.findService(tx.repo, serviceName, opts.subscription);
      if (await tx.repo.vm(service.id, spec.name)) {
        throw new VipdipError('ALREADY_EXISTS', `VM ${serviceName}/${spec.name} already exists`);
      }
      const subnet = await this.findSubnetOfService(tx.repo, service, spec.subnet);
      await checkWorkload(tx.repo, spec.name, workload, opts.commands !== false);
      if (staticDip !== null) await this.book.check(tx.repo, subnetScope(subnet.id), staticDip);
      await this.checkEndpoints(tx.repo, service, spec.name, endpoints);
      const row = await tx.repo.insertVm({
        service_id: service.id,
        name: spec.name,
        subnet_id: subnet.id,
        state: 'deallocated',
        dip: null,
        host_id: null,
        static_dip: staticDip,
        ilpip_enabled: spec.ilpip === true ? 1 : 0,
        ilpip: null,
        ilpip_pool_id: null,
        workload,
        endpoints: JSON.stringify(endpoints),
      });
      await tx.emit({
        type: 'vm.created',
        subscription: sub.name,
        resource: vmResource(service.name, spec.name),
        reason: 'create',
        new: { subnet: subnet.name, staticDip: ip(staticDip), ilpip: spec.ilpip === true },
      });
      // A static DIP is the VM's from now on, allocated or not (R4): no dynamic draw can take it.
      if (staticDip !== null)
        await this.book.claim(tx, subnetScope(subnet.id), staticDip, staticOwner(row.id));
      if (opts.start !== false) await this.applyOperation(tx, sub, service, row, 'start', 'create');
      return this.vmView(tx.repo, (await tx.repo.vmById(row.id))!);
    });
  }

  /**
   * Changes a VM's endpoints, workload or ILPIP setting; addresses follow only where they must.
   * `opts.commands: false` (a tenant) refuses an inline command as the workload.
   */
  async updateVm(
    ref: VmRef,
    patch: { endpoints?: unknown; workload?: string | null; ilpip?: boolean; staticDip?: string | null },
    precondition?: (current: VmView) => void,
    opts: { commands?: boolean } = {},
  ): Promise<VmView> {
    const endpoints =
      patch.endpoints === undefined
        ? undefined
        : normalizeEndpoints(patch.endpoints, `VM ${ref.vm} endpoints`);
    return this.write(async (tx) => {
      const { sub, service, vm } = await this.findVm(tx.repo, ref);
      if (precondition !== undefined) precondition(await this.vmView(tx.repo, vm));
      const changes: Record<string, unknown> = {};
      const old: Record<string, unknown> = {};
      if (endpoints !== undefined && JSON.stringify(endpoints) !== vm.endpoints) {
        await this.checkEndpoints(tx.repo, service, vm.name, endpoints);
        await tx.repo.updateVm(vm.id, { endpoints: JSON.stringify(endpoints) });
        old.endpoints = JSON.parse(vm.endpoints);
        changes.endpoints = endpoints;
      }
      if (patch.workload !== undefined && patch.workload !== vm.workload) {
        await checkWorkload(tx.repo, vm.name, patch.workload, opts.commands !== false);
        await tx.repo.updateVm(vm.id, { workload: patch.workload });
        old.workload = vm.workload;
        changes.workload = patch.workload;
      }
      if (patch.staticDip !== undefined) {
        const next = patch.staticDip === null ? null : parseIpv4(patch.staticDip);
        if (next !== vm.static_dip) {
          if (isAllocated(vm.state as VmState)) {
            throw new VipdipError(
              'INVALID_TRANSITION',
              `VM ${service.name}/${vm.name} must be deallocated to change its static DIP`,
            );
          }
          const scope = subnetScope(vm.subnet_id);
          if (next !== null) await this.book.check(tx.repo, scope, next);
          // Claim before release: a claim that reloads the range from the store inside this
          // transaction must not see the old address given back by a change that may roll back.
          // The new reservation takes a provisional owner (one owner holds one of each kind).
          const provisional = `vm:${vm.id}:static`;
          if (next !== null) await this.book.claim(tx, scope, next, { owner: provisional, kind: 'static' });
          if (vm.static_dip !== null)
            await this.book.freeOwned(tx, scope, vm.static_dip as Ipv4, `vm:${vm.id}`);
          if (next !== null) await tx.repo.rebind(scope, next, `vm:${vm.id}`, 'static');
          await tx.repo.updateVm(vm.id, { static_dip: next });
          old.staticDip = ip(vm.static_dip);
          changes.staticDip = ip(next);
        }
      }
      if (patch.ilpip !== undefined && (patch.ilpip ? 1 : 0) !== vm.ilpip_enabled) {
        await tx.repo.updateVm(vm.id, { ilpip_enabled: patch.ilpip ? 1 : 0 });
        old.ilpip = vm.ilpip_enabled === 1;
        changes.ilpip = patch.ilpip;
        if (isAllocated(vm.state as VmState)) {
          if (patch.ilpip) await this.bindIlpip(tx, sub, service, vm, 'instance-level public IP enabled');
          else await this.releaseIlpip(tx, sub, service, vm, 'instance-level public IP disabled');
        }
      }
      if (Object.keys(changes).length > 0) {
        await tx.emit({
          type: 'vm.updated',
          subscription: sub.name,
          resource: vmResource(service.name, vm.name),
          reason: 'update',
          old,
          new: changes,
        });
      }
      return this.vmView(tx.repo, (await tx.repo.vmById(vm.id))!);
    });
  }

  /** Runs one VM operation; returns the VM afterwards, or null once it is deleted. */
  async vmOperation(
    ref: VmRef,
    op: VmOperation,
    reason: string = op,
    precondition?: (current: VmView) => void,
  ): Promise<VmView | null> {
    // Only deallocation and deletion can take the service's last allocated VM (and so its VIP),
    // and only a start can give it its first: those hold the service to themselves.
    // Inside a batch (apply) the service is held exclusively from the start: running again to take
    // a stronger lock would run the whole batch again, and meet the same need again.
    let serviceLock: 'share' | 'update' =
      op === 'deallocate' || op === 'delete' || this.ambientTx() !== undefined ? 'update' : 'share';
    return this.write(async (tx) => {
      const { sub, service: svc, vm, context } = await this.findVm(tx.repo, ref, serviceLock);
      if (
        serviceLock === 'share' &&
        tx.repo.locks &&
        op === 'start' &&
        vm.state === 'deallocated' &&
        svc.vip === null &&
        svc.reserved_ip_id === null
      ) {
        // This start draws the service's first VIP: run again holding the service (taking it now,
        // on top of the share, could deadlock with another such start).
        serviceLock = 'update';
        throw new RunAgain();
      }
      if (precondition !== undefined) precondition(detailView(context, this.zones));
      const changed = await this.applyOperation(tx, sub, svc, vm, op, reason, context);
      // The common operations say what they changed: the view needs no read of its own.
      if (changed !== undefined) return detailView({ ...context, ...changed }, this.zones);
      const [after] = await tx.repo.vmDetails({ vmId: vm.id });
      return after === undefined ? null : detailView(after, this.zones);
    });
  }

  private async applyOperation(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    op: VmOperation,
    reason: string,
    context?: VmContextRow,
  ): Promise<VmChange | undefined> {
    const name = `${service.name}/${vm.name}`;
    const from = vm.state as VmState;
    const to = nextState(name, from, op);
    if (op === 'delete' || to === null) {
      await this.deleteVmRow(tx, sub, service, vm, reason);
      return undefined;
    }
    let changed: VmChange | undefined = { state: to };
    if (op === 'start' && from === 'deallocated')
      changed = await this.allocateVm(tx, sub, service, vm, reason, to, context);
    else if (op === 'deallocate') changed = await this.releaseVm(tx, sub, service, vm, reason, to, context);
    else if (to !== from) await tx.repo.updateVm(vm.id, { state: to });
    if (op === 'redeploy') {
      const hosts = await tx.repo.hosts();
      const loads = this.hostLoads.forHosts(hosts, tx.hostMoves);
      await this.moveVm(tx, vm, hosts, loads, new Set([vm.host_id!]), reason);
      changed = undefined;
    }
    await tx.emit({
      type: `vm.${op === 'start' ? 'started' : op === 'stop' ? 'stopped' : op === 'deallocate' ? 'deallocated' : op === 'restart' ? 'restarted' : 'redeployed'}`,
      subscription: sub.name,
      resource: vmResource(service.name, vm.name),
      reason,
      old: { state: from },
      new: { state: to },
    });
    // The service row is as this operation found it: nothing in between changed its VIP (an
    // operation that could holds the service exclusively, and we hold a share of it at least).
    if (op === 'start') await this.settleVip(tx, sub, service, reason, true);
    else if (op === 'deallocate') await this.settleVip(tx, sub, service, reason);
    return changed;
  }

  private async deleteVmRow(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    reason: string,
  ): Promise<void> {
    if (isAllocated(vm.state as VmState)) await this.releaseVm(tx, sub, service, vm, reason, 'deallocated');
    await tx.repo.deleteVm(vm.id);
    // Its static DIP was reserved for its whole life, which ends here.
    if (vm.static_dip !== null)
      await this.book.freeOwned(tx, subnetScope(vm.subnet_id), vm.static_dip as Ipv4, `vm:${vm.id}`);
    await tx.emit({
      type: 'vm.deleted',
      subscription: sub.name,
      resource: vmResource(service.name, vm.name),
      reason,
      old: { state: vm.state },
    });
    await this.settleVip(tx, sub, (await tx.repo.serviceById(service.id))!, reason);
  }

  /** Places the VM on a host and binds its DIP (static or drawn per policy, R4) and ILPIP. */
  private async allocateVm(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    reason: string,
    state: VmState,
    context?: VmContextRow,
  ): Promise<VmChange> {
    const hosts = await tx.repo.hosts();
    const host = pickHost(hosts, this.hostLoads.forHosts(hosts, tx.hostMoves), new Set(), this.random);
    const scope = subnetScope(vm.subnet_id);
    const who = { owner: `vm:${vm.id}`, kind: 'dip' as const };
    let dip: Ipv4;
    if (vm.static_dip !== null) {
      // Held since the VM was created (R4): bound again without a draw.
      dip = vm.static_dip as Ipv4;
      await this.book.holdStatic(tx, scope, dip, staticOwner(vm.id));
    } else {
      const policy = context?.dip_policy ?? (await this.vnetOfSubnet(tx.repo, vm.subnet_id)).dip_policy;
      dip = await this.book.draw(tx, scope, policy as AllocationPolicy, who);
    }
    await tx.repo.updateVm(vm.id, { dip, host_id: host.id, state });
    const resource = vmResource(service.name, vm.name);
    await tx.emit({
      type: 'vm.host',
      subscription: sub.name,
      resource,
      reason,
      old: { host: null },
      new: { host: host.name },
    });
    await tx.emit({
      type: 'vm.dip',
      subscription: sub.name,
      resource,
      reason,
      old: { dip: null },
      new: { dip: formatIpv4(dip) },
    });
    const changed: VmChange = { state, dip, host_id: host.id, host_name: host.name, host_rack: host.rack };
    if (vm.ilpip_enabled === 1) {
      const a = await this.bindIlpip(tx, sub, service, vm, reason);
      changed.ilpip = a.ip;
      changed.ilpip_pool_id = a.poolId;
    }
    return changed;
  }

  /** Deallocation: the DIP and ILPIP go back (R4), the VM leaves its host. */
  private async releaseVm(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    reason: string,
    state: VmState,
    context?: VmContextRow,
  ): Promise<VmChange> {
    const resource = vmResource(service.name, vm.name);
    await tx.repo.updateVm(vm.id, { dip: null, host_id: null, state });
    if (vm.dip !== null) {
      // A static DIP stays reserved for the VM while it is deallocated (R4, I5).
      if (vm.dip !== vm.static_dip) await this.book.free(tx, subnetScope(vm.subnet_id), vm.dip as Ipv4);
      await tx.emit({
        type: 'vm.dip',
        subscription: sub.name,
        resource,
        reason,
        old: { dip: ip(vm.dip) },
        new: { dip: null },
      });
    }
    if (vm.host_id !== null) {
      const hostName = context?.host_name ?? (await tx.repo.hosts()).find((h) => h.id === vm.host_id)?.name;
      await tx.emit({
        type: 'vm.host',
        subscription: sub.name,
        resource,
        reason,
        old: { host: hostName ?? null },
        new: { host: null },
      });
    }
    await this.releaseIlpip(tx, sub, service, vm, reason);
    return {
      state,
      dip: null,
      host_id: null,
      host_name: null,
      host_rack: null,
      ilpip: null,
      ilpip_pool_id: null,
    };
  }

  private async bindIlpip(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    reason: string,
  ): Promise<{ ip: Ipv4; poolId: number }> {
    const { ip: addr, scope } = await this.book.drawPublic(tx, { owner: `vm:${vm.id}`, kind: 'ilpip' });
    const poolId = Number(scope.slice(5));
    await tx.repo.updateVm(vm.id, { ilpip: addr, ilpip_pool_id: poolId });
    await tx.emit({
      type: 'vm.ilpip',
      subscription: sub.name,
      resource: vmResource(service.name, vm.name),
      reason,
      old: { ilpip: null },
      new: { ilpip: formatIpv4(addr) },
    });
    return { ip: addr, poolId };
  }

  private async releaseIlpip(
    tx: Tx,
    sub: SubRef,
    service: ServiceRow,
    vm: VmRow,
    reason: string,
  ): Promise<void> {
    // A VM that never had an ILPIP enabled holds none: no need to read it again.
    if (vm.ilpip_enabled === 0 && vm.ilpip === null) return;
    const fresh = (await tx.repo.vmById(vm.id))!;
    if (fresh.ilpip === null) return;
    await tx.repo.updateVm(vm.id, { ilpip: null, ilpip_pool_id: null });
    await this.book.free(tx, poolScope(fresh.ilpip_pool_id!), fresh.ilpip as Ipv4);
    await tx.emit({
      type: 'vm.ilpip',
      subscription: sub.name,
      resource: vmResource(service.name, vm.name),
      reason,
      old: { ilpip: ip(fresh.ilpip) },
      new: { ilpip: null },
    });
  }

  /**
   * Moves an allocated VM to another host (redeploy, maintenance: R5). Its DIP is redrawn unless it
   * is static or its network keeps DIPs on moves; the new DIP is drawn before the old one is given
   * back, so a redraw differs whenever the subnet has another free address.
   */
  private async moveVm(
    tx: Tx,
    vm: VmRow,
    hosts: readonly HostInfo[],
    loads: Map<number, number>,
    exclude: ReadonlySet<number>,
    reason: string,
  ): Promise<void> {
    // Names only: no lock, so that a maintenance never waits on a service while holding its VMs.
    const service = (await tx.repo.serviceById(vm.service_id, { lock: false }))!;
    const sub = (await tx.repo.subscriptionById(service.subscription_id))!;
    const resource = vmResource(service.name, vm.name);
    const target = pickHost(hosts, loads, exclude, this.random);
    const oldHost = hosts.find((h) => h.id === vm.host_id);
    loads.set(target.id, (loads.get(target.id) ?? 0) + 1);
    if (vm.host_id !== null) loads.set(vm.host_id, (loads.get(vm.host_id) ?? 1) - 1);
    await tx.repo.updateVm(vm.id, { host_id: target.id });
    await tx.emit({
      type: 'vm.host',
      subscription: sub.name,
      resource,
      reason,
      old: { host: oldHost?.name ?? null },
      new: { host: target.name },
    });

    const vnet = await this.vnetOfSubnet(tx.repo, vm.subnet_id);
    if (vm.static_dip !== null || vnet.move_policy === 'keep' || vm.dip === null) return;
    const scope = subnetScope(vm.subnet_id);
    // The new binding takes a provisional owner, since one owner holds one DIP binding at a time.
    const who = { owner: `vm:${vm.id}:moving`, kind: 'dip' as const };
    let dip: Ipv4;
    try {
      dip = await this.book.draw(tx, scope, vnet.dip_policy as AllocationPolicy, who);
    } catch (e) {
      if (isVipdipError(e, 'POOL_EXHAUSTED')) return; // nowhere else to go: the DIP stays
      throw e;
    }
    await this.book.free(tx, scope, vm.dip as Ipv4);
    await tx.repo.rebind(scope, dip, `vm:${vm.id}`, 'dip');
    await tx.repo.updateVm(vm.id, { dip });
    await tx.emit({
      type: 'vm.dip',
      subscription: sub.name,
      resource,
      reason,
      old: { dip: ip(vm.dip) },
      new: { dip: formatIpv4(dip) },
    });
  }

  private async checkEndpoints(
    repo: Repo,
    service: ServiceRow,
    vmName: string,
    endpoints: Endpoint[],
  ): Promise<void> {
    const others = (await repo.vms({ serviceId: service.id }))
      .filter((v) => v.name !== vmName)
      .map((v) => ({ name: v.name, endpoints: JSON.parse(v.endpoints) as Endpoint[] }));
    checkServiceEndpoints(service.name, [...others, { name: vmName, endpoints }]);
  }

  listVms(filter: { subscription?: string; service?: string } = {}): Promise<VmView[]> {
    return this.read(async (r) => {
      let rows: VmDetailRow[];
      if (filter.service !== undefined) {
        const { service } = await this.findService(r, filter.service, filter.subscription);
        rows = await r.vmDetails({ serviceId: service.id });
      } else if (filter.subscription !== undefined) {
        rows = await r.vmDetails({
          subscriptionId: (await this.findSubscription(r, filter.subscription)).id,
        });
      } else rows = await r.vmDetails();
      return rows.map((r) => detailView(r, this.zones));
    });
  }

  getVm(ref: VmRef): Promise<VmView> {
    return this.read(async (r) => this.vmView(r, (await this.findVm(r, ref)).vm));
  }

  private async vmView(repo: Repo, v: VmRow): Promise<VmView> {
    const [d] = await repo.vmDetails({ vmId: v.id });
    return detailView(d!, this.zones);
  }

  // ---------------------------------------------------------------- events

  async events(opts: EventQuery = {}): Promise<EventView[]> {
    return (await this.read((r) => r.events(opts))).map(toEventView);
  }

  // ---------------------------------------------------------------- lookups

  private async findSubscription(repo: Repo, name: string): Promise<SubscriptionRow> {
    return (await repo.subscriptionByName(name)) ?? notFound(`subscription ${name}`);
  }

  private async findVnet(repo: Repo, sub: SubRef, name: string): Promise<VnetRow> {
    return (await repo.vnet(sub.id, name)) ?? notFound(`virtual network ${name} in subscription ${sub.name}`);
  }

  private async findReservedIp(repo: Repo, sub: SubRef, name: string): Promise<ReservedIpRow> {
    return (
      (await repo.reservedIp(sub.id, name)) ?? notFound(`reserved IP ${name} in subscription ${sub.name}`)
    );
  }

  /** One query on the common path; the error path tells a missing service from a missing VM. */
  private async findVm(repo: Repo, ref: VmRef, serviceLock: 'share' | 'update' = 'update'): Promise<FoundVm> {
    const c = await repo.vmContext(ref.service, ref.vm, { service: serviceLock });
    if (c === undefined || (ref.subscription !== undefined && c.subscription_name !== ref.subscription)) {
      await this.findService(repo, ref.service, ref.subscription);
      notFound(`VM ${ref.service}/${ref.vm}`);
    }
    const service: ServiceRow = {
      id: c.service_id,
      subscription_id: c.subscription_id,
      name: c.service_name,
      vnet_id: c.service_vnet_id,
      reserved_ip_id: c.service_reserved_ip_id,
      vip: c.service_vip,
      vip_pool_id: c.service_vip_pool_id,
    };
    return { sub: { id: c.subscription_id, name: c.subscription_name }, service, vm: c, context: c };
  }

  private async findSubnetOfService(repo: Repo, service: ServiceRow, subnetName: string): Promise<SubnetRow> {
    if (service.vnet_id === null) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `cloud service ${service.name} is bound to no virtual network, so its VMs have no subnet to draw a DIP from`,
      );
    }
    const subnet = (await repo.subnets(service.vnet_id)).find((s) => s.name === subnetName);
    if (subnet === undefined) {
      const vnet = await repo.vnetById(service.vnet_id);
      notFound(`subnet ${subnetName} in virtual network ${vnet?.name ?? '?'}`);
    }
    return subnet;
  }

  private async vnetOfSubnet(repo: Repo, subnetId: number): Promise<VnetRow> {
    const subnet = (await repo.subnetById(subnetId))!;
    return (await repo.vnetById(subnet.vnet_id))!;
  }

  private async findService(
    repo: Repo,
    name: string,
    subscription?: string,
  ): Promise<{ service: ServiceRow; sub: SubscriptionRow }> {
    const service = await repo.service(name);
    const sub = service === undefined ? undefined : await repo.subscriptionById(service.subscription_id);
    // Another subscription's service answers exactly as one that does not exist.
    if (
      service === undefined ||
      sub === undefined ||
      (subscription !== undefined && sub.name !== subscription)
    ) {
      notFound(`cloud service ${name}`);
    }
    return { service, sub };
  }
}
