/**
 * A VM's addresses (SPEC R4–R5): the DIP bound on start (its static DIP, or one drawn per its
 * network's policy) and given back on deallocation, the ILPIP, the move to another host that may
 * redraw the DIP, and the static DIP reserved for the VM's whole life (I5). The decisions are pure
 * functions at the top, tested without a database (vm-addresses.test.ts); the rest carries them out.
 */
import { isVipdipError } from '../core/errors.ts';
import { formatIpv4, type Ipv4 } from '../core/ip.ts';
import type { MovePolicy } from '../ipam/index.ts';
import type { ServiceRow, VmContextRow, VmRow } from '../store/index.ts';
import { poolScope, subnetScope, type Owner } from './address-book.ts';
import { ip, type Ctx, type SubRef } from './context.ts';
import { events, type VmAt } from './events.ts';
import { vnetOfSubnet } from './lookups.ts';
import { pickHost, type HostInfo } from './placement.ts';
import type { VmState } from './transitions.ts';
import type { Tx } from './tx.ts';
import type { VmChange } from './vm-view.ts';

/** The address fields of a VM's row the decisions read. */
export type VmAddressRow = Pick<VmRow, 'dip' | 'static_dip' | 'host_id' | 'ilpip' | 'ilpip_enabled'>;

/** Where a starting VM's DIP comes from: its static DIP, held since its creation, or a draw (R4). */
export function dipSource(vm: Pick<VmRow, 'static_dip'>): { kind: 'static'; ip: Ipv4 } | { kind: 'draw' } {
  return vm.static_dip === null ? { kind: 'draw' } : { kind: 'static', ip: vm.static_dip };
}

/** What a deallocation gives back and says (R4, I5). */
export interface ReleasePlan {
  /** The DIP to give back to the subnet: none for a static DIP, which stays the VM's. */
  free: Ipv4 | null;
  /** Whether the VM held a DIP (a `vm.dip` event to null) and a host (a `vm.host` event to null). */
  dipEvent: boolean;
  hostEvent: boolean;
  /** Whether the VM may hold an ILPIP (one read tells; a VM that never had one enabled holds none). */
  mayHoldIlpip: boolean;
}

export function releasePlan(vm: VmAddressRow): ReleasePlan {
  return {
    free: vm.dip !== null && vm.dip !== vm.static_dip ? vm.dip : null,
    dipEvent: vm.dip !== null,
    hostEvent: vm.host_id !== null,
    mayHoldIlpip: vm.ilpip_enabled || vm.ilpip !== null,
  };
}

/** Whether a move to another host draws a new DIP (R5): not a static one, nor where DIPs are kept. */
export function redrawsOnMove<T extends Pick<VmRow, 'dip' | 'static_dip'>>(
  vm: T,
  movePolicy: MovePolicy,
): vm is T & { dip: Ipv4 } {
  return vm.static_dip === null && movePolicy !== 'keep' && vm.dip !== null;
}

/** The bindings a VM's addresses are held under. */
export const owners = {
  dip: (vmId: number): Owner => ({ owner: `vm:${vmId}`, kind: 'dip' }),
  /** The binding that reserves a VM's static DIP for the VM's whole life. */
  static: (vmId: number): Owner => ({ owner: `vm:${vmId}`, kind: 'static' }),
  ilpip: (vmId: number): Owner => ({ owner: `vm:${vmId}`, kind: 'ilpip' }),
};

const at = (sub: SubRef, service: Pick<ServiceRow, 'name'>, vm: Pick<VmRow, 'name'>): VmAt => ({
  subscription: sub.name,
  service: service.name,
  vm: vm.name,
});

/** Places the VM on a host and binds its DIP (static or drawn per policy, R4) and ILPIP. */
export async function allocateVm(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  reason: string,
  state: VmState,
  context?: VmContextRow,
): Promise<VmChange> {
  const hosts = await tx.repo.hosts();
  const host = pickHost(hosts, c.hostLoads.forHosts(hosts, tx.hostMoves), new Set(), c.random);
  const scope = subnetScope(vm.subnet_id);
  const source = dipSource(vm);
  let dip: Ipv4;
  if (source.kind === 'static') {
    // Held since the VM was created (R4): bound again without a draw.
    dip = source.ip;
    await c.book.holdStatic(tx, scope, dip, owners.static(vm.id));
  } else {
    const policy = context?.dip_policy ?? (await vnetOfSubnet(tx.repo, vm.subnet_id)).dip_policy;
    dip = await c.book.draw(tx, scope, policy, owners.dip(vm.id));
  }
  await tx.repo.updateVm(vm.id, { dip, host_id: host.id, state });
  tx.emit(events.vmHost(at(sub, service, vm), reason, null, host.name));
  tx.emit(events.vmDip(at(sub, service, vm), reason, null, formatIpv4(dip)));
  const changed: VmChange = { state, dip, host_id: host.id, host_name: host.name, host_rack: host.rack };
  if (vm.ilpip_enabled) {
    const a = await bindIlpip(c, tx, sub, service, vm, reason);
    changed.ilpip = a.ip;
    changed.ilpip_pool_id = a.poolId;
  }
  return changed;
}

/** Deallocation: the DIP and ILPIP go back (R4), the VM leaves its host. */
export async function releaseVm(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  reason: string,
  state: VmState,
  context?: VmContextRow,
): Promise<VmChange> {
  const plan = releasePlan(vm);
  await tx.repo.updateVm(vm.id, { dip: null, host_id: null, state });
  // A static DIP stays reserved for the VM while it is deallocated (R4, I5).
  if (plan.free !== null) await c.book.free(tx, subnetScope(vm.subnet_id), plan.free);
  if (plan.dipEvent) tx.emit(events.vmDip(at(sub, service, vm), reason, ip(vm.dip), null));
  if (plan.hostEvent) {
    const hostName = context?.host_name ?? (await tx.repo.hosts()).find((h) => h.id === vm.host_id)?.name;
    tx.emit(events.vmHost(at(sub, service, vm), reason, hostName ?? null, null));
  }
  if (plan.mayHoldIlpip) await releaseIlpip(c, tx, sub, service, vm, reason);
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

export async function bindIlpip(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  reason: string,
): Promise<{ ip: Ipv4; poolId: number }> {
  const drawn = await c.book.drawPublic(tx, owners.ilpip(vm.id));
  await tx.repo.updateVm(vm.id, { ilpip: drawn.ip, ilpip_pool_id: drawn.poolId });
  tx.emit(events.vmIlpip(at(sub, service, vm), reason, null, formatIpv4(drawn.ip)));
  return drawn;
}

export async function releaseIlpip(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  reason: string,
): Promise<void> {
  const fresh = (await tx.repo.vmById(vm.id))!;
  if (fresh.ilpip === null) return;
  await tx.repo.updateVm(vm.id, { ilpip: null, ilpip_pool_id: null });
  await c.book.free(tx, poolScope(fresh.ilpip_pool_id!), fresh.ilpip);
  tx.emit(events.vmIlpip(at(sub, service, vm), reason, ip(fresh.ilpip), null));
}

/**
 * Moves an allocated VM to another host (redeploy, maintenance: R5). Its DIP is redrawn unless it
 * is static or its network keeps DIPs on moves; the new DIP is drawn before the old one is given
 * back, so a redraw differs whenever the subnet has another free address.
 */
export async function moveVm(
  c: Ctx,
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
  const target = pickHost(hosts, loads, exclude, c.random);
  const oldHost = hosts.find((h) => h.id === vm.host_id);
  loads.set(target.id, (loads.get(target.id) ?? 0) + 1);
  if (vm.host_id !== null) loads.set(vm.host_id, (loads.get(vm.host_id) ?? 1) - 1);
  await tx.repo.updateVm(vm.id, { host_id: target.id });
  tx.emit(events.vmHost(at(sub, service, vm), reason, oldHost?.name ?? null, target.name));

  const vnet = await vnetOfSubnet(tx.repo, vm.subnet_id);
  if (!redrawsOnMove(vm, vnet.move_policy)) return;
  const scope = subnetScope(vm.subnet_id);
  // The new binding takes a provisional owner, since one owner holds one DIP binding at a time.
  let dip: Ipv4;
  try {
    dip = await c.book.draw(tx, scope, vnet.dip_policy, {
      owner: `vm:${vm.id}:moving`,
      kind: 'dip',
    });
  } catch (e) {
    if (isVipdipError(e, 'POOL_EXHAUSTED')) return; // nowhere else to go: the DIP stays
    throw e;
  }
  await c.book.free(tx, scope, vm.dip);
  await c.book.rebind(tx, scope, dip, owners.dip(vm.id));
  await tx.repo.updateVm(vm.id, { dip });
  tx.emit(events.vmDip(at(sub, service, vm), reason, ip(vm.dip), formatIpv4(dip)));
}

/** A new VM's static DIP becomes its own (R4): no dynamic draw can take it from now on. */
export async function reserveStaticDip(
  c: Ctx,
  tx: Tx,
  subnetId: number,
  vmId: number,
  dip: Ipv4,
): Promise<void> {
  await c.book.claim(tx, subnetScope(subnetId), dip, owners.static(vmId));
}

/** A deleted VM's static DIP goes back: its reservation lasted the VM's whole life, which ends. */
export async function releaseStaticDip(c: Ctx, tx: Tx, vm: VmRow): Promise<void> {
  if (vm.static_dip !== null)
    await c.book.freeOwned(tx, subnetScope(vm.subnet_id), vm.static_dip, `vm:${vm.id}`);
}

/** Changes a deallocated VM's static DIP: the new one is reserved before the old one goes back. */
export async function changeStaticDip(c: Ctx, tx: Tx, vm: VmRow, next: Ipv4 | null): Promise<void> {
  const scope = subnetScope(vm.subnet_id);
  if (next !== null) await c.book.check(tx.repo, scope, next);
  // Claim before release: a claim that reloads the range from the store inside this transaction
  // must not see the old address given back by a change that may roll back. The new reservation
  // takes a provisional owner (one owner holds one of each kind).
  if (next !== null) await c.book.claim(tx, scope, next, { owner: `vm:${vm.id}:static`, kind: 'static' });
  if (vm.static_dip !== null) await c.book.freeOwned(tx, scope, vm.static_dip, `vm:${vm.id}`);
  if (next !== null) await c.book.rebind(tx, scope, next, owners.static(vm.id));
  await tx.repo.updateVm(vm.id, { static_dip: next });
}
