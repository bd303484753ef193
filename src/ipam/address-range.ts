import { VipdipError } from '../core/errors.ts';
import { blockSize, formatCidr, formatIpv4, type Cidr, type Ipv4 } from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import { FreeSet } from './free-set.ts';

export type AllocationPolicy = 'random' | 'sequential';
export const ALLOCATION_POLICIES: readonly AllocationPolicy[] = ['random', 'sequential'];

/** What becomes of a VM's DIP when the VM moves to another host: drawn again, or kept. */
export type MovePolicy = 'redraw' | 'keep';
export const MOVE_POLICIES: readonly MovePolicy[] = ['redraw', 'keep'];

/** What a range keeps back: Azure keeps the first four and the last address of every subnet. */
export interface Reservation {
  readonly head: number;
  readonly tail: number;
}

/** Azure subnets: network, gateway, two DNS addresses, and broadcast are never handed out. */
export const SUBNET_RESERVATION: Reservation = { head: 4, tail: 1 };
/** Public pools keep back only their network and broadcast addresses. */
export const POOL_RESERVATION: Reservation = { head: 1, tail: 1 };

/** The largest block an index is kept for (/8: 16 M addresses, 130 MiB of index at worst). */
export const MIN_INDEXED_PREFIX = 8;

/**
 * The in-memory allocation index of one pool or subnet. It draws candidates fast; the store confirms
 * each binding under a UNIQUE constraint, so the index is a cache of the truth, never the truth.
 */
export class AddressRange {
  private readonly set: FreeSet;
  /** The first usable address, and one past the last usable one. */
  private readonly first: number;
  private readonly end: number;
  /** One past the block's broadcast address. */
  private readonly blockEnd: number;

  constructor(
    /** Names the range in errors (`subnet shop-net/front`, `public pool 127.100.0.0/16`). */
    readonly label: string,
    readonly cidr: Cidr,
    readonly reservation: Reservation,
  ) {
    if (cidr.prefix < MIN_INDEXED_PREFIX) {
      throw new VipdipError('INVALID_CIDR', `${formatCidr(cidr)} is larger than /${MIN_INDEXED_PREFIX}`);
    }
    const usable = Math.max(0, blockSize(cidr.prefix) - reservation.head - reservation.tail);
    this.first = cidr.base + reservation.head;
    this.set = new FreeSet(usable);
    this.end = this.first + usable;
    this.blockEnd = cidr.base + blockSize(cidr.prefix);
  }

  get usable(): number {
    return this.set.size;
  }

  get freeCount(): number {
    return this.set.freeCount;
  }

  get boundCount(): number {
    return this.set.boundCount;
  }

  /** True for the addresses of the block that are never handed out. */
  isReserved(ip: Ipv4): boolean {
    return this.contains(ip) && (ip < this.first || ip >= this.end);
  }

  contains(ip: Ipv4): boolean {
    return ip >= this.cidr.base && ip < this.blockEnd;
  }

  isFree(ip: Ipv4): boolean {
    return this.set.isFree(ip - this.first);
  }

  /** Draws a free address: uniformly at random, or the lowest free one. */
  allocate(policy: AllocationPolicy, random: Random): Ipv4 {
    if (this.set.freeCount === 0) {
      throw new VipdipError('POOL_EXHAUSTED', `${this.label} has no free address`, { pool: this.label });
    }
    let offset: number;
    switch (policy) {
      case 'random':
        offset = this.set.takeAt(random.int(this.set.freeCount));
        break;
      case 'sequential':
        offset = this.takeLowest();
        break;
      default:
        throw new VipdipError('INVALID_ARGUMENT', `unknown allocation policy ${JSON.stringify(policy)}`);
    }
    return (this.first + offset) as Ipv4;
  }

  /** Binds a chosen address (a static DIP, or one the store already holds at start-up). */
  take(ip: Ipv4): void {
    this.check(ip);
    if (!this.set.take(ip - this.first)) {
      throw new VipdipError('ADDRESS_TAKEN', `${formatIpv4(ip)} is already bound in ${this.label}`, {
        address: formatIpv4(ip),
      });
    }
  }

  release(ip: Ipv4): void {
    this.check(ip);
    if (!this.set.release(ip - this.first)) {
      throw new VipdipError('CONFLICT', `${formatIpv4(ip)} is not bound in ${this.label}`);
    }
  }

  /**
   * Makes the index hold exactly these bound addresses (the store's, when the index fell behind),
   * in time proportional to the bound addresses before and after, not to the range's size.
   * Addresses outside the usable ones are ignored.
   */
  resetTo(bound: Iterable<number>): void {
    const want = new Set<number>();
    for (const a of bound) if (a >= this.first && a < this.end) want.add(a - this.first);
    for (const offset of this.set.boundOffsets()) if (!want.has(offset)) this.set.release(offset);
    for (const offset of want) this.set.take(offset);
  }

  /** Refuses an address outside the range or among its reserved ones, naming both. */
  check(ip: Ipv4): void {
    if (!this.contains(ip)) {
      throw new VipdipError(
        'ADDRESS_OUT_OF_RANGE',
        `${formatIpv4(ip)} is outside ${this.label} (${formatCidr(this.cidr)})`,
        { address: formatIpv4(ip) },
      );
    }
    if (this.isReserved(ip)) {
      throw new VipdipError('ADDRESS_RESERVED', `${formatIpv4(ip)} is a reserved address of ${this.label}`, {
        address: formatIpv4(ip),
      });
    }
  }

  private takeLowest(): number {
    const offset = this.set.lowestFree();
    this.set.take(offset);
    return offset;
  }
}
