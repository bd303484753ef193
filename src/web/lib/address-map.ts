/**
 * The map of a subnet's addresses the dashboard draws: which are reserved (Azure's first four and
 * the last), which are bound to a VM's DIP and which are free. Computed from the subnet's CIDR and
 * the DIPs of the VMs in it, so it needs no API of its own. A large subnet is drawn with several
 * addresses per cell, so the map stays a readable size.
 */
import { formatIpv4, parseCidr, tryParseIpv4, blockSize, type Ipv4 } from '../../core/index.ts';
import { SUBNET_RESERVATION } from '../../ipam/index.ts';

export type CellKind = 'reserved' | 'used' | 'free' | 'mixed';

export interface AddressCell {
  /** First and last address of the cell (the same for a cell of one address). */
  first: string;
  last: string;
  /** How many addresses the cell stands for, and how many of them are reserved or bound. */
  count: number;
  reserved: number;
  used: number;
  kind: CellKind;
  /** Who holds the bound addresses of the cell, as "address owner". */
  owners: string[];
}

export interface AddressMap {
  cidr: string;
  size: number;
  usable: number;
  used: number;
  free: number;
  reserved: number;
  /** Addresses per cell: 1 up to maxCells addresses, then a power of two. */
  perCell: number;
  cells: AddressCell[];
  /** Bound addresses given that do not lie in the subnet (not drawn; shown so nothing hides). */
  outside: string[];
}

export interface Binding {
  address: string;
  owner: string;
}

export const MAX_CELLS_DEFAULT = 256;

export function addressMap(
  cidrText: string,
  bindings: readonly Binding[],
  maxCells = MAX_CELLS_DEFAULT,
): AddressMap {
  const cidr = parseCidr(cidrText);
  const size = blockSize(cidr.prefix);
  const base = cidr.base as number;
  const head = Math.min(SUBNET_RESERVATION.head, size);
  const tail = Math.min(SUBNET_RESERVATION.tail, size - head);
  const isReserved = (offset: number) => offset < head || offset >= size - tail;

  const owners = new Map<number, string[]>();
  const outside: string[] = [];
  for (const b of bindings) {
    const ip = tryParseIpv4(b.address);
    const offset = ip === undefined ? -1 : ip - base;
    if (offset < 0 || offset >= size) {
      outside.push(`${b.address} ${b.owner}`);
      continue;
    }
    const list = owners.get(offset) ?? [];
    list.push(b.owner);
    owners.set(offset, list);
  }

  let perCell = 1;
  while (size / perCell > maxCells) perCell *= 2;
  // Bound addresses by cell, so the map costs O(cells + bindings) whatever the subnet's size.
  const byCell = new Map<number, number[]>();
  for (const o of owners.keys()) {
    const c = Math.floor(o / perCell);
    const list = byCell.get(c);
    if (list === undefined) byCell.set(c, [o]);
    else list.push(o);
  }
  const cells: AddressCell[] = [];
  let used = 0;
  for (let start = 0, c = 0; start < size; start += perCell, c++) {
    const count = Math.min(perCell, size - start);
    const end = start + count;
    const reserved =
      Math.max(0, Math.min(end, head) - start) + Math.max(0, end - Math.max(start, size - tail));
    let bound = 0;
    const who: string[] = [];
    for (const o of byCell.get(c) ?? []) {
      const addr = formatIpv4((base + o) as Ipv4);
      for (const name of owners.get(o)!) who.push(`${addr} ${name}`);
      if (!isReserved(o)) bound++;
    }
    used += bound;
    const kind: CellKind =
      reserved === count
        ? 'reserved'
        : bound === 0 && reserved === 0
          ? 'free'
          : reserved === 0 && bound === count
            ? 'used'
            : 'mixed';
    cells.push({
      first: formatIpv4((base + start) as Ipv4),
      last: formatIpv4((base + end - 1) as Ipv4),
      count,
      reserved,
      used: bound,
      kind,
      owners: who.sort(),
    });
  }
  const usable = Math.max(0, size - head - tail);
  return {
    cidr: cidrText,
    size,
    usable,
    used,
    free: usable - used,
    reserved: head + tail,
    perCell,
    cells,
    outside,
  };
}
