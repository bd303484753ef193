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

/** An address range of the book: a public pool or a subnet, by its id. */
export type Scope = { kind: 'pool'; id: number } | { kind: 'subnet'; id: number };

export const poolScope = (id: number): Scope => ({ kind: 'pool', id });
export const subnetScope = (id: number): Scope => ({ kind: 'subnet', id });

/** A scope as the store keeps it (`address_bindings.scope`) and the log carries it: `pool:7`. */
export function formatScope(s: Scope): string {
  return `${s.kind}:${s.id}`;
}

export function parseScope(text: string): Scope {
  const m = /^(pool|subnet):(\d+)$/.exec(text);
  if (m === null) throw new VipdipError('INVALID_ARGUMENT', `no address range ${text}`);
  return { kind: m[1] as Scope['kind'], id: Number(m[2]) };
}

export interface Owner {
  owner: string;
  /**
   * `static`: a VM's static DIP, bound from the VM's creation to its deletion whatever its state
   * (SPEC R4, I5), so that no dynamic draw can take it while the VM is deallocated.
   */
  kind: 'dip' | 'static' | 'vip' | 'ilpip' | 'reserved';
}

/** One change to the indexes: bind and unbind an address, add a pool or a subnet, drop a range. */
export type BookChange =
  | { op: 'bind'; scope: Scope; address: Ipv4 }
  | { op: 'unbind'; scope: Scope; address: Ipv4 }
  | { op: 'add-pool'; id: number; cidr: string }
  | { op: 'add-subnet'; id: number; label: string; cidr: string }
  | { op: 'drop'; scope: Scope };

/**
 * The stored form of the changes, kept with the first event of their transaction: short tagged
 * tuples (`['b', 'pool:1', 2130706433]`). Stored logs are read forever, so it never changes.
 */
type StoredChange =
  | ['b', string, Ipv4]
  | ['u', string, Ipv4]
  | ['p', number, string]
  | ['s', number, string, string]
  | ['x', string];

export function encodeChanges(changes: readonly BookChange[]): string {
  const stored = changes.map((c): StoredChange => {
    switch (c.op) {
      case 'bind':
        return ['b', formatScope(c.scope), c.address];
      case 'unbind':
        return ['u', formatScope(c.scope), c.address];
      case 'add-pool':
        return ['p', c.id, c.cidr];
      case 'add-subnet':
        return ['s', c.id, c.label, c.cidr];
      case 'drop':
        return ['x', formatScope(c.scope)];
    }
  });
  return JSON.stringify(stored);
}

export function decodeChanges(text: string): BookChange[] {
  return (JSON.parse(text) as StoredChange[]).map((c): BookChange => {
    switch (c[0]) {
      case 'b':
        return { op: 'bind', scope: parseScope(c[1]), address: c[2] };
      case 'u':
        return { op: 'unbind', scope: parseScope(c[1]), address: c[2] };
      case 'p':
        return { op: 'add-pool', id: c[1], cidr: c[2] };
      case 's':
        return { op: 'add-subnet', id: c[1], label: c[2], cidr: c[3] };
      case 'x':
        return { op: 'drop', scope: parseScope(c[1]) };
    }
  });
}

/** What the book needs of the transaction it works in. */
export interface BookTx {
  readonly repo: Repo;
  /** Records a change that every replica applies to its indexes once the transaction commits. */
  record(change: BookChange): void;
}

export class AddressBook {
  /** By the scope's stored form (`pool:7`). */
  private readonly ranges = new Map<string, AddressRange>();
  /** Public pools in the order VIPs are drawn from them. */
  private poolOrder: Scope[] = [];
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
        if (r.contains(address) && r.isFree(address)) r.take(address);
      }
    }
    return book;
  }

  addPool(id: number, cidr: Cidr): void {
    const scope = poolScope(id);
    const key = formatScope(scope);
    if (this.ranges.has(key)) return;
    this.ranges.set(key, new AddressRange(`public pool ${formatCidr(cidr)}`, cidr, POOL_RESERVATION));
    this.poolOrder.push(scope);
  }

  addSubnet(id: number, label: string, cidr: Cidr): void {
    const key = formatScope(subnetScope(id));
    if (this.ranges.has(key)) return;
    this.ranges.set(key, new AddressRange(label, cidr, SUBNET_RESERVATION));
  }

  remove(scope: Scope): void {
    this.ranges.delete(formatScope(scope));
    this.poolOrder = this.poolOrder.filter((s) => s.kind !== scope.kind || s.id !== scope.id);
  }

  /** A new pool, usable at once by its own transaction, by everyone once committed. */
  createPool(tx: BookTx, id: number, cidr: Cidr): void {
    this.addPool(id, cidr);
    tx.record({ op: 'add-pool', id, cidr: formatCidr(cidr) });
    tx.repo.onRollback(() => this.remove(poolScope(id)));
  }

  createSubnet(tx: BookTx, id: number, label: string, cidr: Cidr): void {
    this.addSubnet(id, label, cidr);
    tx.record({ op: 'add-subnet', id, label, cidr: formatCidr(cidr) });
    tx.repo.onRollback(() => this.remove(subnetScope(id)));
  }

  /** Drops a deleted pool or subnet's index when its transaction commits. */
  dropRange(tx: BookTx, scope: Scope): void {
    tx.record({ op: 'drop', scope });
  }

  range(scope: Scope): AddressRange {
    const r = this.ranges.get(formatScope(scope));
    if (r === undefined) throw new VipdipError('NOT_FOUND', `no address range ${formatScope(scope)}`);
    return r;
  }

  /**
   * The index of a range, loaded from the store when this replica has not seen it yet (another
   * replica created it a moment ago).
   */
  async ensure(repo: Repo, scope: Scope): Promise<AddressRange> {
    const key = formatScope(scope);
    const known = this.ranges.get(key);
    if (known !== undefined) return known;
    if (scope.kind === 'pool') {
      const pool = (await repo.pools()).find((p) => p.id === scope.id);
      if (pool === undefined) throw new VipdipError('NOT_FOUND', `no address range ${key}`);
      this.addPool(scope.id, parseCidr(pool.cidr));
    } else {
      const subnet = await repo.subnetById(scope.id);
      if (subnet === undefined) throw new VipdipError('NOT_FOUND', `no address range ${key}`);
      const vnet = await repo.vnetById(subnet.vnet_id);
      this.addSubnet(scope.id, `subnet ${vnet?.name ?? '?'}/${subnet.name}`, parseCidr(subnet.cidr));
    }
    const range = this.range(scope);
    range.resetTo(await repo.boundAddresses(key));
    return range;
  }

  /** Every range, by its scope's stored form (`pool:7`, as the store's bindings name it). */
  allRanges(): ReadonlyMap<string, AddressRange> {
    return this.ranges;
  }

  /** The pool that holds an address, if any. */
  poolOf(ip: Ipv4): Scope | undefined {
    return this.poolOrder.find((s) => this.range(s).contains(ip));
  }

  /**
   * Draws a free address of a range and binds it in the store. A candidate the store refuses
   * (another replica bound it) stays taken here and another is drawn, so the draw stays uniform
   * among the addresses the store really has free; the range is reloaded from the store whenever
   * refusals repeat or it looks full, and only a range the store confirms full, on a reload made
   * after the last refusal, is exhausted. (A concurrent redeploy holds a second address for a
   * moment: a range that looked full once may have a free address again by the next reload.)
   */
  async draw(tx: BookTx, scope: Scope, policy: AllocationPolicy, who: Owner): Promise<Ipv4> {
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
        tx.record({ op: 'bind', scope, address: ip });
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

  /** Draws a public address from the first pool that has a free one; says which pool. */
  async drawPublic(tx: BookTx, who: Owner): Promise<{ ip: Ipv4; poolId: number }> {
    for (let pass = 0; pass < 2; pass++) {
      for (const scope of [...this.poolOrder]) {
        if (this.ranges.get(formatScope(scope))?.freeCount === 0 && pass === 0) continue;
        try {
          return { ip: await this.draw(tx, scope, 'random', who), poolId: scope.id };
        } catch (e) {
          if (!isVipdipError(e, 'POOL_EXHAUSTED')) throw e;
        }
      }
      // Every pool looks full here: learn the pools another replica may have added, then ask the
      // store about each (draw reloads a range that looks full before giving up on it).
      if (pass === 0) for (const p of await tx.repo.pools()) await this.ensure(tx.repo, poolScope(p.id));
    }
    const names = this.poolOrder.map((s) => this.range(s).label).join(', ') || 'no public pool';
    throw new VipdipError('POOL_EXHAUSTED', `${names}: no free public address`, { pool: names });
  }

  /** Binds a chosen address (a static DIP): refused when outside, reserved, or taken. */
  async claim(tx: BookTx, scope: Scope, ip: Ipv4, who: Owner): Promise<void> {
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
    tx.record({ op: 'bind', scope, address: ip });
    repo.onRollback(() => {
      if (!range.isFree(ip)) range.release(ip);
    });
  }

  /**
   * Makes sure a static DIP is held by its VM: nothing to do when the reservation is there (the
   * common case, one read); a VM whose reservation is missing (made before static DIPs were
   * reserved) claims it now, and is refused if someone else holds the address.
   */
  async holdStatic(tx: BookTx, scope: Scope, ip: Ipv4, who: Owner): Promise<void> {
    const holder = await tx.repo.bindingOwner(formatScope(scope), ip);
    if (holder === who.owner) return;
    await this.claim(tx, scope, ip, who);
  }

  /**
   * Releases an address only if `owner` holds it (a static DIP whose reservation may be missing):
   * another owner's binding of the same address is left alone.
   */
  async freeOwned(tx: BookTx, scope: Scope, ip: Ipv4, owner: string): Promise<void> {
    if (await tx.repo.unbindOwned(formatScope(scope), ip, owner))
      tx.record({ op: 'unbind', scope, address: ip });
  }

  /** Hands a bound address to another owner (a provisional binding made final), in the store. */
  async rebind(tx: BookTx, scope: Scope, ip: Ipv4, who: Owner): Promise<void> {
    await tx.repo.rebind(formatScope(scope), ip, who.owner, who.kind);
  }

  /** Refuses an address that is outside a range or among its reserved ones. */
  async check(repo: Repo, scope: Scope, ip: Ipv4): Promise<void> {
    (await this.ensure(repo, scope)).check(ip);
  }

  /**
   * Releases a bound address in the store. The index gives it back when the transaction commits
   * (so an address released and then rolled back is never handed out meanwhile).
   */
  async free(tx: BookTx, scope: Scope, ip: Ipv4): Promise<void> {
    await tx.repo.unbind(formatScope(scope), ip);
    tx.record({ op: 'unbind', scope, address: ip });
  }

  /** How many addresses the store has bound in a range (not this replica's index: the store's). */
  boundInStore(repo: Repo, scope: Scope): Promise<number> {
    return repo.boundCount(formatScope(scope));
  }

  /** Applies the changes of a committed transaction, this replica's or another's. */
  apply(changes: readonly BookChange[]): void {
    for (const c of changes) {
      switch (c.op) {
        case 'bind': {
          const r = this.ranges.get(formatScope(c.scope));
          const ip = c.address;
          if (r !== undefined && r.contains(ip) && !r.isReserved(ip) && r.isFree(ip)) r.take(ip);
          break;
        }
        case 'unbind': {
          const r = this.ranges.get(formatScope(c.scope));
          const ip = c.address;
          if (r !== undefined && r.contains(ip) && !r.isReserved(ip) && !r.isFree(ip)) r.release(ip);
          break;
        }
        case 'add-pool':
          this.addPool(c.id, parseCidr(c.cidr));
          break;
        case 'add-subnet':
          this.addSubnet(c.id, c.label, parseCidr(c.cidr));
          break;
        case 'drop':
          this.remove(c.scope);
          break;
      }
    }
  }

  /** Makes a range hold exactly what the store has bound (as this transaction sees it). */
  private async reload(repo: Repo, scope: Scope, range: AddressRange): Promise<void> {
    this.resyncs++;
    range.resetTo(await repo.boundAddresses(formatScope(scope)));
  }
}

/** Binds in the store; if the store fails outright, the index gives the address back. */
async function bindOrUndo(
  repo: Repo,
  range: AddressRange,
  scope: Scope,
  ip: Ipv4,
  who: Owner,
): Promise<boolean> {
  try {
    return await repo.bind({ scope: formatScope(scope), address: ip, ...who });
  } catch (e) {
    if (!range.isFree(ip)) range.release(ip);
    throw e;
  }
}
