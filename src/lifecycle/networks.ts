/** Virtual networks and their subnets: address spaces, the DIP and move policies, the subnets' ranges. */
import { VipdipError } from '../core/errors.ts';
import { cidrContainsCidr, cidrsOverlap, formatCidr, parseCidr, type Cidr } from '../core/ip.ts';
import {
  ALLOCATION_POLICIES,
  MIN_INDEXED_PREFIX,
  MOVE_POLICIES,
  type AllocationPolicy,
  type MovePolicy,
} from '../ipam/index.ts';
import type { Repo, VnetRow } from '../store/index.ts';
import { subnetScope } from './address-book.ts';
import { notFound, type Ctx, type SubRef } from './context.ts';
import { events } from './events.ts';
import { findSubscription, findVnet } from './lookups.ts';
import { checkName } from './names.ts';
import type { Tx } from './tx.ts';
import type { VnetView } from './views.ts';

export { MOVE_POLICIES, type MovePolicy };
/** Azure's smallest subnet is a /29 (three usable addresses). */
export const MAX_SUBNET_PREFIX = 29;

export interface VnetSpec {
  name: string;
  addressSpace: readonly string[];
  subnets?: readonly { name: string; cidr: string }[];
  dipPolicy?: AllocationPolicy;
  movePolicy?: MovePolicy;
}

/** An address space block must hold at least the smallest subnet (a /29), or nothing fits in it. */
export function checkSpaceBlock(what: string, cidr: Cidr): Cidr {
  if (cidr.prefix > MAX_SUBNET_PREFIX) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `${what}: ${formatCidr(cidr)} is smaller than the smallest subnet, a /${MAX_SUBNET_PREFIX}`,
    );
  }
  return cidr;
}

function parseCidrList(what: string, list: unknown): Cidr[] {
  if (!Array.isArray(list) || list.length === 0) {
    throw new VipdipError('INVALID_ARGUMENT', `${what} must be a non-empty list of CIDR blocks`);
  }
  return list.map((c) => checkSpaceBlock(what, parseCidr(c as string)));
}

function checkPolicies(p: {
  dipPolicy?: AllocationPolicy | undefined;
  movePolicy?: MovePolicy | undefined;
}): void {
  if (p.dipPolicy !== undefined && !ALLOCATION_POLICIES.includes(p.dipPolicy)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `dipPolicy ${JSON.stringify(p.dipPolicy)} must be random or sequential`,
    );
  }
  if (p.movePolicy !== undefined && !MOVE_POLICIES.includes(p.movePolicy)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `movePolicy ${JSON.stringify(p.movePolicy)} must be redraw or keep`,
    );
  }
}

export async function createVnet(c: Ctx, subscription: string, spec: VnetSpec): Promise<VnetView> {
  checkName('virtual network', spec.name);
  const space = parseCidrList(`virtual network ${spec.name} addressSpace`, spec.addressSpace);
  for (const b of space) c.checkAddressPlan(b, `virtual network ${spec.name}`);
  for (let i = 0; i < space.length; i++) {
    for (let j = i + 1; j < space.length; j++) {
      if (cidrsOverlap(space[i]!, space[j]!)) {
        throw new VipdipError(
          'OVERLAP',
          `address space ${formatCidr(space[i]!)} overlaps ${formatCidr(space[j]!)} in virtual network ${spec.name}`,
        );
      }
    }
  }
  const dipPolicy = spec.dipPolicy ?? 'random';
  const movePolicy = spec.movePolicy ?? 'redraw';
  checkPolicies({ dipPolicy, movePolicy });
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    if (await tx.repo.vnet(sub.id, spec.name)) {
      throw new VipdipError(
        'ALREADY_EXISTS',
        `virtual network ${spec.name} already exists in subscription ${subscription}`,
      );
    }
    const vnet = await tx.repo.insertVnet({
      subscription_id: sub.id,
      name: spec.name,
      address_space: JSON.stringify(space.map(formatCidr)),
      dip_policy: dipPolicy,
      move_policy: movePolicy,
    });
    tx.emit(
      events.vnetCreated(subscription, spec.name, {
        addressSpace: space.map(formatCidr),
        dipPolicy,
        movePolicy,
      }),
    );
    for (const s of spec.subnets ?? []) await insertSubnet(c, tx, sub, vnet, s);
    return vnetView(c, tx.repo, vnet, sub.name);
  });
}

export async function addSubnet(
  c: Ctx,
  subscription: string,
  vnetName: string,
  spec: { name: string; cidr: string },
): Promise<VnetView> {
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const vnet = await findVnet(tx.repo, sub, vnetName);
    await insertSubnet(c, tx, sub, vnet, spec);
    return vnetView(c, tx.repo, vnet, sub.name);
  });
}

async function insertSubnet(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  vnet: VnetRow,
  spec: { name: string; cidr: string },
): Promise<void> {
  checkName('subnet', spec.name);
  const cidr = parseCidr(spec.cidr);
  const where = `subnet ${vnet.name}/${spec.name}`;
  if (cidr.prefix < MIN_INDEXED_PREFIX || cidr.prefix > MAX_SUBNET_PREFIX) {
    throw new VipdipError(
      'INVALID_CIDR',
      `${where}: ${formatCidr(cidr)} must be between /${MIN_INDEXED_PREFIX} and /${MAX_SUBNET_PREFIX}`,
    );
  }
  const space = (JSON.parse(vnet.address_space) as string[]).map(parseCidr);
  if (!space.some((s) => cidrContainsCidr(s, cidr))) {
    throw new VipdipError(
      'ADDRESS_OUT_OF_RANGE',
      `${where}: ${formatCidr(cidr)} is outside the address space ${space.map(formatCidr).join(', ')}`,
    );
  }
  for (const other of await tx.repo.subnets(vnet.id)) {
    if (other.name === spec.name) throw new VipdipError('ALREADY_EXISTS', `${where} already exists`);
    if (cidrsOverlap(parseCidr(other.cidr), cidr)) {
      throw new VipdipError(
        'OVERLAP',
        `${where}: ${formatCidr(cidr)} overlaps subnet ${other.name} (${other.cidr})`,
      );
    }
  }
  const row = await tx.repo.insertSubnet({
    vnet_id: vnet.id,
    name: spec.name,
    cidr: formatCidr(cidr),
    base: cidr.base,
    prefix: cidr.prefix,
  });
  c.book.createSubnet(tx, row.id, where, cidr);
  tx.emit(events.subnetCreated(sub.name, vnet.name, spec.name, formatCidr(cidr)));
}

export async function deleteSubnet(
  c: Ctx,
  subscription: string,
  vnetName: string,
  subnetName: string,
): Promise<void> {
  await c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const vnet = await findVnet(tx.repo, sub, vnetName);
    const subnet =
      (await tx.repo.subnets(vnet.id)).find((s) => s.name === subnetName) ??
      notFound(`subnet ${vnetName}/${subnetName}`);
    const vms = await tx.repo.vms({ subnetId: subnet.id });
    if (vms.length > 0)
      throw new VipdipError('IN_USE', `subnet ${vnetName}/${subnetName} still has ${vms.length} VMs`);
    await tx.repo.deleteSubnet(subnet.id);
    tx.emit(events.subnetDeleted(subscription, vnetName, subnetName, subnet.cidr));
    c.book.dropRange(tx, subnetScope(subnet.id));
  });
}

export async function setVnetPolicy(
  c: Ctx,
  subscription: string,
  vnetName: string,
  policy: { dipPolicy?: AllocationPolicy; movePolicy?: MovePolicy },
): Promise<VnetView> {
  checkPolicies(policy);
  return c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const vnet = await findVnet(tx.repo, sub, vnetName);
    const next = {
      dip_policy: policy.dipPolicy ?? vnet.dip_policy,
      move_policy: policy.movePolicy ?? vnet.move_policy,
    };
    if (next.dip_policy !== vnet.dip_policy || next.move_policy !== vnet.move_policy) {
      await tx.repo.updateVnet(vnet.id, next);
      tx.emit(
        events.vnetUpdated(
          subscription,
          vnetName,
          { dipPolicy: vnet.dip_policy, movePolicy: vnet.move_policy },
          { dipPolicy: next.dip_policy, movePolicy: next.move_policy },
        ),
      );
    }
    return vnetView(c, tx.repo, { ...vnet, ...next }, sub.name);
  });
}

export async function deleteVnet(c: Ctx, subscription: string, vnetName: string): Promise<void> {
  await c.write(async (tx) => {
    const sub = await findSubscription(tx.repo, subscription);
    const vnet = await findVnet(tx.repo, sub, vnetName);
    const users = (await tx.repo.services(sub.id)).filter((s) => s.vnet_id === vnet.id);
    if (users.length > 0) {
      throw new VipdipError(
        'IN_USE',
        `virtual network ${vnetName} is used by cloud services ${users.map((s) => s.name).join(', ')}`,
      );
    }
    const subnets = await tx.repo.subnets(vnet.id);
    for (const s of subnets) await tx.repo.deleteSubnet(s.id);
    await tx.repo.deleteVnet(vnet.id);
    tx.emit(events.vnetDeleted(subscription, vnetName));
    for (const s of subnets) c.book.dropRange(tx, subnetScope(s.id));
  });
}

export function listVnets(c: Ctx, subscription?: string): Promise<VnetView[]> {
  return c.read(async (r) => {
    const subs = new Map((await r.subscriptions()).map((s) => [s.id, s.name]));
    const sub = subscription === undefined ? undefined : await findSubscription(r, subscription);
    const out: VnetView[] = [];
    for (const v of await r.vnets(sub?.id)) out.push(await vnetView(c, r, v, subs.get(v.subscription_id)!));
    return out;
  });
}

export function getVnet(c: Ctx, subscription: string, name: string): Promise<VnetView> {
  return c.read(async (r) => {
    const sub = await findSubscription(r, subscription);
    return vnetView(c, r, await findVnet(r, sub, name), sub.name);
  });
}

async function vnetView(c: Ctx, repo: Repo, v: VnetRow, subscription: string): Promise<VnetView> {
  return {
    subscription,
    name: v.name,
    addressSpace: JSON.parse(v.address_space) as string[],
    dipPolicy: v.dip_policy,
    movePolicy: v.move_policy,
    subnets: await Promise.all(
      (await repo.subnets(v.id)).map(async (s) => {
        const range = await c.book.ensure(repo, subnetScope(s.id));
        return {
          name: s.name,
          cidr: s.cidr,
          usable: range.usable,
          bound: range.boundCount,
          free: range.freeCount,
        };
      }),
    ),
  };
}
