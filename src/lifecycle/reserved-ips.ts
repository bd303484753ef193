/**
 * Reserved IPs: a public address a subscription keeps whatever its services do (R2), associated
 * with a service as its VIP (vips.ts carries the association out) or reserved in place from one.
 */
import { VipdipError } from '../core/errors.ts';
import { formatIpv4 } from '../core/ip.ts';
import { RunAgain, type Repo, type ReservedIpRow } from '../store/index.ts';
import { poolScope } from './address-book.ts';
import { notFound, type Ctx } from './context.ts';
import { events } from './events.ts';
import { findReservedIp, findService, findSubscription } from './lookups.ts';
import { checkName } from './names.ts';
import { serviceView } from './services.ts';
import type { ReservedIpView, ServiceView } from './views.ts';
import { associate, disassociate } from './vips.ts';

const owner = (id: number) => ({ owner: `reserved-ip:${id}`, kind: 'reserved' as const });

export async function createReservedIp(c: Ctx, subscription: string, name: string): Promise<ReservedIpView> {
  checkName('reserved IP', name);
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    if (await tx.repo.reservedIp(sub.id, name)) {
      throw new VipdipError(
        'ALREADY_EXISTS',
        `reserved IP ${name} already exists in subscription ${subscription}`,
      );
    }
    // The owner's id exists only after the insert: bind under a provisional owner, then rename it.
    const drawn = await c.book.drawPublic(tx, {
      owner: `reserved-ip:new:${sub.id}:${name}`,
      kind: 'reserved',
    });
    const row = await tx.repo.insertReservedIp({
      subscription_id: sub.id,
      name,
      pool_id: drawn.poolId,
      address: drawn.ip,
      service_id: null,
    });
    await c.book.rebind(tx, poolScope(drawn.poolId), drawn.ip, owner(row.id));
    tx.emit(events.reservedIpAddress(subscription, name, 'create', null, formatIpv4(drawn.ip)));
    return { subscription, name, address: formatIpv4(drawn.ip), service: null };
  });
}

export async function deleteReservedIp(c: Ctx, subscription: string, name: string): Promise<void> {
  await c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const rip = await findReservedIp(tx.repo, sub, name);
    if (rip.service_id !== null) {
      // A name for the message: no lock on the service after the reserved IP (store/LOCKS.md).
      const svc = await tx.repo.serviceById(rip.service_id, { lock: false });
      throw new VipdipError(
        'IN_USE',
        `reserved IP ${name} is associated with cloud service ${svc?.name ?? '?'}; disassociate it first`,
      );
    }
    await tx.repo.deleteReservedIp(rip.id);
    await c.book.free(tx, poolScope(rip.pool_id), rip.address);
    tx.emit(events.reservedIpAddress(subscription, name, 'delete', formatIpv4(rip.address), null));
  });
}

/** Makes a reserved IP the VIP of a service (at once, R1); the service's drawn VIP goes back. */
export async function associateReservedIp(
  c: Ctx,
  subscription: string,
  name: string,
  serviceName: string,
): Promise<ServiceView> {
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    // A missing reserved IP is named before a missing service, as ever; but the lock order
    // (store/LOCKS.md) takes the service first, then the reserved IP.
    if ((await tx.repo.reservedIp(sub.id, name, { lock: false })) === undefined)
      notFound(`reserved IP ${name} in subscription ${sub.name}`);
    const { service } = await findService(tx.repo, serviceName, subscription);
    const rip = await findReservedIp(tx.repo, sub, name);
    await associate(c, tx, sub, rip, service);
    return serviceView(c, tx.repo, (await tx.repo.serviceById(service.id))!);
  });
}

/** Takes a reserved IP off its service; a service with allocated VMs draws a new VIP. */
export async function disassociateReservedIp(
  c: Ctx,
  subscription: string,
  name: string,
): Promise<ReservedIpView> {
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    // The lock order (store/LOCKS.md) puts the service first: learn it, lock it, then lock the
    // reserved IP and make sure it is still the service's.
    const seen = await tx.repo.reservedIp(sub.id, name, { lock: false });
    if (seen === undefined) notFound(`reserved IP ${name} in subscription ${sub.name}`);
    const service = seen.service_id === null ? undefined : await tx.repo.serviceById(seen.service_id);
    const rip = await findReservedIp(tx.repo, sub, name);
    if (rip.service_id === null) {
      throw new VipdipError('CONFLICT', `reserved IP ${name} is not associated with any cloud service`);
    }
    // Associated elsewhere meanwhile: run again, locking that service first.
    if (service === undefined || rip.service_id !== service.id) throw new RunAgain();
    await disassociate(c, tx, sub, rip, service, `reserved IP ${name} disassociated`);
    return reservedIpView(tx.repo, (await tx.repo.reservedIpById(rip.id))!, sub.name);
  });
}

/** Turns a service's current VIP into a reserved IP in place: the address does not change. */
export async function reserveServiceVip(
  c: Ctx,
  subscription: string,
  serviceName: string,
  name: string,
): Promise<ReservedIpView> {
  checkName('reserved IP', name);
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const { service } = await findService(tx.repo, serviceName, subscription);
    if (await tx.repo.reservedIp(sub.id, name)) {
      throw new VipdipError(
        'ALREADY_EXISTS',
        `reserved IP ${name} already exists in subscription ${subscription}`,
      );
    }
    if (service.reserved_ip_id !== null) {
      throw new VipdipError('CONFLICT', `cloud service ${serviceName} already uses a reserved IP`);
    }
    if (service.vip === null) {
      throw new VipdipError(
        'CONFLICT',
        `cloud service ${serviceName} has no VIP to reserve (no VM is allocated)`,
      );
    }
    const row = await tx.repo.insertReservedIp({
      subscription_id: sub.id,
      name,
      pool_id: service.vip_pool_id!,
      address: service.vip,
      service_id: service.id,
    });
    await c.book.rebind(tx, poolScope(service.vip_pool_id!), service.vip, owner(row.id));
    await tx.repo.updateService(service.id, { reserved_ip_id: row.id });
    tx.emit(
      events.reservedIpAddress(
        subscription,
        name,
        `reserve the VIP of ${serviceName} in place`,
        null,
        formatIpv4(service.vip),
      ),
    );
    tx.emit(events.reservedIpAssociated(subscription, name, serviceName));
    return reservedIpView(tx.repo, row, subscription);
  });
}

export function listReservedIps(c: Ctx, subscription?: string): Promise<ReservedIpView[]> {
  return c.read(async (r) => {
    const subs = new Map((await r.subscriptions()).map((s) => [s.id, s.name]));
    const sub = subscription === undefined ? undefined : await findSubscription(r, subscription);
    const out: ReservedIpView[] = [];
    for (const x of await r.reservedIps(sub?.id))
      out.push(await reservedIpView(r, x, subs.get(x.subscription_id)!));
    return out;
  });
}

async function reservedIpView(repo: Repo, r: ReservedIpRow, subscription: string): Promise<ReservedIpView> {
  const svc = r.service_id === null ? undefined : await repo.serviceById(r.service_id, { lock: false });
  return { subscription, name: r.name, address: formatIpv4(r.address), service: svc?.name ?? null };
}
