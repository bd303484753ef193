/** Finding rows by the names the API uses; a missing one is NOT_FOUND, named as the caller knows it. */
import { VipdipError } from '../core/errors.ts';
import type {
  Repo,
  ReservedIpRow,
  ServiceRow,
  SubnetRow,
  SubscriptionRow,
  VmContextRow,
  VmRow,
  VnetRow,
} from '../store/index.ts';
import { notFound, type SubRef } from './context.ts';

/** Where a VM is: `service/vm`, optionally checked against the caller's subscription. */
export interface VmRef {
  service: string;
  vm: string;
  subscription?: string | undefined;
}

export interface FoundVm {
  sub: SubRef;
  service: ServiceRow;
  vm: VmRow;
  context: VmContextRow;
}

export async function findSubscription(repo: Repo, name: string): Promise<SubscriptionRow> {
  return (await repo.subscriptionByName(name)) ?? notFound(`subscription ${name}`);
}

export async function findVnet(repo: Repo, sub: SubRef, name: string): Promise<VnetRow> {
  return (await repo.vnet(sub.id, name)) ?? notFound(`virtual network ${name} in subscription ${sub.name}`);
}

export async function findReservedIp(repo: Repo, sub: SubRef, name: string): Promise<ReservedIpRow> {
  return (await repo.reservedIp(sub.id, name)) ?? notFound(`reserved IP ${name} in subscription ${sub.name}`);
}

export async function findService(
  repo: Repo,
  name: string,
  subscription?: string,
): Promise<{ service: ServiceRow; sub: SubscriptionRow }> {
  const service = await repo.service(name);
  const sub = service === undefined ? undefined : await repo.subscriptionById(service.subscription_id);
  // Another subscription's service answers exactly as one that does not exist.
  if (
    service === undefined ||
    sub === undefined ||
    (subscription !== undefined && sub.name !== subscription)
  ) {
    notFound(`cloud service ${name}`);
  }
  return { service, sub };
}

/** One query on the common path; the error path tells a missing service from a missing VM. */
export async function findVm(
  repo: Repo,
  ref: VmRef,
  serviceLock: 'share' | 'update' = 'update',
): Promise<FoundVm> {
  const c = await repo.vmContext(ref.service, ref.vm, { service: serviceLock });
  if (c === undefined || (ref.subscription !== undefined && c.subscription_name !== ref.subscription)) {
    await findService(repo, ref.service, ref.subscription);
    notFound(`VM ${ref.service}/${ref.vm}`);
  }
  const service: ServiceRow = {
    id: c.service_id,
    subscription_id: c.subscription_id,
    name: c.service_name,
    vnet_id: c.service_vnet_id,
    reserved_ip_id: c.service_reserved_ip_id,
    vip: c.service_vip,
    vip_pool_id: c.service_vip_pool_id,
  };
  return { sub: { id: c.subscription_id, name: c.subscription_name }, service, vm: c, context: c };
}

export async function findSubnetOfService(
  repo: Repo,
  service: ServiceRow,
  subnetName: string,
): Promise<SubnetRow> {
  if (service.vnet_id === null) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `cloud service ${service.name} is bound to no virtual network, so its VMs have no subnet to draw a DIP from`,
    );
  }
  const subnet = (await repo.subnets(service.vnet_id)).find((s) => s.name === subnetName);
  if (subnet === undefined) {
    const vnet = await repo.vnetById(service.vnet_id);
    notFound(`subnet ${subnetName} in virtual network ${vnet?.name ?? '?'}`);
  }
  return subnet;
}

export async function vnetOfSubnet(repo: Repo, subnetId: number): Promise<VnetRow> {
  const subnet = (await repo.subnetById(subnetId))!;
  return (await repo.vnetById(subnet.vnet_id))!;
}
