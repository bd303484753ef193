/**
 * The API's vocabulary, defined once: every JSON shape the API takes or gives, as a TypeBox schema
 * with its TypeScript type beside it (`Static<>`), under the same name. The server validates and
 * serializes with the schemas (and documents them in the OpenAPI 3.1 document); the lifecycle's views,
 * the CLI, the agent and the dashboard use the types. A field added to a view and not here fails the
 * typecheck, so Fastify's serializer can never drop it silently.
 *
 * Why in core/: every layer (lb, lifecycle, api, cli, agent, web) may import core, and TypeBox is as
 * pure as the rest of it. Not re-exported from core/index.ts: the schemas are values built at load
 * time, and the dashboard and the balancer's hot path, which import core's index, need none of them.
 * Everyone but the server imports types only (`import type`), which costs nothing at run time.
 */
import { Type, type Static } from 'typebox';
import { CHAOS_KINDS, type ChaosKind } from './chaos-kinds.ts';

const Name = Type.String({
  minLength: 1,
  maxLength: 64,
  description: 'a name: letters, digits, ".", "_" and "-"',
});
const DnsLabel = Type.String({
  minLength: 1,
  maxLength: 63,
  description: 'a DNS label: lowercase letters, digits and inner hyphens',
});
const Address = Type.String({ maxLength: 15, description: 'dotted-quad IPv4 address' });
const CidrText = Type.String({ maxLength: 18, description: 'IPv4 CIDR block, such as 127.16.0.0/16' });
const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

export const Problem = Type.Object(
  {
    type: Type.String(),
    title: Type.String(),
    status: Type.Integer(),
    detail: Type.String(),
    code: Type.String(),
    instance: Type.Optional(Type.String()),
    errors: Type.Optional(Type.Array(Type.Object({ path: Type.String(), message: Type.String() }))),
    errorsTotal: Type.Optional(
      Type.Integer({ description: 'how many errors there were, when more than listed' }),
    ),
  },
  { $id: 'Problem', description: 'RFC 9457 problem details, with the stable error code in `code`' },
);
export type Problem = Static<typeof Problem>;

// Endpoints: the lb's vocabulary (protocol, distribution, ACL rule) and a VM's endpoints

export const Protocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);
export type Protocol = Static<typeof Protocol>;

export const Distribution = Type.Union([
  Type.Literal('fiveTuple'),
  Type.Literal('sourceIP'),
  Type.Literal('sourceIPProtocol'),
]);
export type Distribution = Static<typeof Distribution>;

export const AclRule = Type.Object({
  order: Type.Integer(),
  action: Type.Union([Type.Literal('permit'), Type.Literal('deny')]),
  remoteSubnet: CidrText,
  description: Type.Optional(Type.String({ maxLength: 256 })),
});
export type AclRule = Static<typeof AclRule>;

const ProbeProtocol = Type.Union([Type.Literal('tcp'), Type.Literal('http')]);

/** A probe as a client writes it: the defaults are filled in by the lifecycle (Probe). */
export const ProbeSpec = Type.Object({
  protocol: Type.Optional(ProbeProtocol),
  port: Type.Optional(Type.Integer()),
  path: Type.Optional(Type.String({ maxLength: 1024 })),
  intervalSeconds: Type.Optional(Type.Integer()),
  timeoutSeconds: Type.Optional(Type.Integer()),
});

/** A probe in its canonical form, as stored and shown. */
export const Probe = Type.Object({
  protocol: ProbeProtocol,
  port: Type.Integer(),
  path: Type.Optional(Type.String()),
  intervalSeconds: Type.Integer(),
  timeoutSeconds: Type.Integer(),
});
export type Probe = Static<typeof Probe>;

/** An endpoint as a client writes it (lifecycle/endpoints.ts validates it and fills the defaults). */
export const EndpointSpec = Type.Object({
  name: Type.String({ maxLength: 32 }),
  protocol: Type.Optional(Protocol),
  publicPort: Type.Integer(),
  localPort: Type.Optional(Type.Integer()),
  lbSet: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  probe: Type.Optional(Nullable(ProbeSpec)),
  distribution: Type.Optional(Distribution),
  idleTimeoutMinutes: Type.Optional(Type.Integer()),
  acl: Type.Optional(Type.Array(AclRule, { maxItems: 256 })),
  proxyProtocol: Type.Optional(Type.Boolean()),
});
export type EndpointSpec = Static<typeof EndpointSpec>;

/** An endpoint in its canonical form (every default filled in), as stored and shown. */
export const Endpoint = Type.Object({
  name: Type.String(),
  protocol: Protocol,
  publicPort: Type.Integer(),
  localPort: Type.Integer(),
  lbSet: Type.Optional(Type.String()),
  probe: Type.Optional(Probe),
  distribution: Distribution,
  idleTimeoutMinutes: Type.Integer(),
  acl: Type.Array(AclRule),
  proxyProtocol: Type.Boolean(),
});
export type Endpoint = Static<typeof Endpoint>;

// What the API shows (SPEC.md §7): names and dotted-quad text, never ids

export const VmState = Type.Union([
  Type.Literal('running'),
  Type.Literal('stopped'),
  Type.Literal('deallocated'),
]);
export type VmState = Static<typeof VmState>;

export const Vm = Type.Object(
  {
    subscription: Type.String(),
    service: Type.String(),
    name: Type.String(),
    state: VmState,
    dip: Nullable(Address),
    host: Nullable(Type.String()),
    rack: Nullable(Type.String()),
    subnet: Type.String(),
    vnet: Type.String(),
    staticDip: Nullable(Address),
    ilpip: Nullable(Address),
    ilpipEnabled: Type.Boolean(),
    workload: Nullable(Type.String()),
    endpoints: Type.Array(Endpoint),
    /** `internal` resolves to the DIP; `public` to the ILPIP, when the VM has one enabled. */
    fqdns: Type.Object({ internal: Type.String(), public: Nullable(Type.String()) }),
  },
  { $id: 'Vm' },
);
export type Vm = Static<typeof Vm>;

export const Service = Type.Object(
  {
    subscription: Type.String(),
    name: Type.String(),
    vip: Nullable(Address),
    reservedIp: Nullable(Type.String()),
    dnsName: Type.String(),
    vnet: Nullable(Type.String()),
    vms: Type.Array(Type.String()),
  },
  { $id: 'Service' },
);
export type Service = Static<typeof Service>;

export const Subnet = Type.Object({
  name: Type.String(),
  cidr: Type.String(),
  usable: Type.Integer(),
  bound: Type.Integer(),
  free: Type.Integer(),
});
export type Subnet = Static<typeof Subnet>;

export const Vnet = Type.Object(
  {
    subscription: Type.String(),
    name: Type.String(),
    addressSpace: Type.Array(Type.String()),
    dipPolicy: Type.String(),
    movePolicy: Type.String(),
    subnets: Type.Array(Subnet),
  },
  { $id: 'Vnet' },
);
export type Vnet = Static<typeof Vnet>;

export const ReservedIp = Type.Object(
  { subscription: Type.String(), name: Type.String(), address: Address, service: Nullable(Type.String()) },
  { $id: 'ReservedIp' },
);
export type ReservedIp = Static<typeof ReservedIp>;

export const Pool = Type.Object(
  { cidr: Type.String(), usable: Type.Integer(), bound: Type.Integer(), free: Type.Integer() },
  { $id: 'Pool' },
);
export type Pool = Static<typeof Pool>;

export const Host = Type.Object(
  { name: Type.String(), rack: Type.String(), vms: Type.Integer() },
  { $id: 'Host' },
);
export type Host = Static<typeof Host>;

export const Whoami = Type.Object({
  kind: Type.Union([Type.Literal('operator'), Type.Literal('subscription')]),
  name: Type.String({ description: 'the name the token was made with' }),
  subscription: Nullable(Type.String()),
});
export type Whoami = Static<typeof Whoami>;

export const Subscription = Type.Object(
  { name: Type.String(), createdAt: Type.String() },
  { $id: 'Subscription' },
);
export type Subscription = Static<typeof Subscription>;

export const Event = Type.Object(
  {
    seq: Type.Integer(),
    time: Type.String(),
    type: Type.String(),
    subscription: Nullable(Type.String()),
    resource: Type.String(),
    reason: Type.String(),
    old: Nullable(Type.Record(Type.String(), Type.Unknown())),
    new: Nullable(Type.Record(Type.String(), Type.Unknown())),
  },
  { $id: 'Event' },
);
export type Event = Static<typeof Event>;

/** A page of the event log (GET /v1/events). */
export const EventPage = Type.Object({
  events: Type.Array(Event),
  next: Type.Integer({ description: 'the cursor of the following page' }),
});
export type EventPage = Static<typeof EventPage>;

/** A workload image; a tenant sees neither its command nor its environment. */
export const Image = Type.Object(
  {
    name: Type.String(),
    builtin: Type.Boolean(),
    /** Absent for tenants; null for the built-ins (they run through vipdip itself). */
    command: Type.Optional(Nullable(Type.String())),
    env: Type.Optional(Type.Record(Type.String(), Type.String())),
    /** Null for the built-ins. */
    createdAt: Nullable(Type.String()),
  },
  { description: 'a workload image' },
);
export type Image = Static<typeof Image>;

// Request bodies

export const CreateSubscription = Type.Object({ name: Name }, { additionalProperties: false });
export const CreateToken = Type.Object({ name: Name }, { additionalProperties: false });
export const CreatePool = Type.Object({ cidr: CidrText }, { additionalProperties: false });
export const CreateHost = Type.Object({ name: Name, rack: Name }, { additionalProperties: false });
export const SubnetSpec = Type.Object({ name: Name, cidr: CidrText }, { additionalProperties: false });
export const CreateVnet = Type.Object(
  {
    name: Name,
    addressSpace: Type.Array(CidrText, { minItems: 1, maxItems: 64 }),
    subnets: Type.Optional(Type.Array(SubnetSpec, { maxItems: 1024 })),
    dipPolicy: Type.Optional(Type.Union([Type.Literal('random'), Type.Literal('sequential')])),
    movePolicy: Type.Optional(Type.Union([Type.Literal('redraw'), Type.Literal('keep')])),
  },
  { additionalProperties: false },
);
export const PatchVnet = Type.Object(
  {
    dipPolicy: Type.Optional(Type.Union([Type.Literal('random'), Type.Literal('sequential')])),
    movePolicy: Type.Optional(Type.Union([Type.Literal('redraw'), Type.Literal('keep')])),
  },
  { additionalProperties: false },
);
export const CreateReservedIp = Type.Object({ name: Name }, { additionalProperties: false });
export const Associate = Type.Object({ service: DnsLabel }, { additionalProperties: false });
export const CreateService = Type.Object(
  { name: DnsLabel, vnet: Type.Optional(Nullable(Name)), reservedIp: Type.Optional(Nullable(Name)) },
  { additionalProperties: false },
);
export const ReserveVip = Type.Object({ name: Name }, { additionalProperties: false });
/** A VM's workload: an image name, or an operator's inline command `command: <command line>`. */
const Workload = Type.String({
  minLength: 1,
  maxLength: 4096,
  description: 'an image name (GET /v1/images), or, from the operator only, "command: <command line>"',
});
export const CreateVm = Type.Object(
  {
    name: DnsLabel,
    subnet: Name,
    staticDip: Type.Optional(Nullable(Address)),
    ilpip: Type.Optional(Type.Boolean()),
    workload: Type.Optional(Nullable(Workload)),
    endpoints: Type.Optional(Type.Array(EndpointSpec, { maxItems: 128 })),
    start: Type.Optional(Type.Boolean({ description: 'start the VM at once (default true)' })),
  },
  { additionalProperties: false },
);
export const PatchVm = Type.Object(
  {
    staticDip: Type.Optional(Nullable(Address)),
    ilpip: Type.Optional(Type.Boolean()),
    workload: Type.Optional(Nullable(Workload)),
    endpoints: Type.Optional(Type.Array(EndpointSpec, { maxItems: 128 })),
  },
  { additionalProperties: false },
);
export const Maintenance = Type.Object({}, { additionalProperties: false });

/** At most this many resources in one `resource=` filter of the event log. */
export const EVENT_RESOURCES_MAX = 16;

export const EventsQuery = Type.Object(
  {
    since: Type.Optional(
      Type.String({ maxLength: 15, pattern: '^[0-9]{1,15}$', description: 'events after this seq' }),
    ),
    before: Type.Optional(
      Type.String({
        maxLength: 15,
        pattern: '^[0-9]{1,15}$',
        description: 'events before this seq (with order=desc)',
      }),
    ),
    limit: Type.Optional(Type.String({ maxLength: 5, pattern: '^[0-9]{1,5}$' })),
    order: Type.Optional(
      Type.Union([Type.Literal('asc'), Type.Literal('desc')], {
        description: 'asc (default): oldest first from since; desc: newest first, before `before`',
      }),
    ),
    resource: Type.Optional(
      Type.String({
        maxLength: 4096,
        pattern: '^[^,]+(,[^,]+)*$',
        description: `only the events of these resources (comma-separated, at most ${EVENT_RESOURCES_MAX}), such as vm/shop/web1,service/shop`,
      }),
    ),
  },
  { additionalProperties: false },
);

export type CreateVmBody = Static<typeof CreateVm>;
export type PatchVmBody = Static<typeof PatchVm>;

// The data plane: backend health, workload logs, agent reports

export const BackendState = Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown')]);
export type BackendState = Static<typeof BackendState>;
const RunStatus = [
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('stopped'),
  Type.Literal('crashed'),
] as const;
/** A VM's workload as the API shows it: `none` when the VM has none. */
export const WorkloadStatus = Type.Union([Type.Literal('none'), ...RunStatus]);
export type WorkloadStatus = Static<typeof WorkloadStatus>;
const Text = (maxLength: number) => Type.String({ maxLength });

export const BackendHealth = Type.Object({
  vm: Type.String(),
  dip: Nullable(Address),
  localPort: Type.Integer(),
  state: BackendState,
  since: Nullable(Type.String({ description: 'ISO time of the last change, when known' })),
  detail: Nullable(Type.String()),
});
export type BackendHealth = Static<typeof BackendHealth>;

export const EndpointHealth = Type.Object({
  name: Type.String(),
  protocol: Protocol,
  publicPort: Type.Integer(),
  lbSet: Nullable(Type.String()),
  vip: Nullable(Address),
  backends: Type.Array(BackendHealth),
});
export type EndpointHealth = Static<typeof EndpointHealth>;

export const ServiceHealth = Type.Object(
  { service: Type.String(), endpoints: Type.Array(EndpointHealth) },
  { $id: 'ServiceHealth', description: 'health of every backend of every endpoint of a cloud service' },
);
export type ServiceHealth = Static<typeof ServiceHealth>;

/** The live health message of the event stream (`event: health`, no id: not part of the log). */
export const HealthChange = Type.Object({
  service: Type.String(),
  endpoint: Type.String(),
  vm: Type.String(),
  dip: Nullable(Address),
  state: BackendState,
  since: Nullable(Type.String()),
  detail: Nullable(Type.String()),
});
export type HealthChange = Static<typeof HealthChange>;

export const LogLine = Type.Object({
  time: Text(40),
  stream: Type.Union([Type.Literal('stdout'), Type.Literal('stderr')]),
  text: Text(4096),
});
export type LogLine = Static<typeof LogLine>;

export const WorkloadLogs = Type.Object(
  {
    vm: Type.String(),
    workload: Nullable(Type.String()),
    status: WorkloadStatus,
    pid: Nullable(Type.Integer()),
    restarts: Type.Integer(),
    lines: Type.Array(LogLine),
    agent: Nullable(Type.String({ description: 'the agent that runs (or ran) it' })),
    reportedAt: Nullable(Type.String({ description: 'when that agent last reported' })),
    stale: Type.Boolean({ description: 'true when that agent has not reported for a while' }),
  },
  { $id: 'WorkloadLogs' },
);
export type WorkloadLogs = Static<typeof WorkloadLogs>;

const Name64 = Text(64);

/** One backend an agent balances, and what its probes say of it. */
export const BackendReport = Type.Object(
  {
    subscription: Name64,
    service: Name64,
    /** The endpoint's name on this VM. */
    endpoint: Name64,
    vm: Name64,
    dip: Nullable(Address),
    localPort: Type.Integer({ minimum: 1, maximum: 65535 }),
    state: BackendState,
    /** ISO time of the last change of `state`, when known. */
    since: Nullable(Text(40)),
    detail: Nullable(Text(1024)),
  },
  { additionalProperties: false },
);
export type BackendReport = Static<typeof BackendReport>;

/** One workload an agent runs: its status and last output lines. */
export const WorkloadReport = Type.Object(
  {
    subscription: Name64,
    service: Name64,
    vm: Name64,
    workload: Text(4096),
    status: Type.Union([...RunStatus]),
    pid: Nullable(Type.Integer()),
    restarts: Type.Integer({ minimum: 0 }),
    lines: Type.Array(LogLine, { maxItems: 1000 }),
  },
  { additionalProperties: false },
);
export type WorkloadReport = Static<typeof WorkloadReport>;

/** One listener of an agent's data plane (the driver's ListenerStatus). */
export const ListenerReport = Type.Object(
  {
    key: Text(64),
    address: Address,
    protocol: Protocol,
    port: Type.Integer({ minimum: 0, maximum: 65535 }),
    state: Type.Union([Type.Literal('listening'), Type.Literal('failed'), Type.Literal('recorded')]),
    /** Why it is not listening (a bind error, say). */
    error: Nullable(Text(1024)),
    activeFlows: Type.Integer({ minimum: 0 }),
    accepted: Type.Integer({ minimum: 0 }),
    deniedAcl: Type.Integer({ minimum: 0 }),
    noBackend: Type.Integer({ minimum: 0 }),
    overLimit: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type ListenerReport = Static<typeof ListenerReport>;

/**
 * What an agent tells the control plane (PUT /v1/agents/:agent/report, or in process): the health of
 * the backends it balances and the status and last output of the workloads it runs.
 */
export const AgentReport = Type.Object(
  {
    /** The agent's name, unique among the agents of one control plane. */
    agent: Name64,
    /** The hosts whose VMs it runs, or null for all of them. */
    hosts: Nullable(Type.Array(Name64, { maxItems: 10_000 })),
    /** Whether it runs the load balancer (listeners and probes). */
    lb: Type.Boolean(),
    driver: Text(16),
    backends: Type.Array(BackendReport, { maxItems: 100_000 }),
    workloads: Type.Array(WorkloadReport, { maxItems: 100_000 }),
    listeners: Type.Array(ListenerReport, { maxItems: 100_000 }),
  },
  { additionalProperties: false },
);
export type AgentReport = Static<typeof AgentReport>;

export const AgentSeen = Type.Object({
  agent: Type.String(),
  hosts: Nullable(Type.Array(Type.String())),
  lb: Type.Boolean(),
  driver: Type.String(),
  reportedAt: Type.String(),
  stale: Type.Boolean(),
});
export type AgentSeen = Static<typeof AgentSeen>;

// Chaos runs (SPEC §9)

const ChaosCounts = Type.Object({ done: Type.Integer(), skipped: Type.Integer(), failed: Type.Integer() });

/** Operations per minute of each kind; a kind left out (or 0) never happens. */
export const ChaosRates = Type.Object(
  Object.fromEntries(CHAOS_KINDS.map((k) => [k, Type.Optional(Type.Number())])) as Record<
    ChaosKind,
    Type.TOptional<Type.TNumber>
  >,
  { description: 'operations per minute of each kind' },
);
export type ChaosRates = Static<typeof ChaosRates>;

export const ChaosRunState = Type.Union([
  Type.Literal('running'),
  Type.Literal('stopping'),
  Type.Literal('finished'),
  Type.Literal('stopped'),
  Type.Literal('failed'),
]);
export type ChaosRunState = Static<typeof ChaosRunState>;

/** One step a run performed. */
export const ChaosRunStep = Type.Object({
  seq: Type.Integer(),
  /** When it ran. */
  time: Type.String(),
  action: Type.String(),
  kind: Type.Enum(CHAOS_KINDS),
  target: Type.String(),
  outcome: Type.Union([Type.Literal('done'), Type.Literal('skipped'), Type.Literal('failed')]),
  /** What changed (VMs moved, addresses), or why it was skipped or failed. */
  detail: Type.String(),
});
export type ChaosRunStep = Static<typeof ChaosRunStep>;

export const ChaosRun = Type.Object({
  id: Type.String(),
  /** The reason every event of the run carries, before `: ACTION`. */
  reason: Type.String(),
  subscription: Nullable(Type.String()),
  services: Nullable(Type.Array(Type.String())),
  seed: Type.Integer(),
  rates: ChaosRates,
  pauseMs: Type.Integer(),
  durationMs: Nullable(Type.Integer()),
  state: ChaosRunState,
  startedAt: Type.String(),
  /** When the weather stops being drawn (null: until stopped). */
  endsAt: Nullable(Type.String()),
  endedAt: Nullable(Type.String()),
  /** Why a run failed, or who stopped it. */
  note: Nullable(Type.String()),
  /** Steps performed of each kind, by outcome. */
  counts: Type.Object(
    Object.fromEntries(CHAOS_KINDS.map((k) => [k, ChaosCounts])) as Record<ChaosKind, typeof ChaosCounts>,
  ),
  /** The next step and when it is due; null once nothing is left. */
  next: Nullable(
    Type.Object({ seq: Type.Integer(), at: Type.String(), action: Type.String(), target: Type.String() }),
  ),
  /** The last steps, oldest first. */
  recent: Type.Array(ChaosRunStep),
});
export type ChaosRun = Static<typeof ChaosRun>;
