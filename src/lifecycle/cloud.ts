/**
 * The control plane's lifecycle: every operation on subscriptions, networks, reserved IPs, cloud
 * services, VMs and hosts, each one store transaction that applies rules R1–R8 and appends an event
 * for every state and address change (I6). It knows nothing of HTTP, sockets or processes: the API,
 * the data-plane agent, DNS and the dashboard consume it and the events it publishes.
 *
 * `Cloud` is the facade: it opens the state, follows the log and hands each operation to the
 * module of its resource. The layers, from the bottom:
 *   tx.ts, events.ts           the transaction and the event catalog
 *   address-book.ts            the allocation indexes (what is free where)
 *   vips.ts, vm-addresses.ts   the address rules: a service's VIP (R1–R3), a VM's DIP and ILPIP (R4–R5)
 *   vms.ts, services.ts, networks.ts, reserved-ips.ts, fabric.ts, subscriptions.ts, image-registry.ts
 *                              the resources, on top of the rules
 */
import type { Clock } from '../core/clock.ts';
import type { Cidr } from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import type { EventQuery, EventRow, Store } from '../store/index.ts';
import { AddressBook } from './address-book.ts';
import type { Ctx } from './context.ts';
import { DEFAULT_INTERNAL_ZONE, DEFAULT_PUBLIC_ZONE } from './dns-names.ts';
import * as fabric from './fabric.ts';
import { EventFeed } from './feed.ts';
import { HostLoads } from './host-loads.ts';
import * as images from './image-registry.ts';
import * as networks from './networks.ts';
import * as reservedIps from './reserved-ips.ts';
import * as services from './services.ts';
import * as subscriptions from './subscriptions.ts';
import { Transactions } from './tx.ts';
import { toEventView } from './vm-view.ts';
import * as vms from './vms.ts';
import type { EventView } from './views.ts';

export { DEFAULT_FABRIC } from './fabric.ts';
export {
  MAX_SUBNET_PREFIX,
  MOVE_POLICIES,
  checkSpaceBlock,
  type MovePolicy,
  type VnetSpec,
} from './networks.ts';
export type { VmRef } from './lookups.ts';
export type { VmSpec } from './vms.ts';
export { toEventView } from './vm-view.ts';

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

/** A resource module's operation, as the facade offers it: the context bound. */
type Op<F> = F extends (c: Ctx, ...args: infer A) => infer R ? (...args: A) => R : never;

export class Cloud {
  private readonly listeners = new Set<(events: readonly EventView[]) => void>();
  private readonly txs: Transactions;
  private readonly ctx: Ctx;
  /** Every replica's committed transactions, applied here in order. */
  readonly feed: EventFeed;

  private constructor(
    readonly store: Store,
    readonly book: AddressBook,
    private readonly hostLoads: HostLoads,
    position: number,
    opts: CloudOptions,
  ) {
    this.feed = new EventFeed(store, book, position, (rows) => this.publish(rows), opts.onError);
    const txs = new Transactions(store, opts.clock, (tx) => this.feed.committed(tx));
    this.txs = txs;
    this.ctx = {
      book,
      hostLoads,
      random: opts.random,
      clock: opts.clock,
      zones: {
        publicZone: opts.publicZone ?? DEFAULT_PUBLIC_ZONE,
        internalZone: opts.internalZone ?? DEFAULT_INTERNAL_ZONE,
      },
      checkAddressPlan: opts.checkAddressPlan ?? (() => {}),
      write: (fn) => txs.write(fn),
      read: (fn) => txs.read(fn),
      inBatch: () => txs.ambient() !== undefined,
    };
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
    const cloud = new Cloud(store, book, hostLoads, position, opts);
    cloud.feed.start();
    const c = cloud.ctx;
    // Decided inside the transaction: replicas opening an empty state together create it once
    // (the one that loses the race on the unique names runs again and finds it made).
    await c.write(async (tx) => {
      if (opts.defaultFabric !== false && (await tx.repo.hosts()).length === 0) {
        for (const rack of fabric.DEFAULT_FABRIC)
          for (const h of rack.hosts) await fabric.insertHost(tx, h, rack.name);
      }
      if ((opts.defaultPublicPools ?? []).length > 0 && (await tx.repo.pools()).length === 0) {
        for (const p of opts.defaultPublicPools ?? []) {
          const cidr = fabric.parsePoolCidr(p);
          c.checkAddressPlan(cidr, 'public pool');
          await fabric.insertPool(c, tx, cidr);
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
    if (this.txs.ambient() !== undefined) return fn();
    return this.txs.write(() => fn());
  }

  async events(opts: EventQuery = {}): Promise<EventView[]> {
    return (await this.txs.read((r) => r.events(opts))).map(toEventView);
  }

  // The operations, each in the module of its resource.

  readonly createSubscription: Op<typeof subscriptions.createSubscription> = (...a) =>
    subscriptions.createSubscription(this.ctx, ...a);
  readonly deleteSubscription: Op<typeof subscriptions.deleteSubscription> = (...a) =>
    subscriptions.deleteSubscription(this.ctx, ...a);
  readonly listSubscriptions: Op<typeof subscriptions.listSubscriptions> = () =>
    subscriptions.listSubscriptions(this.ctx);

  readonly addPublicPool: Op<typeof fabric.addPublicPool> = (...a) => fabric.addPublicPool(this.ctx, ...a);
  readonly deletePublicPool: Op<typeof fabric.deletePublicPool> = (...a) =>
    fabric.deletePublicPool(this.ctx, ...a);
  readonly listPools: Op<typeof fabric.listPools> = () => fabric.listPools(this.ctx);
  readonly addHost: Op<typeof fabric.addHost> = (...a) => fabric.addHost(this.ctx, ...a);
  readonly listHosts: Op<typeof fabric.listHosts> = () => fabric.listHosts(this.ctx);
  readonly maintenance: Op<typeof fabric.maintenance> = (...a) => fabric.maintenance(this.ctx, ...a);

  readonly createVnet: Op<typeof networks.createVnet> = (...a) => networks.createVnet(this.ctx, ...a);
  readonly addSubnet: Op<typeof networks.addSubnet> = (...a) => networks.addSubnet(this.ctx, ...a);
  readonly deleteSubnet: Op<typeof networks.deleteSubnet> = (...a) => networks.deleteSubnet(this.ctx, ...a);
  readonly setVnetPolicy: Op<typeof networks.setVnetPolicy> = (...a) =>
    networks.setVnetPolicy(this.ctx, ...a);
  readonly deleteVnet: Op<typeof networks.deleteVnet> = (...a) => networks.deleteVnet(this.ctx, ...a);
  readonly listVnets: Op<typeof networks.listVnets> = (...a) => networks.listVnets(this.ctx, ...a);
  readonly getVnet: Op<typeof networks.getVnet> = (...a) => networks.getVnet(this.ctx, ...a);

  readonly createReservedIp: Op<typeof reservedIps.createReservedIp> = (...a) =>
    reservedIps.createReservedIp(this.ctx, ...a);
  readonly deleteReservedIp: Op<typeof reservedIps.deleteReservedIp> = (...a) =>
    reservedIps.deleteReservedIp(this.ctx, ...a);
  readonly associateReservedIp: Op<typeof reservedIps.associateReservedIp> = (...a) =>
    reservedIps.associateReservedIp(this.ctx, ...a);
  readonly disassociateReservedIp: Op<typeof reservedIps.disassociateReservedIp> = (...a) =>
    reservedIps.disassociateReservedIp(this.ctx, ...a);
  readonly reserveServiceVip: Op<typeof reservedIps.reserveServiceVip> = (...a) =>
    reservedIps.reserveServiceVip(this.ctx, ...a);
  readonly listReservedIps: Op<typeof reservedIps.listReservedIps> = (...a) =>
    reservedIps.listReservedIps(this.ctx, ...a);

  readonly createService: Op<typeof services.createService> = (...a) =>
    services.createService(this.ctx, ...a);
  readonly deleteService: Op<typeof services.deleteService> = (...a) =>
    services.deleteService(this.ctx, ...a);
  readonly listServices: Op<typeof services.listServices> = (...a) => services.listServices(this.ctx, ...a);
  readonly getService: Op<typeof services.getService> = (...a) => services.getService(this.ctx, ...a);

  readonly listImages: Op<typeof images.listImages> = () => images.listImages(this.ctx);
  readonly getImage: Op<typeof images.getImage> = (...a) => images.getImage(this.ctx, ...a);
  readonly createImage: Op<typeof images.createImage> = (...a) => images.createImage(this.ctx, ...a);
  readonly updateImage: Op<typeof images.updateImage> = (...a) => images.updateImage(this.ctx, ...a);
  readonly deleteImage: Op<typeof images.deleteImage> = (...a) => images.deleteImage(this.ctx, ...a);

  readonly createVm: Op<typeof vms.createVm> = (...a) => vms.createVm(this.ctx, ...a);
  readonly updateVm: Op<typeof vms.updateVm> = (...a) => vms.updateVm(this.ctx, ...a);
  readonly vmOperation: Op<typeof vms.vmOperation> = (...a) => vms.vmOperation(this.ctx, ...a);
  readonly listVms: Op<typeof vms.listVms> = (...a) => vms.listVms(this.ctx, ...a);
  readonly getVm: Op<typeof vms.getVm> = (...a) => vms.getVm(this.ctx, ...a);
}
