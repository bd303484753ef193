/**
 * The in-memory allocation indexes of every pool and subnet: a cache of `address_bindings` that
 * proposes addresses, while the store's UNIQUE key decides inside the same transaction.
 *
 * Several replicas may write the same database, so the cache follows the log: every transaction
 * records the changes it makes to the indexes (`BookChange`), the store keeps them with its events,
 * and each replica applies every committed transaction's changes in sequence order (its own when
 * they commit, the others' as it reads them; see feed.ts). Inside a transaction a draw takes its
 * address at once (a reservation, undone on rollback), while a release waits for the commit. When
 * the cache is behind, the database says so: a draw it refuses is marked taken and drawn again, and
 * before a pool is called exhausted, or a static address taken, the cache is checked against the
 * store and brought up to date.
 */
import { VipdipError, isVipdipError } from '../core/errors.ts';
import { formatCidr, formatIpv4, parseCidr, type Cidr, type Ipv4 } from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import { AddressRange, POOL_RESERVATION, SUBNET_RESERVATION, type AllocationPolicy } from '../ipam/index.ts';
import type { Repo } from '../store/index.ts';

/**
 * How often one allocation draws again after the database refused a candidate: each refusal means
 * another writer committed a binding meanwhile, so the bound is only reached under a storm of them.
 */
const MAX_DRAWS = 64;
/** After this many refusals in a row the range is reloaded from the store before drawing on. */
const RESYNC_AFTER_REFUSALS = 3;

export const poolScope = (id: number) => `pool:${id}`;
export const subnetScope = (id: number) => `subnet:${id}`;

export interface Owner {
  owner: string;
  /**
   * `static`: a VM's static DIP, bound from the VM's creation to its deletion whatever its state
   * (SPEC R4, I5), so that no dynamic draw can take it while the VM is deallocated.
   */
  kind: 'dip' | 'static' | 'vip' | 'ilpip' | 'reserved';
}

/**
 * One change to the indexes, as stored with the events of its transaction: bind and unbind an
 * address, add a pool or a subnet, remove a range.
 */
export type BookChange =
  | ['b', string, number]
  | ['u', string, number]
  | ['p', number, string]
  | ['s', number, string, string]
  | ['x', string];

/** What the book needs of the transaction it works in. */
export interface BookTx {
  readonly repo: Repo;
  /** Records a change that every replica applies to its indexes once the transaction commits. */
  record(change: BookChange): void;
}

export class AddressBook {
  private readonly ranges = new Map<string, AddressRange>();
  /** Public pool scopes in the order VIPs are drawn from them. */
  private poolOrder: string[] = [];
  /** How often the cache was found behind the store and reloaded (for tests and metrics). */
  resyncs = 0;
  /** Candidates the database refused because another writer held them. */
  refusals = 0;

  constructor(private readonly random: Random) {}

  /** Rebuilds every index from the store (in one snapshot, with the log position it matches). */
  static async load(repo: Repo, random: Random): Promise<AddressBook> {
    const book = new AddressBook(random);
    for (const p of await repo.pools()) book.addPool(p.id, parseCidr(p.cidr));
    const vnets = new Map((await repo.vnets()).map((v) => [v.id, v.name]));
    for (const s of await repo.subnets()) {
      book.addSubnet(s.id, `subnet ${vnets.get(s.vnet_id) ?? '?'}/${s.name}`, parseCidr(s.cidr));
    }
    for (const [scope, r] of book.ranges) {
      for (const address of await repo.boundAddresses(scope)) {
        if (r.contains(address as Ipv4) && r.isFree(address as Ipv4)) r.take(address as Ipv4);
      }
    }
    return book;
  }

  addPool(id: number, cidr: Cidr): void {
    const scope = poolScope(id);
    if (this.ranges.has(scope)) return;
    this.ranges.set(scope, new AddressRange(`public pool ${formatCidr(cidr)}`, cidr, POOL_RESERVATION));
    this.poolOrder.push(scope);
  }

  addSubnet(id: number, label: string, cidr: Cidr): void {
    const scope = subnetScope(id);
    if (this.ranges.has(scope)) return;
    this.ranges.set(scope, new AddressRange(label, cidr, SUBNET_RESERVATION));
  }

  remove(scope: string): void {
    this.ranges.delete(scope);
    this.poolOrder = this.poolOrder.filter((s) => s !== scope);
  }

  /** A new pool, usable at once by its own transaction, by everyone once committed. */
  createPool(tx: BookTx, id: number, cidr: Cidr): void {
    this.addPool(id, cidr);
    tx.record(['p', id, formatCidr(cidr)]);
    tx.repo.onRollback(() => this.remove(poolScope(id)));
  }

  createSubnet(tx: BookTx, id: number, label: string, cidr: Cidr): void {
    this.addSubnet(id, label, cidr);
    tx.record(['s', id, label, formatCidr(cidr)]);
    tx.repo.onRollback(() => this.remove(subnetScope(id)));
  }

  /** Drops a deleted pool or subnet's index when its transaction commits. */
  dropRange(tx: BookTx, scope: string): void {
    tx.record(['x', scope]);
  }

  range(scope: string): AddressRange {
    const r = this.ranges.get(scope);
    if (r === undefined) throw new VipdipError('NOT_FOUND', `no address range ${scope}`);
    return r;
  }

  /**
   * The index of a range, loaded from the store when this replica has not seen it yet (another
   * replica created it a moment ago).
   */
  async ensure(repo: Repo, scope: string): Promise<AddressRange> {
    const known = this.ranges.get(scope);
    if (known !== undefined) return known;
    const [kind, idText] = scope.split(':');
    const id = Number(idText);
    if (kind === 'pool') {
      const pool = (await repo.pools()).find((p) => p.id === id);
      if (pool === undefined) throw new VipdipError('NOT_FOUND', `no address range ${scope}`);
      this.addPool(id, parseCidr(pool.cidr));
    } else {
      const subnet = await repo.subnetById(id);
      if (subnet === undefined) throw new VipdipError('NOT_FOUND', `no address range ${scope}`);
      const vnet = await repo.vnetById(subnet.vnet_id);
      this.addSubnet(id, `subnet ${vnet?.name ?? '?'}/${subnet.name}`, parseCidr(subnet.cidr));
    }
    const range = this.range(scope);
    range.resetTo(await repo.boundAddresses(scope));
    return range;
  }

  allRanges(): ReadonlyMap<string, AddressRange> {
    return this.ranges;
  }

  /** The pool scope that holds an address, if any. */
  poolOf(ip: Ipv4): string | undefined {
    return this.poolOrder.find((s) => this.ranges.get(s)!.contains(ip));
  }

  /**
   * Draws a free address of a range and binds it in the store. A candidate the store refuses
   * (another replica bound it) stays taken here and another is drawn, so the draw stays uniform
   * among the addresses the store really has free; the range is reloaded from the store whenever
   * refusals repeat or it looks full, and only a range the store confirms full, on a reload made
   * after the last refusal, is exhausted. (A concurrent redeploy holds a second address for a
   * moment: a range that looked full once may have a free address again by the next reload.)
   */
  async draw(tx: BookTx, scope: string, policy: AllocationPolicy, who: Owner): Promise<Ipv4> {
    const repo = tx.repo;
    const range = await this.ensure(repo, scope);
    let refusedInRow = 0;
    for (let i = 0; i < MAX_DRAWS; i++) {
      if (range.freeCount === 0 || refusedInRow >= RESYNC_AFTER_REFUSALS) {
        await this.reload(repo, scope, range);
        refusedInRow = 0;
        if (range.freeCount === 0) {
          throw new VipdipError('POOL_EXHAUSTED', `${range.label} has no free address`, {
            pool: range.label,
          });
        }
      }
      const ip = range.allocate(policy, this.random);
      if (await bindOrUndo(repo, range, scope, ip, who)) {
        tx.record(['b', scope, ip]);
        repo.onRollback(() => {
          if (!range.isFree(ip)) range.release(ip);
        });
        return ip;
      }
      // The store has it bound already (another replica took it): it stays taken here too.
      this.refusals++;
      refusedInRow++;
    }
    throw new VipdipError('CONFLICT', `could not bind an address of ${range.label} after ${MAX_DRAWS} draws`);
  }

  /** Draws a public address from the first pool that has a free one. */
  async drawPublic(tx: BookTx, who: Owner): Promise<{ ip: Ipv4; scope: string }> {
    for (let pass = 0; pass < 2; pass++) {
      for (const scope of [...this.poolOrder]) {
        if (this.ranges.get(scope)?.freeCount === 0 && pass === 0) continue;
        try {
          return { ip: await this.draw(tx, scope, 'random', who), scope };
        } catch (e) {
          if (!isVipdipError(e, 'POOL_EXHAUSTED')) throw e;
        }
      }
      // Every pool looks full here: learn the pools another replica may have added, then ask the
      // store about each (draw reloads a range that looks full before giving up on it).
      if (pass === 0) for (const p of await tx.repo.pools()) await this.ensure(tx.repo, poolScope(p.id));
    }
    const names = this.poolOrder.map((s) => this.ranges.get(s)!.label).join(', ') || 'no public pool';
    throw new VipdipError('POOL_EXHAUSTED', `${names}: no free public address`, { pool: names });
  }

  /** Binds a chosen address (a static DIP): refused when outside, reserved, or taken. */
  async claim(tx: BookTx, scope: string, ip: Ipv4, who: Owner): Promise<void> {
    const repo = tx.repo;
    const range = await this.ensure(repo, scope);
    range.check(ip);
    const taken = () =>
      new VipdipError('ADDRESS_TAKEN', `${formatIpv4(ip)} is already bound in ${range.label}`, {
        address: formatIpv4(ip),
      });
    if (!range.isFree(ip)) {
      // Taken here; the store decides whether it still is (another replica may have released it).
      await this.reload(repo, scope, range);
      if (!range.isFree(ip)) throw taken();
    }
    range.take(ip);
    if (!(await bindOrUndo(repo, range, scope, ip, who))) throw taken();
    tx.record(['b', scope, ip]);
    repo.onRollback(() => {
      if (!range.isFree(ip)) range.release(ip);
    });
  }

  /**
   * Makes sure a static DIP is held by its VM: nothing to do when the reservation is there (the
   * common case, one read); a VM whose reservation is missing (made before static DIPs were
   * reserved) claims it now, and is refused if someone else holds the address.
   */
  async holdStatic(tx: BookTx, scope: string, ip: Ipv4, who: Owner): Promise<void> {
    const holder = await tx.repo.bindingOwner(scope, ip);
    if (holder === who.owner) return;
    await this.claim(tx, scope, ip, who);
  }

  /**
   * Releases an address only if `owner` holds it (a static DIP whose reservation may be missing):
   * another owner's binding of the same address is left alone.
   */
  async freeOwned(tx: BookTx, scope: string, ip: Ipv4, owner: string): Promise<void> {
    if (await tx.repo.unbindOwned(scope, ip, owner)) tx.record(['u', scope, ip]);
  }

  /** Refuses an address that is outside a range or among its reserved ones. */
  async check(repo: Repo, scope: string, ip: Ipv4): Promise<void> {
    (await this.ensure(repo, scope)).check(ip);
  }

  /**
   * Releases a bound address in the store. The index gives it back when the transaction commits
   * (so an address released and then rolled back is never handed out meanwhile).
   */
  async free(tx: BookTx, scope: string, ip: Ipv4): Promise<void> {
    await tx.repo.unbind(scope, ip);
    tx.record(['u', scope, ip]);
  }

  /** Applies the changes of a committed transaction, this replica's or another's. */
  apply(changes: readonly BookChange[]): void {
    for (const c of changes) {
      switch (c[0]) {
        case 'b': {
          const r = this.ranges.get(c[1]);
          const ip = c[2] as Ipv4;
          if (r !== undefined && r.contains(ip) && !r.isReserved(ip) && r.isFree(ip)) r.take(ip);
          break;
        }
        case 'u': {
          const r = this.ranges.get(c[1]);
          const ip = c[2] as Ipv4;
          if (r !== undefined && r.contains(ip) && !r.isReserved(ip) && !r.isFree(ip)) r.release(ip);
          break;
        }
        case 'p':
          this.addPool(c[1], parseCidr(c[2]));
          break;
        case 's':
          this.addSubnet(c[1], c[2], parseCidr(c[3]));
          break;
        case 'x':
          this.remove(c[1]);
          break;
      }
    }
  }

  /** Makes a range hold exactly what the store has bound (as this transaction sees it). */
  private async reload(repo: Repo, scope: string, range: AddressRange): Promise<void> {
    this.resyncs++;
    range.resetTo(await repo.boundAddresses(scope));
  }
}

/** Binds in the store; if the store fails outright, the index gives the address back. */
async function bindOrUndo(
  repo: Repo,
  range: AddressRange,
  scope: string,
  ip: Ipv4,
  who: Owner,
): Promise<boolean> {
  try {
    return await repo.bind({ scope, address: ip, ...who });
  } catch (e) {
    if (!range.isFree(ip)) range.release(ip);
    throw e;
  }
}
