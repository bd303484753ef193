/** The provider's fabric: public pools (where VIPs, ILPIPs and reserved IPs come from), hosts and racks, and their maintenance. */
import { VipdipError } from '../core/errors.ts';
import { cidrsOverlap, formatCidr, parseCidr, type Cidr } from '../core/ip.ts';
import { MIN_INDEXED_PREFIX } from '../ipam/index.ts';
import type { Repo, VmRow } from '../store/index.ts';
import { poolScope } from './address-book.ts';
import { notFound, type Ctx } from './context.ts';
import { events } from './events.ts';
import { checkName } from './names.ts';
import { isAllocated } from './transitions.ts';
import type { Tx } from './tx.ts';
import { moveVm } from './vm-addresses.ts';
import { vmView } from './vm-view.ts';
import type { HostView, PoolView, VmView } from './views.ts';

/** Without a fabric in the topology a state starts with two racks of two hosts each. */
export const DEFAULT_FABRIC: readonly { name: string; hosts: string[] }[] = [
  { name: 'rack1', hosts: ['rack1-host1', 'rack1-host2'] },
  { name: 'rack2', hosts: ['rack2-host1', 'rack2-host2'] },
];

/** A public pool's CIDR, within the sizes an index is kept for. */
export function parsePoolCidr(text: string): Cidr {
  const cidr = parseCidr(text);
  if (cidr.prefix < MIN_INDEXED_PREFIX || cidr.prefix > 30) {
    throw new VipdipError(
      'INVALID_CIDR',
      `public pool ${formatCidr(cidr)} must be between /${MIN_INDEXED_PREFIX} and /30`,
    );
  }
  return cidr;
}

export async function addPublicPool(c: Ctx, cidrText: string): Promise<PoolView> {
  const cidr = parsePoolCidr(cidrText);
  c.checkAddressPlan(cidr, 'public pool');
  return c.write(async (tx) => {
    const id = await insertPool(c, tx, cidr);
    return poolView(c, tx.repo, id, formatCidr(cidr));
  });
}

export async function insertPool(c: Ctx, tx: Tx, cidr: Cidr): Promise<number> {
  // The overlap check reads every pool: two writers adding pools take turns.
  await tx.repo.lockPools();
  for (const p of await tx.repo.pools()) {
    if (cidrsOverlap(parseCidr(p.cidr), cidr)) {
      throw new VipdipError('OVERLAP', `public pool ${formatCidr(cidr)} overlaps public pool ${p.cidr}`);
    }
  }
  const row = await tx.repo.insertPool({ cidr: formatCidr(cidr), base: cidr.base, prefix: cidr.prefix });
  c.book.createPool(tx, row.id, cidr);
  tx.emit(events.poolCreated(row.cidr));
  return row.id;
}

export async function deletePublicPool(c: Ctx, cidrText: string): Promise<void> {
  const cidr = formatCidr(parseCidr(cidrText));
  await c.write(async (tx) => {
    const pool = (await tx.repo.pools()).find((p) => p.cidr === cidr) ?? notFound(`public pool ${cidr}`);
    const scope = poolScope(pool.id);
    // The store, not this replica's index, says whether anything is still bound; a binding made
    // meanwhile by another replica has an owner row that refers to the pool, so the delete waits
    // for it and fails (and runs again).
    const bound = await c.book.boundInStore(tx.repo, scope);
    if (bound > 0) throw new VipdipError('IN_USE', `public pool ${cidr} still has ${bound} bound addresses`);
    await tx.repo.deletePool(pool.id);
    tx.emit(events.poolDeleted(cidr));
    c.book.dropRange(tx, scope);
  });
}

export function listPools(c: Ctx): Promise<PoolView[]> {
  return c.read(async (r) => {
    const out: PoolView[] = [];
    for (const p of await r.pools()) out.push(await poolView(c, r, p.id, p.cidr));
    return out;
  });
}

/** Counts from this replica's index: they follow the other replicas' changes within moments. */
async function poolView(c: Ctx, repo: Repo, id: number, cidr: string): Promise<PoolView> {
  const range = await c.book.ensure(repo, poolScope(id));
  return { cidr, usable: range.usable, bound: range.boundCount, free: range.freeCount };
}

export async function addHost(c: Ctx, name: string, rack: string): Promise<HostView> {
  checkName('host', name);
  checkName('rack', rack);
  return c.write(async (tx) => {
    if ((await tx.repo.hosts()).some((h) => h.name === name)) {
      throw new VipdipError('ALREADY_EXISTS', `host ${name} already exists`);
    }
    await insertHost(tx, name, rack);
    return { name, rack, vms: 0 };
  });
}

export async function insertHost(tx: Tx, name: string, rack: string): Promise<void> {
  await tx.repo.insertHost({ name, rack });
  tx.emit(events.hostCreated(name, rack));
}

export function listHosts(c: Ctx): Promise<HostView[]> {
  return c.read(async (r) => {
    const loads = await r.hostLoads();
    return (await r.hosts()).map((h) => ({ name: h.name, rack: h.rack, vms: loads.get(h.id) ?? 0 }));
  });
}

/**
 * Host or rack maintenance ("service healing"): every allocated VM on the hosts is moved to
 * another host outside them, its DIP redrawn per its network's policy (R5). All or nothing.
 * `opts.reason` replaces the events' reason (chaos names its run there).
 */
export async function maintenance(
  c: Ctx,
  target: { host: string } | { rack: string },
  opts: { reason?: string } = {},
): Promise<VmView[]> {
  return c.write(async (tx) => {
    const hosts = await tx.repo.hosts();
    const affected =
      'host' in target
        ? hosts.filter((h) => h.name === target.host)
        : hosts.filter((h) => h.rack === target.rack);
    const what = 'host' in target ? `host ${target.host}` : `rack ${target.rack}`;
    if (affected.length === 0) notFound(what);
    const exclude = new Set(affected.map((h) => h.id));
    const reason = opts.reason ?? `maintenance of ${what}`;
    tx.emit(
      events.hostMaintenance(
        target,
        affected.map((h) => h.name),
        reason,
      ),
    );
    const loads = await tx.repo.hostLoads();
    const moved: VmRow[] = [];
    for (const vm of await tx.repo.vms({ hostIds: [...exclude] }, { lock: true })) {
      if (!isAllocated(vm.state)) continue;
      await moveVm(c, tx, vm, hosts, loads, exclude, reason);
      moved.push(vm);
    }
    const views: VmView[] = [];
    for (const vm of moved) views.push(await vmView(tx.repo, c.zones, vm.id));
    return views;
  });
}
