/** Cloud services: create (with a reserved IP, optionally), delete with all their VMs, list. */
import { VipdipError } from '../core/errors.ts';
import type { Repo, ServiceRow } from '../store/index.ts';
import { ip, type Ctx } from './context.ts';
import { serviceFqdn } from './dns-names.ts';
import { events } from './events.ts';
import { findReservedIp, findService, findSubscription, findVnet } from './lookups.ts';
import { checkDnsLabel } from './names.ts';
import type { ServiceView } from './views.ts';
import { associate, disassociate, settleVip } from './vips.ts';
import { deleteVmRow } from './vms.ts';

export async function createService(
  c: Ctx,
  subscription: string,
  spec: { name: string; vnet?: string | null; reservedIp?: string | null },
): Promise<ServiceView> {
  checkDnsLabel('cloud service', spec.name);
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    if (await tx.repo.service(spec.name)) {
      throw new VipdipError(
        'ALREADY_EXISTS',
        `cloud service ${spec.name} already exists (its DNS label is unique across the system)`,
      );
    }
    const vnet = spec.vnet == null ? undefined : await findVnet(tx.repo, sub, spec.vnet);
    const rip = spec.reservedIp == null ? undefined : await findReservedIp(tx.repo, sub, spec.reservedIp);
    const row = await tx.repo.insertService({
      subscription_id: sub.id,
      name: spec.name,
      vnet_id: vnet?.id ?? null,
      reserved_ip_id: null,
      vip: null,
      vip_pool_id: null,
    });
    tx.emit(events.serviceCreated(subscription, spec.name, vnet?.name ?? null));
    if (rip !== undefined) await associate(c, tx, sub, rip, row);
    return serviceView(c, tx.repo, (await tx.repo.serviceById(row.id))!);
  });
}

/** Deletes a service and all its VMs; its VIP goes back to the pool, a reserved IP survives. */
export async function deleteService(c: Ctx, name: string, subscription?: string): Promise<void> {
  await c.write(async (tx) => {
    const { service, sub } = await findService(tx.repo, name, subscription);
    for (const vm of await tx.repo.vms({ serviceId: service.id }, { lock: true }))
      await deleteVmRow(c, tx, sub, service, vm, 'delete of the cloud service');
    const fresh = (await tx.repo.serviceById(service.id))!;
    if (fresh.reserved_ip_id !== null) {
      const rip = (await tx.repo.reservedIpById(fresh.reserved_ip_id))!;
      await disassociate(c, tx, sub, rip, fresh, 'cloud service deleted');
    } else await settleVip(c, tx, sub, fresh, 'cloud service deleted');
    await tx.repo.deleteService(service.id);
    tx.emit(events.serviceDeleted(sub.name, name));
  });
}

export function listServices(c: Ctx, subscription?: string): Promise<ServiceView[]> {
  return c.read(async (r) => {
    const sub = subscription === undefined ? undefined : await findSubscription(r, subscription);
    const out: ServiceView[] = [];
    for (const s of await r.services(sub?.id)) out.push(await serviceView(c, r, s));
    return out;
  });
}

export function getService(c: Ctx, name: string, subscription?: string): Promise<ServiceView> {
  return c.read(async (r) => serviceView(c, r, (await findService(r, name, subscription)).service));
}

export async function serviceView(c: Ctx, repo: Repo, s: ServiceRow): Promise<ServiceView> {
  const sub = await repo.subscriptionById(s.subscription_id);
  const vnet = s.vnet_id === null ? undefined : await repo.vnetById(s.vnet_id);
  const rip =
    s.reserved_ip_id === null ? undefined : await repo.reservedIpById(s.reserved_ip_id, { lock: false });
  return {
    subscription: sub?.name ?? '?',
    name: s.name,
    vip: ip(s.vip),
    reservedIp: rip?.name ?? null,
    dnsName: serviceFqdn(s.name, c.zones.publicZone),
    vnet: vnet?.name ?? null,
    vms: (await repo.vms({ serviceId: s.id })).map((v) => v.name),
  };
}
