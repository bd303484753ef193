/**
 * The in-memory allocation indexes of every pool and subnet, kept in step with the store. An index
 * proposes an address; the store's UNIQUE constraint decides inside the same transaction; a rollback
 * puts the index back as it was.
 */
import { VipdipError } from '../core/errors.ts';
import { formatCidr, parseCidr, type Cidr, type Ipv4 } from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import { AddressRange, POOL_RESERVATION, SUBNET_RESERVATION, type AllocationPolicy } from '../ipam/index.ts';
import type { Repo } from '../store/index.ts';

/** How often a draw that the database refuses (bound by another replica) is retried. */
const MAX_DRAWS = 16;

export const poolScope = (id: number) => `pool:${id}`;
export const subnetScope = (id: number) => `subnet:${id}`;

export interface Owner {
  owner: string;
  kind: 'dip' | 'vip' | 'ilpip' | 'reserved';
}

export class AddressBook {
  private readonly ranges = new Map<string, AddressRange>();
  /** Public pool scopes in the order VIPs are drawn from them. */
  private poolOrder: string[] = [];

  constructor(private readonly random: Random) {}

  /** Rebuilds every index from the store: the database is the truth. */
  static async load(repo: Repo, random: Random): Promise<AddressBook> {
    const book = new AddressBook(random);
    for (const p of await repo.pools()) book.addPool(p.id, parseCidr(p.cidr));
    for (const s of await repo.subnets()) {
      const vnet = await repo.vnetById(s.vnet_id);
      book.addSubnet(s.id, `subnet ${vnet?.name ?? '?'}/${s.name}`, parseCidr(s.cidr));
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
    this.ranges.set(scope, new AddressRange(`public pool ${formatCidr(cidr)}`, cidr, POOL_RESERVATION));
    this.poolOrder.push(scope);
  }

  addSubnet(id: number, label: string, cidr: Cidr): void {
    this.ranges.set(subnetScope(id), new AddressRange(label, cidr, SUBNET_RESERVATION));
  }

  remove(scope: string): void {
    this.ranges.delete(scope);
    this.poolOrder = this.poolOrder.filter((s) => s !== scope);
  }

  range(scope: string): AddressRange {
    const r = this.ranges.get(scope);
    if (r === undefined) throw new VipdipError('NOT_FOUND', `no address range ${scope}`);
    return r;
  }

  allRanges(): ReadonlyMap<string, AddressRange> {
    return this.ranges;
  }

  /** The pool scope that holds an address, if any. */
  poolOf(ip: Ipv4): string | undefined {
    return this.poolOrder.find((s) => this.ranges.get(s)!.contains(ip));
  }

  /** Draws a free address of a range and binds it in the store. */
  async draw(repo: Repo, scope: string, policy: AllocationPolicy, who: Owner): Promise<Ipv4> {
    const range = this.range(scope);
    for (let i = 0; i < MAX_DRAWS; i++) {
      const ip = range.allocate(policy, this.random);
      if (await bindOrUndo(repo, range, scope, ip, who)) {
        repo.onRollback(() => range.release(ip));
        return ip;
      }
      // The database already has it bound (another replica took it): it stays taken here too.
    }
    throw new VipdipError('CONFLICT', `could not bind an address of ${range.label} after ${MAX_DRAWS} draws`);
  }

  /** Draws a public address from the first pool that has a free one. */
  async drawPublic(repo: Repo, who: Owner): Promise<{ ip: Ipv4; scope: string }> {
    for (const scope of this.poolOrder) {
      if (this.ranges.get(scope)!.freeCount > 0) {
        return { ip: await this.draw(repo, scope, 'random', who), scope };
      }
    }
    const names = this.poolOrder.map((s) => this.ranges.get(s)!.label).join(', ') || 'no public pool';
    throw new VipdipError('POOL_EXHAUSTED', `${names}: no free public address`, { pool: names });
  }

  /** Binds a chosen address (a static DIP): refused when outside, reserved, or taken. */
  async claim(repo: Repo, scope: string, ip: Ipv4, who: Owner): Promise<void> {
    const range = this.range(scope);
    range.take(ip);
    if (!(await bindOrUndo(repo, range, scope, ip, who))) {
      throw new VipdipError('ADDRESS_TAKEN', `${range.label}: the address is already bound`);
    }
    repo.onRollback(() => range.release(ip));
  }

  /** Releases a bound address in the store and the index. */
  async free(repo: Repo, scope: string, ip: Ipv4): Promise<void> {
    const range = this.range(scope);
    await repo.unbind(scope, ip);
    if (!range.isFree(ip)) {
      range.release(ip);
      repo.onRollback(() => range.take(ip));
    }
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
    range.release(ip);
    throw e;
  }
}
