/** Rows as the API shows them: a VM with its names and FQDNs, an event with its payloads parsed. */
import type { EventRow, Repo, VmDetailRow } from '../store/index.ts';
import { ip } from './context.ts';
import { vmFqdns, type DnsZones } from './dns-names.ts';
import type { Endpoint } from './endpoints.ts';
import type { EventView, VmView } from './views.ts';

/** What an operation changed of its VM's row (and host), for the view it returns. */
export type VmChange = Partial<
  Pick<VmDetailRow, 'state' | 'dip' | 'host_id' | 'host_name' | 'host_rack' | 'ilpip' | 'ilpip_pool_id'>
>;

export function detailView(d: VmDetailRow, zones: DnsZones): VmView {
  const ilpipEnabled = d.ilpip_enabled;
  return {
    subscription: d.subscription_name,
    service: d.service_name,
    name: d.name,
    state: d.state,
    dip: ip(d.dip),
    host: d.host_name,
    rack: d.host_rack,
    subnet: d.subnet_name,
    vnet: d.vnet_name,
    staticDip: ip(d.static_dip),
    ilpip: ip(d.ilpip),
    ilpipEnabled,
    workload: d.workload,
    endpoints: JSON.parse(d.endpoints) as Endpoint[],
    fqdns: vmFqdns({ service: d.service_name, name: d.name, ilpipEnabled }, zones),
  };
}

export async function vmView(repo: Repo, zones: DnsZones, vmId: number): Promise<VmView> {
  const [d] = await repo.vmDetails({ vmId });
  return detailView(d!, zones);
}

export function toEventView(r: EventRow): EventView {
  return {
    seq: Number(r.seq),
    time: r.time,
    type: r.type,
    subscription: r.subscription,
    resource: r.resource,
    reason: r.reason,
    old: r.old === null ? null : (JSON.parse(r.old) as Record<string, unknown>),
    new: r.new === null ? null : (JSON.parse(r.new) as Record<string, unknown>),
  };
}
