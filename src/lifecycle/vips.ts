/**
 * A service's VIP (SPEC R1–R3): drawn from a public pool when its first VM is allocated, given back
 * when its last one is deallocated, or, with a reserved IP associated, the reserved IP's address for
 * as long as the association lasts. Every change of the VIP is one `service.vip` event.
 */
import { VipdipError } from '../core/errors.ts';
import type { Ipv4 } from '../core/ip.ts';
import type { ReservedIpRow, ServiceRow } from '../store/index.ts';
import { poolScope, type Owner } from './address-book.ts';
import { ip, type Ctx, type SubRef } from './context.ts';
import { events } from './events.ts';
import type { Tx } from './tx.ts';

/** What a service's VIP must do now that its count of allocated VMs is known (R1, R3). */
export type VipAction = 'draw' | 'free' | 'keep';

/**
 * A service with a reserved IP keeps it whatever its VMs do (R1); otherwise it holds a VIP exactly
 * while it has an allocated VM (R3).
 */
export function vipAction(s: { reservedIp: boolean; hasVip: boolean; allocatedVms: number }): VipAction {
  if (s.reservedIp) return 'keep';
  if (s.allocatedVms > 0 && !s.hasVip) return 'draw';
  if (s.allocatedVms === 0 && s.hasVip) return 'free';
  return 'keep';
}

const vipOwner = (service: ServiceRow): Owner => ({ owner: `service:${service.id}`, kind: 'vip' });

/**
 * R1 and R3 after a VM of the service was allocated, deallocated or deleted. `justAllocated`: the
 * caller has just allocated one of its VMs, so there is one (no count needed).
 */
export async function settleVip(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  reason: string,
  justAllocated = false,
): Promise<void> {
  if (service.reserved_ip_id !== null) return;
  if (justAllocated && service.vip !== null) return;
  const allocatedVms = justAllocated ? 1 : await tx.repo.allocatedVmCount(service.id);
  const action = vipAction({ reservedIp: false, hasVip: service.vip !== null, allocatedVms });
  if (action === 'draw') {
    // The first allocated VM (its operation holds the service exclusively).
    const { ip: vip, poolId } = await c.book.drawPublic(tx, vipOwner(service));
    await tx.repo.updateService(service.id, { vip, vip_pool_id: poolId });
    emitVip(tx, sub.name, service.name, null, vip, `first VM allocated (${reason})`);
  } else if (action === 'free') {
    await tx.repo.updateService(service.id, { vip: null, vip_pool_id: null });
    await c.book.free(tx, poolScope(service.vip_pool_id!), service.vip!);
    emitVip(tx, sub.name, service.name, service.vip, null, `no VM allocated any more (${reason})`);
  }
}

export function emitVip(
  tx: Tx,
  subscription: string,
  service: string,
  old: Ipv4 | null,
  now: Ipv4 | null,
  reason: string,
): void {
  if (old === now) return;
  tx.emit(events.serviceVip(subscription, service, reason, ip(old), ip(now)));
}

/** Makes a reserved IP the VIP of a service (at once, R1); the service's drawn VIP goes back. */
export async function associate(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  rip: ReservedIpRow,
  service: ServiceRow,
): Promise<void> {
  if (rip.service_id === service.id) return;
  // The other service and reserved IP are looked up for their names only, without a lock: this
  // transaction holds a service and a reserved IP already, and locking a third row here is what
  // deadlocked against a disassociation of it.
  if (rip.service_id !== null) {
    const other = await tx.repo.serviceById(rip.service_id, { lock: false });
    throw new VipdipError(
      'IN_USE',
      `reserved IP ${rip.name} is already associated with cloud service ${other?.name ?? '?'}`,
    );
  }
  if (service.reserved_ip_id !== null) {
    const other = await tx.repo.reservedIpById(service.reserved_ip_id, { lock: false });
    throw new VipdipError(
      'CONFLICT',
      `cloud service ${service.name} already uses reserved IP ${other?.name ?? '?'}`,
    );
  }
  if (service.vip !== null) await c.book.free(tx, poolScope(service.vip_pool_id!), service.vip);
  await tx.repo.updateReservedIp(rip.id, { service_id: service.id });
  await tx.repo.updateService(service.id, {
    reserved_ip_id: rip.id,
    vip: rip.address,
    vip_pool_id: rip.pool_id,
  });
  tx.emit(events.reservedIpAssociated(sub.name, rip.name, service.name));
  emitVip(tx, sub.name, service.name, service.vip, rip.address, `reserved IP ${rip.name} associated`);
}

/**
 * Takes a reserved IP off its service (R2: the address stays the reserved IP's); a service with
 * allocated VMs draws a new VIP.
 */
export async function disassociate(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  rip: ReservedIpRow,
  service: ServiceRow,
  reason: string,
): Promise<void> {
  await tx.repo.updateService(service.id, { reserved_ip_id: null, vip: null, vip_pool_id: null });
  await tx.repo.updateReservedIp(rip.id, { service_id: null });
  tx.emit(events.reservedIpDisassociated(sub.name, rip.name, service.name));
  let vip: Ipv4 | null = null;
  if ((await tx.repo.allocatedVmCount(service.id)) > 0) {
    const drawn = await c.book.drawPublic(tx, vipOwner(service));
    await tx.repo.updateService(service.id, { vip: drawn.ip, vip_pool_id: drawn.poolId });
    vip = drawn.ip;
  }
  emitVip(tx, sub.name, service.name, service.vip, vip, reason);
}
