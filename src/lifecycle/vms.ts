/**
 * VMs: create, update, the operations of the state machine (transitions.ts), delete, and the
 * listings. The addresses a transition binds and gives back are vm-addresses.ts's, the service's
 * VIP vips.ts's; this module decides which of them an operation calls for and emits its event.
 */
import { VipdipError } from '../core/errors.ts';
import { parseIpv4 } from '../core/ip.ts';
import {
  RunAgain,
  type Repo,
  type ServiceRow,
  type VmContextRow,
  type VmDetailRow,
  type VmRow,
} from '../store/index.ts';
import { subnetScope } from './address-book.ts';
import { ip, type Ctx, type SubRef } from './context.ts';
import { checkServiceEndpoints, normalizeEndpoints, type Endpoint } from './endpoints.ts';
import { events, type VmAt } from './events.ts';
import { checkWorkload } from './image-registry.ts';
import { findService, findSubnetOfService, findSubscription, findVm, type VmRef } from './lookups.ts';
import { checkDnsLabel } from './names.ts';
import { isAllocated, nextState, type VmOperation } from './transitions.ts';
import type { Tx } from './tx.ts';
import {
  allocateVm,
  bindIlpip,
  changeStaticDip,
  moveVm,
  releaseIlpip,
  releaseStaticDip,
  releaseVm,
  reserveStaticDip,
} from './vm-addresses.ts';
import { detailView, vmView, type VmChange } from './vm-view.ts';
import type { VmView } from './views.ts';
import { settleVip } from './vips.ts';

export interface VmSpec {
  name: string;
  subnet: string;
  staticDip?: string | null;
  ilpip?: boolean;
  workload?: string | null;
  endpoints?: unknown;
}

const at = (sub: SubRef, service: string, vm: string): VmAt => ({ subscription: sub.name, service, vm });

/** Creates a VM in a service and, unless told otherwise, starts it (allocating its addresses). */
export async function createVm(
  c: Ctx,
  serviceName: string,
  spec: VmSpec,
  opts: { subscription?: string; start?: boolean; commands?: boolean } = {},
): Promise<VmView> {
  checkDnsLabel('VM', spec.name);
  const endpoints = normalizeEndpoints(spec.endpoints, `VM ${spec.name} endpoints`);
  const workload = spec.workload ?? null;
  if (
    workload !== null &&
    (typeof workload !== 'string' || workload.length === 0 || workload.length > 4096)
  ) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `VM ${spec.name}: workload must name an image (or be "command: …" from the operator)`,
    );
  }
  const staticDip = spec.staticDip == null ? null : parseIpv4(spec.staticDip);
  return c.write(async (tx) => {
    const { service, sub } = await findService(tx.repo, serviceName, opts.subscription);
    if (await tx.repo.vm(service.id, spec.name)) {
      throw new VipdipError('ALREADY_EXISTS', `VM ${serviceName}/${spec.name} already exists`);
    }
    const subnet = await findSubnetOfService(tx.repo, service, spec.subnet);
    await checkWorkload(tx.repo, spec.name, workload, opts.commands !== false);
    if (staticDip !== null) await c.book.check(tx.repo, subnetScope(subnet.id), staticDip);
    await checkEndpoints(tx.repo, service, spec.name, endpoints);
    const row = await tx.repo.insertVm({
      service_id: service.id,
      name: spec.name,
      subnet_id: subnet.id,
      state: 'deallocated',
      dip: null,
      host_id: null,
      static_dip: staticDip,
      ilpip_enabled: spec.ilpip === true,
      ilpip: null,
      ilpip_pool_id: null,
      workload,
      endpoints: JSON.stringify(endpoints),
    });
    tx.emit(
      events.vmCreated(at(sub, service.name, spec.name), {
        subnet: subnet.name,
        staticDip: ip(staticDip),
        ilpip: spec.ilpip === true,
      }),
    );
    if (staticDip !== null) await reserveStaticDip(c, tx, subnet.id, row.id, staticDip);
    if (opts.start !== false) await applyOperation(c, tx, sub, service, row, 'start', 'create');
    return vmView(tx.repo, c.zones, row.id);
  });
}

/**
 * Changes a VM's endpoints, workload, static DIP or ILPIP setting; addresses follow only where they
 * must. `opts.commands: false` (a tenant) refuses an inline command as the workload.
 */
export async function updateVm(
  c: Ctx,
  ref: VmRef,
  patch: { endpoints?: unknown; workload?: string | null; ilpip?: boolean; staticDip?: string | null },
  precondition?: (current: VmView) => void,
  opts: { commands?: boolean } = {},
): Promise<VmView> {
  const endpoints =
    patch.endpoints === undefined ? undefined : normalizeEndpoints(patch.endpoints, `VM ${ref.vm} endpoints`);
  return c.write(async (tx) => {
    const { sub, service, vm } = await findVm(tx.repo, ref);
    if (precondition !== undefined) precondition(await vmView(tx.repo, c.zones, vm.id));
    const changes: Record<string, unknown> = {};
    const old: Record<string, unknown> = {};
    if (endpoints !== undefined && JSON.stringify(endpoints) !== vm.endpoints) {
      await checkEndpoints(tx.repo, service, vm.name, endpoints);
      await tx.repo.updateVm(vm.id, { endpoints: JSON.stringify(endpoints) });
      old.endpoints = JSON.parse(vm.endpoints);
      changes.endpoints = endpoints;
    }
    if (patch.workload !== undefined && patch.workload !== vm.workload) {
      await checkWorkload(tx.repo, vm.name, patch.workload, opts.commands !== false);
      await tx.repo.updateVm(vm.id, { workload: patch.workload });
      old.workload = vm.workload;
      changes.workload = patch.workload;
    }
    if (patch.staticDip !== undefined) {
      const next = patch.staticDip === null ? null : parseIpv4(patch.staticDip);
      if (next !== vm.static_dip) {
        if (isAllocated(vm.state)) {
          throw new VipdipError(
            'INVALID_TRANSITION',
            `VM ${service.name}/${vm.name} must be deallocated to change its static DIP`,
          );
        }
        await changeStaticDip(c, tx, vm, next);
        old.staticDip = ip(vm.static_dip);
        changes.staticDip = ip(next);
      }
    }
    if (patch.ilpip !== undefined && patch.ilpip !== vm.ilpip_enabled) {
      await tx.repo.updateVm(vm.id, { ilpip_enabled: patch.ilpip });
      old.ilpip = vm.ilpip_enabled;
      changes.ilpip = patch.ilpip;
      if (isAllocated(vm.state)) {
        if (patch.ilpip) await bindIlpip(c, tx, sub, service, vm, 'instance-level public IP enabled');
        else await releaseIlpip(c, tx, sub, service, vm, 'instance-level public IP disabled');
      }
    }
    if (Object.keys(changes).length > 0)
      tx.emit(events.vmUpdated(at(sub, service.name, vm.name), old, changes));
    return vmView(tx.repo, c.zones, vm.id);
  });
}

/** Runs one VM operation; returns the VM afterwards, or null once it is deleted. */
export async function vmOperation(
  c: Ctx,
  ref: VmRef,
  op: VmOperation,
  reason: string = op,
  precondition?: (current: VmView) => void,
): Promise<VmView | null> {
  // Only deallocation and deletion can take the service's last allocated VM (and so its VIP),
  // and only a start can give it its first: those hold the service to themselves.
  // Inside a batch (apply) the service is held exclusively from the start: running again to take
  // a stronger lock would run the whole batch again, and meet the same need again.
  let serviceLock: 'share' | 'update' =
    op === 'deallocate' || op === 'delete' || c.inBatch() ? 'update' : 'share';
  return c.write(async (tx) => {
    const { sub, service: svc, vm, context } = await findVm(tx.repo, ref, serviceLock);
    if (
      serviceLock === 'share' &&
      tx.repo.locks &&
      op === 'start' &&
      vm.state === 'deallocated' &&
      svc.vip === null &&
      svc.reserved_ip_id === null
    ) {
      // This start draws the service's first VIP: run again holding the service (taking it now,
      // on top of the share, could deadlock with another such start).
      serviceLock = 'update';
      throw new RunAgain();
    }
    if (precondition !== undefined) precondition(detailView(context, c.zones));
    const changed = await applyOperation(c, tx, sub, svc, vm, op, reason, context);
    // The common operations say what they changed: the view needs no read of its own.
    if (changed !== undefined) return detailView({ ...context, ...changed }, c.zones);
    const [after] = await tx.repo.vmDetails({ vmId: vm.id });
    return after === undefined ? null : detailView(after, c.zones);
  });
}

/** One operation on a VM whose rows the caller holds: the transition, its addresses, its events. */
export async function applyOperation(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  op: VmOperation,
  reason: string,
  context?: VmContextRow,
): Promise<VmChange | undefined> {
  const from = vm.state;
  const to = nextState(`${service.name}/${vm.name}`, from, op);
  if (op === 'delete' || to === null) {
    await deleteVmRow(c, tx, sub, service, vm, reason);
    return undefined;
  }
  let changed: VmChange | undefined = { state: to };
  if (op === 'start' && from === 'deallocated')
    changed = await allocateVm(c, tx, sub, service, vm, reason, to, context);
  else if (op === 'deallocate') changed = await releaseVm(c, tx, sub, service, vm, reason, to, context);
  else if (to !== from) await tx.repo.updateVm(vm.id, { state: to });
  if (op === 'redeploy') {
    const hosts = await tx.repo.hosts();
    const loads = c.hostLoads.forHosts(hosts, tx.hostMoves);
    await moveVm(c, tx, vm, hosts, loads, new Set([vm.host_id!]), reason);
    changed = undefined;
  }
  tx.emit(events.vmState(op, at(sub, service.name, vm.name), reason, from, to));
  // The service row is as this operation found it: nothing in between changed its VIP (an
  // operation that could holds the service exclusively, and we hold a share of it at least).
  if (op === 'start') await settleVip(c, tx, sub, service, reason, true);
  else if (op === 'deallocate') await settleVip(c, tx, sub, service, reason);
  return changed;
}

/** Deletes a VM whose rows the caller holds: its addresses go back, its static DIP too. */
export async function deleteVmRow(
  c: Ctx,
  tx: Tx,
  sub: SubRef,
  service: ServiceRow,
  vm: VmRow,
  reason: string,
): Promise<void> {
  if (isAllocated(vm.state)) await releaseVm(c, tx, sub, service, vm, reason, 'deallocated');
  await tx.repo.deleteVm(vm.id);
  await releaseStaticDip(c, tx, vm);
  tx.emit(events.vmDeleted(at(sub, service.name, vm.name), reason, vm.state));
  await settleVip(c, tx, sub, (await tx.repo.serviceById(service.id))!, reason);
}

async function checkEndpoints(
  repo: Repo,
  service: ServiceRow,
  vmName: string,
  endpoints: Endpoint[],
): Promise<void> {
  const others = (await repo.vms({ serviceId: service.id }))
    .filter((v) => v.name !== vmName)
    .map((v) => ({ name: v.name, endpoints: JSON.parse(v.endpoints) as Endpoint[] }));
  checkServiceEndpoints(service.name, [...others, { name: vmName, endpoints }]);
}

export function listVms(c: Ctx, filter: { subscription?: string; service?: string } = {}): Promise<VmView[]> {
  return c.read(async (r) => {
    let rows: VmDetailRow[];
    if (filter.service !== undefined) {
      const { service } = await findService(r, filter.service, filter.subscription);
      rows = await r.vmDetails({ serviceId: service.id });
    } else if (filter.subscription !== undefined) {
      rows = await r.vmDetails({ subscriptionId: (await findSubscription(r, filter.subscription)).id });
    } else rows = await r.vmDetails();
    return rows.map((d) => detailView(d, c.zones));
  });
}

export function getVm(c: Ctx, ref: VmRef): Promise<VmView> {
  return c.read(async (r) => vmView(r, c.zones, (await findVm(r, ref)).vm.id));
}
