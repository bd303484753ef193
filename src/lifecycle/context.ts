/**
 * What every resource module of the lifecycle works with: the store and its transactions, the
 * address book, the host loads, and the options the Cloud was opened with. `Cloud` builds one and
 * hands it to the modules (vms.ts, services.ts, …), which are plain functions over it.
 */
import type { Clock } from '../core/clock.ts';
import { VipdipError } from '../core/errors.ts';
import { formatIpv4, type Cidr, type Ipv4 } from '../core/ip.ts';
import type { Random } from '../core/random.ts';
import type { Repo, SubscriptionRow } from '../store/index.ts';
import type { AddressBook } from './address-book.ts';
import type { DnsZones } from './dns-names.ts';
import type { HostLoads } from './host-loads.ts';
import type { Tx } from './tx.ts';

export interface Ctx {
  readonly book: AddressBook;
  readonly hostLoads: HostLoads;
  readonly random: Random;
  readonly clock: Clock;
  readonly zones: DnsZones;
  /** The data-plane driver's say on an address block (see CloudOptions.checkAddressPlan). */
  readonly checkAddressPlan: (cidr: Cidr, what: string) => void;
  /** Runs `fn` in a write transaction, or in the batch's the caller runs inside. */
  write<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Reads, seeing the batch's uncommitted writes when inside one. */
  read<T>(fn: (repo: Repo) => Promise<T>): Promise<T>;
  /** Whether the caller runs inside a batch (or an operation) of this Cloud. */
  inBatch(): boolean;
}

/** What operations need of a subscription. */
export type SubRef = Pick<SubscriptionRow, 'id' | 'name'>;

/** An address as the API and the events show it. */
export const ip = (n: Ipv4 | null): string | null => (n === null ? null : formatIpv4(n));

export function notFound(what: string): never {
  throw new VipdipError('NOT_FOUND', `${what} does not exist`);
}
