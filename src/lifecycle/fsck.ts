/**
 * `fsck`: checks invariants I1–I6 of SPEC.md against what the store holds, independently of the
 * in-memory indexes, and reports each finding as one line.
 */
import { blockSize, cidrContains, formatIpv4, parseCidr, type Cidr, type Ipv4 } from '../core/ip.ts';
import { POOL_RESERVATION, SUBNET_RESERVATION, type Reservation } from '../ipam/index.ts';
import type { BindingRow, Repo } from '../store/index.ts';
import { formatScope, poolScope, subnetScope } from './address-book.ts';
import { addressField } from './events.ts';
import { isVmState } from './transitions.ts';

export interface Finding {
  invariant: 'I1' | 'I2' | 'I3' | 'I4' | 'I5' | 'I6';
  resource: string;
  message: string;
}

export const formatFinding = (f: Finding) => `${f.invariant} ${f.resource}: ${f.message}`;

interface Range {
  scope: string;
  label: string;
  cidr: Cidr;
  reservation: Reservation;
}

const usable = (r: Range) => Math.max(0, blockSize(r.cidr.prefix) - r.reservation.head - r.reservation.tail);
const isReserved = (r: Range, a: number) =>
  a < r.cidr.base + r.reservation.head || a >= r.cidr.base + blockSize(r.cidr.prefix) - r.reservation.tail;
const ipText = (a: Ipv4) => formatIpv4(a);

/** A pool's scope; a row that names no pool (corrupt) names no range, so its binding is reported missing. */
const poolKey = (id: number | null): string => (id === null ? 'pool:?' : formatScope(poolScope(id)));

/** Runs every check; an empty list means the state is clean. */
export async function fsck(repo: Repo, progress?: (step: string) => void): Promise<Finding[]> {
  const out: Finding[] = [];
  const add = (invariant: Finding['invariant'], resource: string, message: string) =>
    out.push({ invariant, resource, message });

  progress?.('loading');
  const [subs, pools, hosts, vnets, subnets, rips, services, vms, bindings] = [
    await repo.subscriptions(),
    await repo.pools(),
    await repo.hosts(),
    await repo.vnets(),
    await repo.subnets(),
    await repo.reservedIps(),
    await repo.services(),
    await repo.vms(),
    await repo.bindings(),
  ];
  const subName = new Map(subs.map((s) => [s.id, s.name]));
  const vnetById = new Map(vnets.map((v) => [v.id, v]));
  const serviceById = new Map(services.map((s) => [s.id, s]));
  const ripById = new Map(rips.map((r) => [r.id, r]));
  const hostIds = new Set(hosts.map((h) => h.id));

  const ranges = new Map<string, Range>();
  for (const p of pools) {
    ranges.set(formatScope(poolScope(p.id)), {
      scope: formatScope(poolScope(p.id)),
      label: `pool/${p.cidr}`,
      cidr: parseCidr(p.cidr),
      reservation: POOL_RESERVATION,
    });
  }
  for (const s of subnets) {
    const v = vnetById.get(s.vnet_id);
    ranges.set(formatScope(subnetScope(s.id)), {
      scope: formatScope(subnetScope(s.id)),
      label: `subnet/${v === undefined ? '?' : `${subName.get(v.subscription_id)}/${v.name}`}/${s.name}`,
      cidr: parseCidr(s.cidr),
      reservation: SUBNET_RESERVATION,
    });
  }

  // What each owner's columns say it holds; compared with the bindings both ways (I1, I5).
  const expected = new Map<string, { scope: string; address: Ipv4; resource: string }>();
  const expect = (owner: string, kind: string, scope: string, address: Ipv4, resource: string) =>
    expected.set(`${owner}|${kind}`, { scope, address, resource });

  progress?.('VMs');
  const allocatedPerService = new Map<number, number>();
  for (const vm of vms) {
    const svc = serviceById.get(vm.service_id);
    const res = `vm/${svc?.name ?? '?'}/${vm.name}`;
    if (!isVmState(vm.state)) {
      add('I3', res, `unknown state ${JSON.stringify(vm.state)}`);
      continue;
    }
    const allocated = vm.state !== 'deallocated';
    if (allocated) allocatedPerService.set(vm.service_id, (allocatedPerService.get(vm.service_id) ?? 0) + 1);
    if (allocated && vm.dip === null) add('I3', res, `is ${vm.state} but holds no DIP`);
    if (!allocated && vm.dip !== null) add('I3', res, `is deallocated but holds DIP ${ipText(vm.dip)}`);
    if (allocated && (vm.host_id === null || !hostIds.has(vm.host_id)))
      add('I3', res, `is ${vm.state} but is on no host`);
    if (!allocated && vm.host_id !== null) add('I3', res, 'is deallocated but still placed on a host');
    if (!allocated && vm.ilpip !== null) add('I3', res, `is deallocated but holds ILPIP ${ipText(vm.ilpip)}`);
    if (vm.dip !== null) {
      const r = ranges.get(formatScope(subnetScope(vm.subnet_id)));
      if (r === undefined) add('I2', res, 'its subnet does not exist');
      else if (!cidrContains(r.cidr, vm.dip)) add('I2', res, `DIP ${ipText(vm.dip)} lies outside ${r.label}`);
      else if (isReserved(r, vm.dip))
        add('I2', res, `DIP ${ipText(vm.dip)} is a reserved address of ${r.label}`);
      if (vm.static_dip !== null && vm.static_dip !== vm.dip) {
        add('I2', res, `holds DIP ${ipText(vm.dip)} instead of its static DIP ${ipText(vm.static_dip)}`);
      }
      // A static DIP is bound through its reservation below, not as a drawn DIP.
      if (vm.static_dip === null)
        expect(`vm:${vm.id}`, 'dip', formatScope(subnetScope(vm.subnet_id)), vm.dip, res);
    }
    // I5: a static DIP stays reserved for its VM whatever the VM's state, so no draw can take it.
    if (vm.static_dip !== null) {
      expect(`vm:${vm.id}`, 'static', formatScope(subnetScope(vm.subnet_id)), vm.static_dip, res);
    }
    if (vm.ilpip !== null) expect(`vm:${vm.id}`, 'ilpip', poolKey(vm.ilpip_pool_id), vm.ilpip, res);
  }

  progress?.('services');
  for (const s of services) {
    const res = `service/${s.name}`;
    const allocated = allocatedPerService.get(s.id) ?? 0;
    const rip = s.reserved_ip_id === null ? undefined : ripById.get(s.reserved_ip_id);
    if (s.reserved_ip_id !== null && rip === undefined)
      add('I4', res, 'uses a reserved IP that does not exist');
    if (rip !== undefined) {
      if (s.vip !== rip.address)
        add(
          'I4',
          res,
          `VIP ${s.vip === null ? 'none' : ipText(s.vip)} differs from its reserved IP ${rip.name} (${ipText(rip.address)})`,
        );
      if (rip.service_id !== s.id) add('I4', res, `reserved IP ${rip.name} does not point back to it`);
    } else if (allocated > 0 && s.vip === null) add('I4', res, `has ${allocated} allocated VMs but no VIP`);
    else if (allocated === 0 && s.vip !== null)
      add('I4', res, `holds VIP ${ipText(s.vip)} with no allocated VM and no reserved IP`);
    if (rip === undefined && s.vip !== null)
      expect(`service:${s.id}`, 'vip', poolKey(s.vip_pool_id), s.vip, res);
  }
  for (const r of rips) {
    const res = `reserved-ip/${subName.get(r.subscription_id) ?? '?'}/${r.name}`;
    expect(`reserved-ip:${r.id}`, 'reserved', formatScope(poolScope(r.pool_id)), r.address, res);
    if (r.service_id !== null && serviceById.get(r.service_id)?.reserved_ip_id !== r.id) {
      add('I4', res, 'is associated with a service that does not use it');
    }
  }

  progress?.('bindings');
  const bound = new Map<string, number>();
  const seen = new Map<string, BindingRow>();
  for (const b of bindings) {
    const r = ranges.get(b.scope);
    const where = `${b.scope} ${ipText(b.address)}`;
    if (r === undefined) {
      add('I5', where, `bound to ${b.owner} in a range that does not exist`);
      continue;
    }
    if (!cidrContains(r.cidr, b.address) || isReserved(r, b.address)) {
      add('I1', where, `bound to ${b.owner} but is not a usable address of ${r.label}`);
    }
    bound.set(b.scope, (bound.get(b.scope) ?? 0) + 1);
    const key = `${b.owner}|${b.kind}`;
    const want = expected.get(key);
    if (want === undefined)
      add('I5', where, `leaked: bound to ${b.owner} (${b.kind}), which holds no such address`);
    else if (want.scope !== b.scope || want.address !== b.address) {
      add('I1', want.resource, `holds ${ipText(want.address)} but its binding is ${where}`);
    }
    seen.set(key, b);
  }
  for (const [key, want] of expected) {
    if (seen.has(key)) continue;
    if (key.endsWith('|static'))
      add(
        'I5',
        want.resource,
        `its static DIP ${ipText(want.address)} is not reserved in ${want.scope}: a dynamic draw could take it`,
      );
    else
      add(
        'I1',
        want.resource,
        `holds ${ipText(want.address)} without a binding in ${want.scope}: it could be handed out twice`,
      );
  }
  // The same address held by two owners through their columns (a double bind the bindings missed).
  const holders = new Map<string, string>();
  for (const want of expected.values()) {
    const k = `${want.scope}|${want.address}`;
    const other = holders.get(k);
    if (other !== undefined)
      add('I1', want.resource, `holds ${ipText(want.address)}, which ${other} holds too`);
    holders.set(k, want.resource);
  }
  for (const r of ranges.values()) {
    // free + bound (reserved static DIPs among them) = usable: nothing bound beyond the range.
    const n = bound.get(r.scope) ?? 0;
    if (n > usable(r)) add('I5', r.label, `${n} bound addresses exceed its ${usable(r)} usable ones`);
  }

  progress?.('events');
  await checkEventLog(repo, vms, services, rips, serviceById, subName, add);
  return out;
}

/**
 * I6: replaying the address events from the start must give exactly the addresses held now, with
 * sequence numbers strictly increasing, times never going back, every event with a reason, and
 * every change starting from the value the previous change left.
 */
async function checkEventLog(
  repo: Repo,
  vms: Awaited<ReturnType<Repo['vms']>>,
  services: Awaited<ReturnType<Repo['services']>>,
  rips: Awaited<ReturnType<Repo['reservedIps']>>,
  serviceById: Map<number, { name: string }>,
  subName: Map<number, string>,
  add: (i: Finding['invariant'], res: string, msg: string) => void,
): Promise<void> {
  const replay = new Map<string, string | null>();
  let lastSeq = 0;
  let lastTime = '';
  const PAGE = 10_000;
  for (;;) {
    const page = await repo.events({ since: lastSeq, limit: PAGE });
    for (const e of page) {
      const seq = Number(e.seq);
      if (seq !== lastSeq + 1) add('I6', `event ${seq}`, `follows event ${lastSeq}: the sequence has a gap`);
      if (e.time < lastTime)
        add('I6', `event ${seq}`, `time ${e.time} is before the previous event's ${lastTime}`);
      if (e.reason.trim() === '') add('I6', `event ${seq}`, 'has no reason');
      lastSeq = seq;
      lastTime = e.time;
      const field = addressField(e.type);
      if (field === undefined) continue;
      const key = `${field} ${e.resource}`;
      const oldV =
        e.old === null ? null : ((JSON.parse(e.old) as Record<string, string | null>)[field] ?? null);
      const newV =
        e.new === null ? null : ((JSON.parse(e.new) as Record<string, string | null>)[field] ?? null);
      const before = replay.get(key) ?? null;
      if (before !== oldV)
        add(
          'I6',
          `event ${seq}`,
          `${e.type} of ${e.resource} changes ${oldV} but the log left it at ${before}`,
        );
      replay.set(key, newV);
    }
    if (page.length < PAGE) break;
  }
  const now = new Map<string, string | null>();
  for (const vm of vms) {
    const res = `vm/${serviceById.get(vm.service_id)?.name ?? '?'}/${vm.name}`;
    now.set(`dip ${res}`, vm.dip === null ? null : ipText(vm.dip));
    now.set(`ilpip ${res}`, vm.ilpip === null ? null : ipText(vm.ilpip));
  }
  for (const s of services) now.set(`vip service/${s.name}`, s.vip === null ? null : ipText(s.vip));
  for (const r of rips)
    now.set(`address reserved-ip/${subName.get(r.subscription_id)}/${r.name}`, ipText(r.address));
  for (const key of new Set([...now.keys(), ...replay.keys()])) {
    const a = now.get(key) ?? null;
    const b = replay.get(key) ?? null;
    if (a !== b) {
      const [field, res] = key.split(' ');
      add('I6', res!, `${field} is ${a} but the event log says ${b}`);
    }
  }
}
