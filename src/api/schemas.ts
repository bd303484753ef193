/**
 * Request and response schemas. Each one validates requests, types the handlers (through the
 * TypeBox type provider) and becomes part of the OpenAPI 3.1 document.
 */
import { Type, type Static } from 'typebox';

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

export const Probe = Type.Object({
  protocol: Type.Optional(Type.Union([Type.Literal('tcp'), Type.Literal('http')])),
  port: Type.Optional(Type.Integer()),
  path: Type.Optional(Type.String({ maxLength: 1024 })),
  intervalSeconds: Type.Optional(Type.Integer()),
  timeoutSeconds: Type.Optional(Type.Integer()),
});

export const AclRule = Type.Object({
  order: Type.Integer(),
  action: Type.Union([Type.Literal('permit'), Type.Literal('deny')]),
  remoteSubnet: CidrText,
  description: Type.Optional(Type.String({ maxLength: 256 })),
});

export const Endpoint = Type.Object({
  name: Type.String({ maxLength: 32 }),
  protocol: Type.Optional(Type.Union([Type.Literal('tcp'), Type.Literal('udp')])),
  publicPort: Type.Integer(),
  localPort: Type.Optional(Type.Integer()),
  lbSet: Type.Optional(Nullable(Type.String({ maxLength: 32 }))),
  probe: Type.Optional(Nullable(Probe)),
  distribution: Type.Optional(
    Type.Union([Type.Literal('fiveTuple'), Type.Literal('sourceIP'), Type.Literal('sourceIPProtocol')]),
  ),
  idleTimeoutMinutes: Type.Optional(Type.Integer()),
  acl: Type.Optional(Type.Array(AclRule, { maxItems: 256 })),
  proxyProtocol: Type.Optional(Type.Boolean()),
});

export const Vm = Type.Object(
  {
    subscription: Type.String(),
    service: Type.String(),
    name: Type.String(),
    state: Type.Union([Type.Literal('running'), Type.Literal('stopped'), Type.Literal('deallocated')]),
    dip: Nullable(Address),
    host: Nullable(Type.String()),
    rack: Nullable(Type.String()),
    subnet: Type.String(),
    vnet: Type.String(),
    staticDip: Nullable(Address),
    ilpip: Nullable(Address),
    ilpipEnabled: Type.Boolean(),
    workload: Nullable(Type.String()),
    endpoints: Type.Array(Type.Unknown()),
    fqdns: Type.Object({ internal: Type.String(), public: Nullable(Type.String()) }),
  },
  { $id: 'Vm' },
);

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

export const Subnet = Type.Object({
  name: Type.String(),
  cidr: Type.String(),
  usable: Type.Integer(),
  bound: Type.Integer(),
  free: Type.Integer(),
});

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

export const ReservedIp = Type.Object(
  { subscription: Type.String(), name: Type.String(), address: Address, service: Nullable(Type.String()) },
  { $id: 'ReservedIp' },
);

export const Pool = Type.Object(
  { cidr: Type.String(), usable: Type.Integer(), bound: Type.Integer(), free: Type.Integer() },
  { $id: 'Pool' },
);

export const Host = Type.Object(
  { name: Type.String(), rack: Type.String(), vms: Type.Integer() },
  { $id: 'Host' },
);

export const Whoami = Type.Object({
  kind: Type.Union([Type.Literal('operator'), Type.Literal('subscription')]),
  name: Type.String({ description: 'the name the token was made with' }),
  subscription: Nullable(Type.String()),
});

export const Subscription = Type.Object(
  { name: Type.String(), createdAt: Type.String() },
  { $id: 'Subscription' },
);

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
    endpoints: Type.Optional(Type.Array(Endpoint, { maxItems: 128 })),
    start: Type.Optional(Type.Boolean({ description: 'start the VM at once (default true)' })),
  },
  { additionalProperties: false },
);
export const PatchVm = Type.Object(
  {
    staticDip: Type.Optional(Nullable(Address)),
    ilpip: Type.Optional(Type.Boolean()),
    workload: Type.Optional(Nullable(Workload)),
    endpoints: Type.Optional(Type.Array(Endpoint, { maxItems: 128 })),
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

const BackendState = Type.Union([Type.Literal('up'), Type.Literal('down'), Type.Literal('unknown')]);
const WorkloadStatus = Type.Union([
  Type.Literal('none'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('stopped'),
  Type.Literal('crashed'),
]);
const Protocol = Type.Union([Type.Literal('tcp'), Type.Literal('udp')]);
const Text = (maxLength: number) => Type.String({ maxLength });

export const ServiceHealth = Type.Object(
  {
    service: Type.String(),
    endpoints: Type.Array(
      Type.Object({
        name: Type.String(),
        protocol: Protocol,
        publicPort: Type.Integer(),
        lbSet: Nullable(Type.String()),
        vip: Nullable(Address),
        backends: Type.Array(
          Type.Object({
            vm: Type.String(),
            dip: Nullable(Address),
            localPort: Type.Integer(),
            state: BackendState,
            since: Nullable(Type.String({ description: 'ISO time of the last change, when known' })),
            detail: Nullable(Type.String()),
          }),
        ),
      }),
    ),
  },
  { $id: 'ServiceHealth', description: 'health of every backend of every endpoint of a cloud service' },
);

const LogLine = Type.Object({
  time: Text(40),
  stream: Type.Union([Type.Literal('stdout'), Type.Literal('stderr')]),
  text: Text(4096),
});

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

const Name64 = Text(64);
export const AgentReportBody = Type.Object(
  {
    agent: Name64,
    hosts: Nullable(Type.Array(Name64, { maxItems: 10_000 })),
    lb: Type.Boolean(),
    driver: Text(16),
    backends: Type.Array(
      Type.Object(
        {
          subscription: Name64,
          service: Name64,
          endpoint: Name64,
          vm: Name64,
          dip: Nullable(Address),
          localPort: Type.Integer({ minimum: 1, maximum: 65535 }),
          state: BackendState,
          since: Nullable(Text(40)),
          detail: Nullable(Text(1024)),
        },
        { additionalProperties: false },
      ),
      { maxItems: 100_000 },
    ),
    workloads: Type.Array(
      Type.Object(
        {
          subscription: Name64,
          service: Name64,
          vm: Name64,
          workload: Text(4096),
          status: Type.Union([
            Type.Literal('starting'),
            Type.Literal('running'),
            Type.Literal('stopped'),
            Type.Literal('crashed'),
          ]),
          pid: Nullable(Type.Integer()),
          restarts: Type.Integer({ minimum: 0 }),
          lines: Type.Array(LogLine, { maxItems: 1000 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 100_000 },
    ),
    listeners: Type.Array(
      Type.Object(
        {
          key: Text(64),
          address: Address,
          protocol: Protocol,
          port: Type.Integer({ minimum: 0, maximum: 65535 }),
          state: Type.Union([Type.Literal('listening'), Type.Literal('failed'), Type.Literal('recorded')]),
          error: Nullable(Text(1024)),
          activeFlows: Type.Integer({ minimum: 0 }),
          accepted: Type.Integer({ minimum: 0 }),
          deniedAcl: Type.Integer({ minimum: 0 }),
          noBackend: Type.Integer({ minimum: 0 }),
          overLimit: Type.Integer({ minimum: 0 }),
        },
        { additionalProperties: false },
      ),
      { maxItems: 100_000 },
    ),
  },
  { additionalProperties: false },
);

export const AgentSeen = Type.Object({
  agent: Type.String(),
  hosts: Nullable(Type.Array(Type.String())),
  lb: Type.Boolean(),
  driver: Type.String(),
  reportedAt: Type.String(),
  stale: Type.Boolean(),
});
