/**
 * The event catalog: every event type the lifecycle appends to the log, once, with the shape of its
 * payloads and a constructor that names its resource. The log, fsck, the agent, DNS and the
 * dashboard all read events through this module instead of matching bare strings.
 *
 * The wire names and payload shapes are the stored format (events are kept forever and streamed over
 * SSE): a constructor must build exactly what was stored before it, key order included.
 *
 * Pure and free of Node: the dashboard (bundled by Vite for the browser) imports it as it is.
 */

/** The kinds of resource an event names (the first segment of its `resource`). */
export type ResourceKind =
  'subscription' | 'pool' | 'host' | 'rack' | 'vnet' | 'reserved-ip' | 'service' | 'image' | 'vm';

type State = 'running' | 'stopped' | 'deallocated';
type Policies = { dipPolicy: string; movePolicy: string };
type ImageFields = { command: string | null; env: string[] };

/** Every event type with its `old` and `new` payloads (null where the event carries none). */
export interface EventPayloads {
  'subscription.created': { old: null; new: null };
  'subscription.deleted': { old: null; new: null };
  'pool.created': { old: null; new: { cidr: string } };
  'pool.deleted': { old: { cidr: string }; new: null };
  'host.created': { old: null; new: { rack: string } };
  'host.maintenance': { old: null; new: { hosts: string[] } };
  'vnet.created': { old: null; new: { addressSpace: string[] } & Policies };
  'vnet.updated': { old: Policies; new: Policies };
  'vnet.deleted': { old: null; new: null };
  'subnet.created': { old: null; new: { cidr: string } };
  'subnet.deleted': { old: { cidr: string }; new: null };
  'reserved-ip.address': { old: { address: string | null }; new: { address: string | null } };
  'reserved-ip.associated': { old: null; new: { service: string } };
  'reserved-ip.disassociated': { old: { service: string }; new: null };
  'service.created': { old: null; new: { vnet: string | null } };
  'service.deleted': { old: null; new: null };
  'service.vip': { old: { vip: string | null }; new: { vip: string | null } };
  'image.created': { old: null; new: ImageFields };
  'image.updated': { old: ImageFields; new: ImageFields };
  'image.deleted': { old: { command: string | null }; new: null };
  'vm.created': { old: null; new: { subnet: string; staticDip: string | null; ilpip: boolean } };
  'vm.updated': { old: Record<string, unknown>; new: Record<string, unknown> };
  'vm.started': { old: { state: State }; new: { state: State } };
  'vm.stopped': { old: { state: State }; new: { state: State } };
  'vm.deallocated': { old: { state: State }; new: { state: State } };
  'vm.restarted': { old: { state: State }; new: { state: State } };
  'vm.redeployed': { old: { state: State }; new: { state: State } };
  'vm.deleted': { old: { state: string }; new: null };
  'vm.host': { old: { host: string | null }; new: { host: string | null } };
  'vm.dip': { old: { dip: string | null }; new: { dip: string | null } };
  'vm.ilpip': { old: { ilpip: string | null }; new: { ilpip: string | null } };
}

export type EventType = keyof EventPayloads;

/** One event as the lifecycle emits it (the log numbers and times it at commit). */
export type CloudEvent<T extends EventType = EventType> = T extends EventType
  ? {
      type: T;
      subscription: string | null;
      resource: string;
      reason: string;
      old: EventPayloads[T]['old'];
      new: EventPayloads[T]['new'];
    }
  : never;

/** An address a VM, a service or a reserved IP holds, as its events name it. */
export type AddressField = 'dip' | 'ilpip' | 'vip' | 'address';

interface EventInfo {
  kind: ResourceKind;
  /** The address this event changes, for the events that change one (replayed by fsck, I6). */
  address?: AddressField;
  /** Whether the data plane (the agent's desired state) can change with it. */
  dataPlane: boolean;
  /** Whether the DNS zones (service and VM names and their addresses) can change with it. */
  dns: boolean;
}

/** What each event type is about: one row per type, the only list of them. */
export const EVENT_CATALOG: Readonly<Record<EventType, EventInfo>> = {
  'subscription.created': { kind: 'subscription', dataPlane: false, dns: false },
  'subscription.deleted': { kind: 'subscription', dataPlane: false, dns: false },
  'pool.created': { kind: 'pool', dataPlane: false, dns: false },
  'pool.deleted': { kind: 'pool', dataPlane: false, dns: false },
  'host.created': { kind: 'host', dataPlane: false, dns: false },
  'host.maintenance': { kind: 'host', dataPlane: true, dns: false },
  'vnet.created': { kind: 'vnet', dataPlane: false, dns: false },
  'vnet.updated': { kind: 'vnet', dataPlane: false, dns: false },
  'vnet.deleted': { kind: 'vnet', dataPlane: false, dns: false },
  'subnet.created': { kind: 'vnet', dataPlane: false, dns: false },
  'subnet.deleted': { kind: 'vnet', dataPlane: false, dns: false },
  'reserved-ip.address': { kind: 'reserved-ip', dataPlane: true, dns: false, address: 'address' },
  'reserved-ip.associated': { kind: 'reserved-ip', dataPlane: true, dns: false },
  'reserved-ip.disassociated': { kind: 'reserved-ip', dataPlane: true, dns: false },
  'service.created': { kind: 'service', dataPlane: true, dns: true },
  'service.deleted': { kind: 'service', dataPlane: true, dns: true },
  'service.vip': { kind: 'service', dataPlane: true, dns: true, address: 'vip' },
  'image.created': { kind: 'image', dataPlane: true, dns: false },
  'image.updated': { kind: 'image', dataPlane: true, dns: false },
  'image.deleted': { kind: 'image', dataPlane: true, dns: false },
  'vm.created': { kind: 'vm', dataPlane: true, dns: true },
  'vm.updated': { kind: 'vm', dataPlane: true, dns: true },
  'vm.started': { kind: 'vm', dataPlane: true, dns: false },
  'vm.stopped': { kind: 'vm', dataPlane: true, dns: false },
  'vm.deallocated': { kind: 'vm', dataPlane: true, dns: false },
  'vm.restarted': { kind: 'vm', dataPlane: true, dns: false },
  'vm.redeployed': { kind: 'vm', dataPlane: true, dns: false },
  'vm.deleted': { kind: 'vm', dataPlane: true, dns: true },
  'vm.host': { kind: 'vm', dataPlane: true, dns: false },
  'vm.dip': { kind: 'vm', dataPlane: true, dns: true, address: 'dip' },
  'vm.ilpip': { kind: 'vm', dataPlane: true, dns: true, address: 'ilpip' },
};

export const EVENT_TYPES = Object.keys(EVENT_CATALOG) as readonly EventType[];

export function isEventType(type: string): type is EventType {
  return Object.hasOwn(EVENT_CATALOG, type);
}

const infoOf = (type: string): EventInfo | undefined => (isEventType(type) ? EVENT_CATALOG[type] : undefined);

/** The kind of resource an event type is about; undefined for a type this build does not know. */
export function eventKind(type: string): ResourceKind | undefined {
  return infoOf(type)?.kind;
}

export function isVmEvent(type: string): boolean {
  return eventKind(type) === 'vm';
}

/** The address an event changes (`dip`, `ilpip`, `vip`, `address`), if it changes one. */
export function addressField(type: string): AddressField | undefined {
  return infoOf(type)?.address;
}

/**
 * Whether the data plane may have to change: true for a type this build does not know, since
 * missing a change is worse than reading again for nothing.
 */
export function affectsDataPlane(type: string): boolean {
  return infoOf(type)?.dataPlane ?? true;
}

/** Whether the DNS zones may change (true, too, for a type this build does not know). */
export function affectsDns(type: string): boolean {
  return infoOf(type)?.dns ?? true;
}

/** Whether a VM created or deleted: its service's list of VMs changes with it. */
export function changesVmList(type: string): boolean {
  return type === 'vm.created' || type === 'vm.deleted';
}

// ------------------------------------------------------------------ resources

/** What an event's `resource` names, parsed once for every consumer. */
export type ResourceRef =
  | { kind: 'subscription'; name: string }
  | { kind: 'pool'; cidr: string }
  | { kind: 'host'; name: string }
  | { kind: 'rack'; name: string }
  | { kind: 'vnet'; subscription: string; vnet: string; subnet: string | null }
  | { kind: 'reserved-ip'; subscription: string; name: string }
  | { kind: 'service'; service: string }
  | { kind: 'image'; name: string }
  | { kind: 'vm'; service: string; vm: string };

export const resources = {
  subscription: (name: string) => `subscription/${name}`,
  pool: (cidr: string) => `pool/${cidr}`,
  host: (name: string) => `host/${name}`,
  rack: (name: string) => `rack/${name}`,
  vnet: (subscription: string, vnet: string) => `vnet/${subscription}/${vnet}`,
  subnet: (subscription: string, vnet: string, subnet: string) => `vnet/${subscription}/${vnet}/${subnet}`,
  reservedIp: (subscription: string, name: string) => `reserved-ip/${subscription}/${name}`,
  service: (service: string) => `service/${service}`,
  image: (name: string) => `image/${name}`,
  vm: (service: string, vm: string) => `vm/${service}/${vm}`,
};

/** The resource an event names; undefined for a shape this build does not know. */
export function parseResource(resource: string): ResourceRef | undefined {
  const [kind, ...rest] = resource.split('/');
  const one = rest.length === 1 ? rest[0]! : undefined;
  switch (kind) {
    case 'subscription':
      return one === undefined ? undefined : { kind, name: one };
    case 'pool':
      // A CIDR has a slash of its own.
      return rest.length === 0 ? undefined : { kind, cidr: rest.join('/') };
    case 'host':
    case 'rack':
    case 'image':
      return one === undefined ? undefined : { kind, name: one };
    case 'vnet':
      if (rest.length !== 2 && rest.length !== 3) return undefined;
      return { kind, subscription: rest[0]!, vnet: rest[1]!, subnet: rest[2] ?? null };
    case 'reserved-ip':
      return rest.length === 2 ? { kind, subscription: rest[0]!, name: rest[1]! } : undefined;
    case 'service':
      return one === undefined ? undefined : { kind, service: one };
    case 'vm':
      return rest.length === 2 ? { kind, service: rest[0]!, vm: rest[1]! } : undefined;
    default:
      return undefined;
  }
}

// ------------------------------------------------------------------ constructors

type Payload<T extends EventType> = EventPayloads[T];

function make<T extends EventType>(
  type: T,
  subscription: string | null,
  resource: string,
  reason: string,
  old: Payload<T>['old'],
  now: Payload<T>['new'],
): CloudEvent<T> {
  return { type, subscription, resource, reason, old, new: now } as CloudEvent<T>;
}

/** Where a VM is, as its events name it. */
export interface VmAt {
  subscription: string;
  service: string;
  vm: string;
}

/** The VM operations that keep the VM, and the event each one appends. */
export const VM_OPERATION_EVENTS = {
  start: 'vm.started',
  stop: 'vm.stopped',
  deallocate: 'vm.deallocated',
  restart: 'vm.restarted',
  redeploy: 'vm.redeployed',
} as const satisfies Record<string, EventType>;

export type VmStateEvent = (typeof VM_OPERATION_EVENTS)[keyof typeof VM_OPERATION_EVENTS];

const vmEvent = <T extends EventType>(
  type: T,
  at: VmAt,
  reason: string,
  old: Payload<T>['old'],
  now: Payload<T>['new'],
) => make(type, at.subscription, resources.vm(at.service, at.vm), reason, old, now);

/** One constructor per event type. */
export const events = {
  subscriptionCreated: (name: string) =>
    make('subscription.created', name, resources.subscription(name), 'create', null, null),
  subscriptionDeleted: (name: string) =>
    make('subscription.deleted', name, resources.subscription(name), 'delete', null, null),

  poolCreated: (cidr: string) => make('pool.created', null, resources.pool(cidr), 'create', null, { cidr }),
  poolDeleted: (cidr: string) => make('pool.deleted', null, resources.pool(cidr), 'delete', { cidr }, null),
  hostCreated: (name: string, rack: string) =>
    make('host.created', null, resources.host(name), 'create', null, { rack }),
  hostMaintenance: (target: { host: string } | { rack: string }, hosts: string[], reason: string) =>
    make(
      'host.maintenance',
      null,
      'host' in target ? resources.host(target.host) : resources.rack(target.rack),
      reason,
      null,
      { hosts },
    ),

  vnetCreated: (subscription: string, vnet: string, now: Payload<'vnet.created'>['new']) =>
    make('vnet.created', subscription, resources.vnet(subscription, vnet), 'create', null, now),
  vnetUpdated: (subscription: string, vnet: string, old: Policies, now: Policies) =>
    make('vnet.updated', subscription, resources.vnet(subscription, vnet), 'update', old, now),
  vnetDeleted: (subscription: string, vnet: string) =>
    make('vnet.deleted', subscription, resources.vnet(subscription, vnet), 'delete', null, null),
  subnetCreated: (subscription: string, vnet: string, subnet: string, cidr: string) =>
    make('subnet.created', subscription, resources.subnet(subscription, vnet, subnet), 'create', null, {
      cidr,
    }),
  subnetDeleted: (subscription: string, vnet: string, subnet: string, cidr: string) =>
    make(
      'subnet.deleted',
      subscription,
      resources.subnet(subscription, vnet, subnet),
      'delete',
      { cidr },
      null,
    ),

  reservedIpAddress: (
    subscription: string,
    name: string,
    reason: string,
    old: string | null,
    now: string | null,
  ) =>
    make(
      'reserved-ip.address',
      subscription,
      resources.reservedIp(subscription, name),
      reason,
      { address: old },
      { address: now },
    ),
  reservedIpAssociated: (subscription: string, name: string, service: string) =>
    make(
      'reserved-ip.associated',
      subscription,
      resources.reservedIp(subscription, name),
      `associate with ${service}`,
      null,
      { service },
    ),
  reservedIpDisassociated: (subscription: string, name: string, service: string) =>
    make(
      'reserved-ip.disassociated',
      subscription,
      resources.reservedIp(subscription, name),
      `disassociate from ${service}`,
      { service },
      null,
    ),

  serviceCreated: (subscription: string, service: string, vnet: string | null) =>
    make('service.created', subscription, resources.service(service), 'create', null, { vnet }),
  serviceDeleted: (subscription: string, service: string) =>
    make('service.deleted', subscription, resources.service(service), 'delete', null, null),
  serviceVip: (
    subscription: string,
    service: string,
    reason: string,
    old: string | null,
    now: string | null,
  ) => make('service.vip', subscription, resources.service(service), reason, { vip: old }, { vip: now }),

  imageCreated: (name: string, now: ImageFields) =>
    make('image.created', null, resources.image(name), 'create', null, now),
  imageUpdated: (name: string, old: ImageFields, now: ImageFields) =>
    make('image.updated', null, resources.image(name), 'update', old, now),
  imageDeleted: (name: string, command: string | null) =>
    make('image.deleted', null, resources.image(name), 'delete', { command }, null),

  vmCreated: (at: VmAt, now: Payload<'vm.created'>['new']) => vmEvent('vm.created', at, 'create', null, now),
  vmUpdated: (at: VmAt, old: Record<string, unknown>, now: Record<string, unknown>) =>
    vmEvent('vm.updated', at, 'update', old, now),
  /** The event of an operation that keeps the VM: started, stopped, deallocated, restarted, redeployed. */
  vmState: (
    op: keyof typeof VM_OPERATION_EVENTS,
    at: VmAt,
    reason: string,
    from: State,
    to: State,
  ): CloudEvent<VmStateEvent> => vmEvent(VM_OPERATION_EVENTS[op], at, reason, { state: from }, { state: to }),
  vmDeleted: (at: VmAt, reason: string, state: string) => vmEvent('vm.deleted', at, reason, { state }, null),
  vmHost: (at: VmAt, reason: string, old: string | null, now: string | null) =>
    vmEvent('vm.host', at, reason, { host: old }, { host: now }),
  vmDip: (at: VmAt, reason: string, old: string | null, now: string | null) =>
    vmEvent('vm.dip', at, reason, { dip: old }, { dip: now }),
  vmIlpip: (at: VmAt, reason: string, old: string | null, now: string | null) =>
    vmEvent('vm.ilpip', at, reason, { ilpip: old }, { ilpip: now }),
};
