/**
 * The HTTP API end to end: every operation of every resource over real HTTP against a real
 * `vipdip up` process, with the JSON contract of SPEC.md §7 checked on every body, every error
 * class as RFC 9457 problem+json, ETags, the OpenAPI document, health and metrics, the declarative
 * apply (idempotence, dry run, prune, validation), and a clean shutdown that leaves fsck clean.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

// ------------------------------------------------------------------ contract shapes (SPEC.md §7)

interface Vm {
  subscription: string;
  service: string;
  name: string;
  state: 'running' | 'stopped' | 'deallocated';
  dip: string | null;
  host: string | null;
  rack: string | null;
  subnet: string;
  vnet: string;
  staticDip: string | null;
  ilpip: string | null;
  ilpipEnabled: boolean;
  workload: string | null;
  endpoints: Record<string, unknown>[];
}
interface Service {
  subscription: string;
  name: string;
  vip: string | null;
  reservedIp: string | null;
  dnsName: string;
  vnet: string | null;
  vms: string[];
}
interface Subnet {
  name: string;
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}
interface Vnet {
  subscription: string;
  name: string;
  addressSpace: string[];
  dipPolicy: string;
  movePolicy: string;
  subnets: Subnet[];
}
interface ReservedIp {
  subscription: string;
  name: string;
  address: string;
  service: string | null;
}
interface Pool {
  cidr: string;
  usable: number;
  bound: number;
  free: number;
}
interface Host {
  name: string;
  rack: string;
  vms: number;
}
interface Subscription {
  name: string;
  createdAt: string;
}
interface Event {
  seq: number;
  time: string;
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}
interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: { path: string; message: string }[];
}
interface Change {
  action: string;
  kind: string;
  name: string;
  detail?: string;
}
interface ApplyResult {
  dryRun: boolean;
  changes: Change[];
  wouldDelete: Change[];
}
type Res = Awaited<ReturnType<typeof call>>;

const PUBLIC_POOL = '127.100.0.0/16';
const ZONE = 'cloudapp.vipdip.test';

const isObj = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  assert.equal(parts.length, 4, `${ip} is not a dotted quad`);
  return parts.reduce((n, p) => n * 256 + p, 0);
}
function inCidr(ip: string, cidr: string): boolean {
  const [base, prefix] = cidr.split('/');
  const size = 2 ** (32 - Number(prefix));
  const b = ipToInt(base!);
  const n = ipToInt(ip);
  return n >= b && n < b + size;
}
/** Inside the subnet and none of Azure's five reserved addresses (first four, broadcast). */
function usableIn(ip: string, cidr: string): boolean {
  if (!inCidr(ip, cidr)) return false;
  const [base, prefix] = cidr.split('/');
  const off = ipToInt(ip) - ipToInt(base!);
  return off >= 4 && off < 2 ** (32 - Number(prefix)) - 1;
}

function hasKeys(v: unknown, keys: readonly string[], what: string): asserts v is Record<string, unknown> {
  assert.ok(isObj(v), `${what} is not an object: ${JSON.stringify(v)}`);
  for (const k of keys) assert.ok(k in v, `${what} lacks "${k}": ${JSON.stringify(v)}`);
}

const VM_KEYS = [
  'subscription',
  'service',
  'name',
  'state',
  'dip',
  'host',
  'subnet',
  'vnet',
  'staticDip',
  'ilpip',
  'endpoints',
] as const;
function asVm(v: unknown): Vm {
  hasKeys(v, VM_KEYS, 'VM');
  for (const k of ['subscription', 'service', 'name', 'subnet', 'vnet'] as const)
    assert.equal(typeof v[k], 'string', `VM.${k}`);
  assert.ok(['running', 'stopped', 'deallocated'].includes(v.state as string), `VM.state ${String(v.state)}`);
  // I3: a DIP (and a host) exactly while allocated; `dip` is null when deallocated.
  if (v.state === 'deallocated') {
    assert.equal(v.dip, null, 'a deallocated VM has no DIP');
    assert.equal(v.host, null, 'a deallocated VM has no host');
    assert.equal(v.ilpip, null, 'a deallocated VM has no ILPIP');
  } else {
    assert.equal(typeof v.dip, 'string', 'an allocated VM has a DIP');
    assert.equal(typeof v.host, 'string', 'an allocated VM has a host');
  }
  for (const k of ['staticDip', 'ilpip'] as const)
    assert.ok(v[k] === null || typeof v[k] === 'string', `VM.${k} is an address or null`);
  assert.ok(Array.isArray(v.endpoints), 'VM.endpoints is a list');
  return v as unknown as Vm;
}
const SERVICE_KEYS = ['subscription', 'name', 'vip', 'reservedIp', 'dnsName', 'vnet', 'vms'] as const;
function asService(v: unknown): Service {
  hasKeys(v, SERVICE_KEYS, 'service');
  assert.equal(typeof v.name, 'string');
  assert.equal(v.dnsName, `${String(v.name)}.${ZONE}`, 'dnsName is NAME.cloudapp.<zone>');
  assert.ok(v.vip === null || typeof v.vip === 'string', 'vip is an address or null');
  assert.ok(v.reservedIp === null || typeof v.reservedIp === 'string');
  assert.ok(v.vnet === null || typeof v.vnet === 'string');
  assert.ok(Array.isArray(v.vms) && v.vms.every((n) => typeof n === 'string'), 'vms is a list of names');
  return v as unknown as Service;
}
function asVnet(v: unknown): Vnet {
  hasKeys(v, ['subscription', 'name', 'addressSpace', 'dipPolicy', 'movePolicy', 'subnets'], 'vnet');
  assert.ok(Array.isArray(v.subnets));
  for (const s of v.subnets as unknown[]) {
    hasKeys(s, ['name', 'cidr', 'usable', 'bound', 'free'], 'subnet');
    assert.equal(Number(s.bound) + Number(s.free), s.usable, 'I5: bound + free = usable');
  }
  return v as unknown as Vnet;
}
function asReservedIp(v: unknown): ReservedIp {
  hasKeys(v, ['subscription', 'name', 'address', 'service'], 'reserved IP');
  assert.ok(inCidr(v.address as string, PUBLIC_POOL), `reserved IP ${String(v.address)} is in the pool`);
  return v as unknown as ReservedIp;
}
function asEvent(v: unknown): Event {
  hasKeys(v, ['seq', 'time', 'type', 'subscription', 'resource', 'reason', 'old', 'new'], 'event');
  assert.ok(Number.isInteger(v.seq));
  return v as unknown as Event;
}

/** An RFC 9457 problem with the expected status (and code), served as application/problem+json. */
function problem(r: Res, status: number, code?: string): Problem {
  assert.equal(r.status, status, `expected ${status}${code ? ` ${code}` : ''}, got ${r.status}: ${r.text}`);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, r.text);
  hasKeys(r.body, ['type', 'title', 'status', 'detail', 'code'], 'problem');
  const p = r.body as unknown as Problem;
  assert.equal(typeof p.type, 'string');
  assert.equal(typeof p.title, 'string');
  assert.equal(p.status, status, 'problem.status is the HTTP status');
  assert.ok(typeof p.detail === 'string' && p.detail.length > 0, 'problem.detail says what is wrong');
  assert.equal(typeof p.code, 'string');
  if (code !== undefined) assert.equal(p.code, code, p.detail);
  return p;
}

function ok(r: Res, status = 200): unknown {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  return r.body;
}

// ------------------------------------------------------------------ the server

let srv: TestServer;
let op: string;
let stopped = false;
let contosoToken: string;

const api = (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) =>
  call(srv, op, method, path, body, headers);
const withToken = (token: string | undefined, method: string, path: string, body?: unknown) =>
  call(srv, token, method, path, body);

const YAML = { 'content-type': 'application/yaml' };

async function lastSeq(): Promise<number> {
  let since = 0;
  for (;;) {
    const page = ok(await api('GET', `/v1/events?since=${since}&limit=1000`)) as {
      events: unknown[];
      next: number;
    };
    if (page.events.map(asEvent).length === 0) return since;
    since = page.next;
  }
}

/** Everything a user can see, for before/after comparisons. */
async function dump(): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const p of [
    '/v1/subscriptions',
    '/v1/vnets',
    '/v1/reserved-ips',
    '/v1/services',
    '/v1/vms',
    '/v1/pools',
    '/v1/hosts',
  ])
    out[p] = ok(await api('GET', p));
  out.lastSeq = await lastSeq();
  return JSON.stringify(out);
}

async function newService(name: string, vnet: string | null = 'net', reservedIp?: string): Promise<Service> {
  return asService(
    ok(
      await api('POST', '/v1/subscriptions/contoso/services', {
        name,
        vnet,
        ...(reservedIp ? { reservedIp } : {}),
      }),
      201,
    ),
  );
}
async function newVm(service: string, spec: Record<string, unknown>): Promise<Vm> {
  return asVm(ok(await api('POST', `/v1/services/${service}/vms`, spec), 201));
}
async function getVm(service: string, vm: string): Promise<Vm> {
  return asVm(ok(await api('GET', `/v1/services/${service}/vms/${vm}`)));
}
async function getService(name: string): Promise<Service> {
  return asService(ok(await api('GET', `/v1/services/${name}`)));
}
async function vmOp(service: string, vm: string, operation: string): Promise<Vm> {
  return asVm(ok(await api('POST', `/v1/services/${service}/vms/${vm}/${operation}`)));
}

before(async () => {
  srv = await startServer();
  op = srv.operatorToken;
  ok(await api('POST', '/v1/subscriptions', { name: 'contoso' }), 201);
  ok(
    await api('POST', '/v1/subscriptions/contoso/vnets', {
      name: 'net',
      addressSpace: ['127.16.0.0/16'],
      subnets: [
        { name: 'front', cidr: '127.16.1.0/24' },
        { name: 'back', cidr: '127.16.2.0/24' },
        { name: 'tiny', cidr: '127.16.9.0/29' },
      ],
    }),
    201,
  );
  const t = ok(await api('POST', '/v1/subscriptions/contoso/tokens', { name: 'contoso-ci' }), 201) as {
    token: string;
  };
  contosoToken = t.token;
});

after(async () => {
  if (!stopped) await srv.stop();
});

// ------------------------------------------------------------------ subscriptions and tokens

describe('subscriptions and tokens', () => {
  test('a subscription is created, listed, read and deleted', async () => {
    const created = ok(await api('POST', '/v1/subscriptions', { name: 'fabrikam' }), 201) as Subscription;
    assert.equal(created.name, 'fabrikam');
    assert.ok(!Number.isNaN(Date.parse(created.createdAt)), 'createdAt is a timestamp');
    const list = ok(await api('GET', '/v1/subscriptions')) as Subscription[];
    assert.deepEqual(
      list.find((s) => s.name === 'fabrikam'),
      created,
    );
    const one = await api('GET', '/v1/subscriptions/fabrikam');
    assert.deepEqual(ok(one), created);
    assert.ok(one.headers.get('etag'), 'a single resource carries an ETag');
    assert.equal((await api('DELETE', '/v1/subscriptions/fabrikam')).status, 204);
    problem(await api('GET', '/v1/subscriptions/fabrikam'), 404, 'NOT_FOUND');
    problem(await api('DELETE', '/v1/subscriptions/fabrikam'), 404, 'NOT_FOUND');
  });

  test('a second subscription of the same name is refused with 409 ALREADY_EXISTS', async () => {
    problem(await api('POST', '/v1/subscriptions', { name: 'contoso' }), 409, 'ALREADY_EXISTS');
  });

  test('a subscription that still has resources is not deleted (409 IN_USE)', async () => {
    problem(await api('DELETE', '/v1/subscriptions/contoso'), 409, 'IN_USE');
    ok(await api('GET', '/v1/subscriptions/contoso'));
  });

  test('a subscription token sees only its subscription, is listed without its secret, and can be revoked', async () => {
    const made = ok(await api('POST', '/v1/subscriptions/contoso/tokens', { name: 'deploy' }), 201) as {
      name: string;
      subscription: string;
      token: string;
    };
    assert.equal(made.name, 'deploy');
    assert.equal(made.subscription, 'contoso');
    assert.match(made.token, /^vipdip_/);
    ok(await api('POST', '/v1/subscriptions', { name: 'northwind' }), 201);

    const tokens = await api('GET', '/v1/tokens');
    const list = ok(tokens) as { name: string; subscription: string | null; createdAt: string }[];
    const entry = list.find((t) => t.name === 'deploy');
    assert.ok(entry, 'the new token is listed');
    assert.equal(entry.subscription, 'contoso');
    assert.ok(!Number.isNaN(Date.parse(entry.createdAt)));
    assert.ok(!tokens.text.includes(made.token), 'the token list never shows a secret');
    assert.ok(
      list.some((t) => t.subscription === null),
      'the operator token is listed, with a null subscription',
    );

    const mine = ok(await withToken(made.token, 'GET', '/v1/subscriptions')) as Subscription[];
    assert.deepEqual(
      mine.map((s) => s.name),
      ['contoso'],
    );

    assert.equal((await api('DELETE', '/v1/subscriptions/contoso/tokens/deploy')).status, 204);
    problem(await withToken(made.token, 'GET', '/v1/subscriptions'), 401, 'UNAUTHORIZED');
    problem(await api('DELETE', '/v1/subscriptions/contoso/tokens/deploy'), 404, 'NOT_FOUND');
    assert.equal((await api('DELETE', '/v1/subscriptions/northwind')).status, 204);
  });

  test('deleting a subscription revokes its tokens for good', async () => {
    ok(await api('POST', '/v1/subscriptions', { name: 'ephemeral' }), 201);
    const { token } = ok(await api('POST', '/v1/subscriptions/ephemeral/tokens', { name: 'e' }), 201) as {
      token: string;
    };
    ok(await withToken(token, 'GET', '/v1/subscriptions/ephemeral'));
    const del = await api('DELETE', '/v1/subscriptions/ephemeral');
    assert.equal(del.status, 204, del.text);
    problem(await withToken(token, 'GET', '/v1/subscriptions/ephemeral'), 401, 'UNAUTHORIZED');
    // A new subscription of the same name is a new tenant: the old token must not reach it.
    ok(await api('POST', '/v1/subscriptions', { name: 'ephemeral' }), 201);
    problem(await withToken(token, 'GET', '/v1/subscriptions/ephemeral'), 401, 'UNAUTHORIZED');
    assert.equal((await api('DELETE', '/v1/subscriptions/ephemeral')).status, 204);
  });
});

// ------------------------------------------------------------------ fabric

describe('public pools and hosts', () => {
  test('a public pool is added, listed, refused when it overlaps, and deleted', async () => {
    const pool = ok(await api('POST', '/v1/pools', { cidr: '127.200.0.0/24' }), 201) as Pool;
    assert.deepEqual(pool, { cidr: '127.200.0.0/24', usable: 254, bound: 0, free: 254 });
    const pools = ok(await api('GET', '/v1/pools')) as Pool[];
    assert.deepEqual(
      pools.find((p) => p.cidr === '127.200.0.0/24'),
      pool,
    );
    for (const p of pools) assert.equal(p.bound + p.free, p.usable, `I5 for ${p.cidr}`);
    problem(await api('POST', '/v1/pools', { cidr: '127.200.0.0/25' }), 409, 'OVERLAP');
    assert.equal((await api('DELETE', '/v1/pools/127.200.0.0/24')).status, 204);
    problem(await api('DELETE', '/v1/pools/127.200.0.0/24'), 404, 'NOT_FOUND');
    assert.ok(!(ok(await api('GET', '/v1/pools')) as Pool[]).some((p) => p.cidr === '127.200.0.0/24'));
  });

  test('a public pool with host bits set is refused with 422 INVALID_CIDR', async () => {
    problem(await api('POST', '/v1/pools', { cidr: '127.201.0.1/24' }), 422, 'INVALID_CIDR');
  });

  test('a public pool still holding addresses is not deleted (409 IN_USE)', async () => {
    await newService('poolholder');
    await newVm('poolholder', { name: 'p1', subnet: 'front' });
    problem(await api('DELETE', '/v1/pools/127.100.0.0/16'), 409, 'IN_USE');
    assert.equal((await api('DELETE', '/v1/services/poolholder')).status, 204);
  });

  test('a host is added and listed, and a duplicate is refused with 409 ALREADY_EXISTS', async () => {
    const host = ok(await api('POST', '/v1/hosts', { name: 'rack3-host1', rack: 'rack3' }), 201) as Host;
    assert.deepEqual(host, { name: 'rack3-host1', rack: 'rack3', vms: 0 });
    const hosts = ok(await api('GET', '/v1/hosts')) as Host[];
    for (const h of ['rack1-host1', 'rack1-host2', 'rack2-host1', 'rack2-host2', 'rack3-host1'])
      assert.ok(
        hosts.some((x) => x.name === h),
        `host ${h} is listed`,
      );
    problem(await api('POST', '/v1/hosts', { name: 'rack3-host1', rack: 'rack3' }), 409, 'ALREADY_EXISTS');
  });

  test('maintenance of a host moves each of its VMs to another host', async () => {
    await newService('maint');
    for (const n of ['m1', 'm2', 'm3', 'm4', 'm5']) await newVm('maint', { name: n, subnet: 'front' });
    const vms = ok(await api('GET', '/v1/services/maint/vms')) as Vm[];
    const host = vms[0]!.host!;
    const onHost = vms.filter((v) => v.host === host).map((v) => v.name);
    const moved = (ok(await api('POST', `/v1/hosts/${host}/maintenance`)) as unknown[]).map(asVm);
    for (const name of onHost)
      assert.ok(
        moved.some((v) => v.name === name && v.service === 'maint'),
        `${name} is reported moved`,
      );
    for (const v of moved) assert.notEqual(v.host, host, `${v.service}/${v.name} left ${host}`);
    for (const name of onHost) {
      const after = await getVm('maint', name);
      assert.notEqual(after.host, host);
      assert.equal(after.state, 'running');
    }
    const hosts = ok(await api('GET', '/v1/hosts')) as Host[];
    assert.equal(hosts.find((h) => h.name === host)!.vms, 0, `${host} is empty after maintenance`);
  });

  test('maintenance of a rack moves every allocated VM off the rack', async () => {
    const moved = (ok(await api('POST', '/v1/racks/rack1/maintenance')) as unknown[]).map(asVm);
    for (const v of moved) assert.notEqual(v.rack, 'rack1');
    for (const v of (ok(await api('GET', '/v1/vms')) as unknown[]).map(asVm)) {
      if (v.state !== 'deallocated') assert.notEqual(v.rack, 'rack1', `${v.service}/${v.name}`);
    }
  });

  test('maintenance of an unknown host or rack answers 404', async () => {
    problem(await api('POST', '/v1/hosts/no-such-host/maintenance'), 404, 'NOT_FOUND');
    problem(await api('POST', '/v1/racks/no-such-rack/maintenance'), 404, 'NOT_FOUND');
  });
});

// ------------------------------------------------------------------ virtual networks

describe('virtual networks and subnets', () => {
  test('a virtual network is created, listed and read', async () => {
    const created = asVnet(
      ok(
        await api('POST', '/v1/subscriptions/contoso/vnets', {
          name: 'lab',
          addressSpace: ['127.17.0.0/16'],
          subnets: [{ name: 'a', cidr: '127.17.1.0/24' }],
        }),
        201,
      ),
    );
    assert.deepEqual(created, {
      subscription: 'contoso',
      name: 'lab',
      addressSpace: ['127.17.0.0/16'],
      dipPolicy: 'random',
      movePolicy: 'redraw',
      subnets: [{ name: 'a', cidr: '127.17.1.0/24', usable: 251, bound: 0, free: 251 }],
    });
    for (const path of ['/v1/vnets', '/v1/subscriptions/contoso/vnets']) {
      const list = (ok(await api('GET', path)) as unknown[]).map(asVnet);
      assert.deepEqual(
        list.find((v) => v.name === 'lab'),
        created,
        path,
      );
    }
    const one = await api('GET', '/v1/subscriptions/contoso/vnets/lab');
    assert.deepEqual(asVnet(ok(one)), created);
    assert.ok(one.headers.get('etag'));
  });

  test('a subnet is added and deleted', async () => {
    const vnet = asVnet(
      ok(
        await api('POST', '/v1/subscriptions/contoso/vnets/lab/subnets', {
          name: 'b',
          cidr: '127.17.2.0/29',
        }),
        201,
      ),
    );
    assert.deepEqual(
      vnet.subnets.find((s) => s.name === 'b'),
      { name: 'b', cidr: '127.17.2.0/29', usable: 3, bound: 0, free: 3 },
    );
    assert.equal((await api('DELETE', '/v1/subscriptions/contoso/vnets/lab/subnets/b')).status, 204);
    const after = asVnet(ok(await api('GET', '/v1/subscriptions/contoso/vnets/lab')));
    assert.ok(!after.subnets.some((s) => s.name === 'b'));
    problem(await api('DELETE', '/v1/subscriptions/contoso/vnets/lab/subnets/b'), 404, 'NOT_FOUND');
  });

  test('PATCH changes the DIP and move policies, and refuses a stale If-Match with 412', async () => {
    const cur = await api('GET', '/v1/subscriptions/contoso/vnets/lab');
    const etag = cur.headers.get('etag')!;
    problem(
      await api(
        'PATCH',
        '/v1/subscriptions/contoso/vnets/lab',
        { dipPolicy: 'sequential' },
        { 'if-match': '"stale"' },
      ),
      412,
      'PRECONDITION_FAILED',
    );
    assert.deepEqual(
      ok(await api('GET', '/v1/subscriptions/contoso/vnets/lab')),
      cur.body,
      'nothing changed',
    );
    const patched = asVnet(
      ok(
        await api(
          'PATCH',
          '/v1/subscriptions/contoso/vnets/lab',
          { dipPolicy: 'sequential', movePolicy: 'keep' },
          { 'if-match': etag },
        ),
      ),
    );
    assert.equal(patched.dipPolicy, 'sequential');
    assert.equal(patched.movePolicy, 'keep');
    assert.deepEqual(asVnet(ok(await api('GET', '/v1/subscriptions/contoso/vnets/lab'))), patched);
  });

  test('duplicates, overlaps, subnets outside the address space and bad CIDRs are refused', async () => {
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets', { name: 'lab', addressSpace: ['127.18.0.0/16'] }),
      409,
      'ALREADY_EXISTS',
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets/lab/subnets', {
        name: 'c',
        cidr: '127.17.1.128/25',
      }),
      409,
      'OVERLAP',
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets/lab/subnets', { name: 'c', cidr: '127.99.1.0/24' }),
      422,
      'ADDRESS_OUT_OF_RANGE',
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets/lab/subnets', { name: 'c', cidr: '127.17.3.0/33' }),
      422,
      'INVALID_CIDR',
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets', { name: 'bad', addressSpace: ['127.18.0.1/16'] }),
      422,
      'INVALID_CIDR',
    );
    problem(await api('GET', '/v1/subscriptions/contoso/vnets/bad'), 404, 'NOT_FOUND');
  });

  test('a virtual network in use is not deleted (409 IN_USE); an unused one is (204)', async () => {
    await newService('labuser', 'lab');
    problem(await api('DELETE', '/v1/subscriptions/contoso/vnets/lab'), 409, 'IN_USE');
    assert.equal((await api('DELETE', '/v1/services/labuser')).status, 204);
    assert.equal((await api('DELETE', '/v1/subscriptions/contoso/vnets/lab')).status, 204);
    problem(await api('GET', '/v1/subscriptions/contoso/vnets/lab'), 404, 'NOT_FOUND');
  });
});

// ------------------------------------------------------------------ reserved IPs

describe('reserved IPs', () => {
  test('a reserved IP is created, read, listed, associated, disassociated and deleted', async () => {
    const rip = asReservedIp(
      ok(await api('POST', '/v1/subscriptions/contoso/reserved-ips', { name: 'rip1' }), 201),
    );
    assert.equal(rip.subscription, 'contoso');
    assert.equal(rip.name, 'rip1');
    assert.equal(rip.service, null);
    const one = await api('GET', '/v1/subscriptions/contoso/reserved-ips/rip1');
    assert.deepEqual(ok(one), rip);
    assert.ok(one.headers.get('etag'));
    for (const path of ['/v1/reserved-ips', '/v1/subscriptions/contoso/reserved-ips']) {
      const list = (ok(await api('GET', path)) as unknown[]).map(asReservedIp);
      assert.deepEqual(
        list.find((r) => r.name === 'rip1'),
        rip,
        path,
      );
    }
    problem(
      await api('POST', '/v1/subscriptions/contoso/reserved-ips', { name: 'rip1' }),
      409,
      'ALREADY_EXISTS',
    );

    await newService('ripsvc');
    const svc = asService(
      ok(await api('POST', '/v1/subscriptions/contoso/reserved-ips/rip1/associate', { service: 'ripsvc' })),
    );
    assert.equal(svc.name, 'ripsvc');
    assert.equal(svc.reservedIp, 'rip1');
    assert.equal(svc.vip, rip.address, 'R1: a reserved IP is the VIP at once');
    assert.equal(
      asReservedIp(ok(await api('GET', '/v1/subscriptions/contoso/reserved-ips/rip1'))).service,
      'ripsvc',
    );

    problem(await api('DELETE', '/v1/subscriptions/contoso/reserved-ips/rip1'), 409, 'IN_USE');

    const freed = asReservedIp(
      ok(await api('POST', '/v1/subscriptions/contoso/reserved-ips/rip1/disassociate')),
    );
    assert.deepEqual(freed, { ...rip, service: null });
    const after = await getService('ripsvc');
    assert.equal(after.reservedIp, null);
    assert.equal(after.vip, null, 'a service without VMs holds no VIP once the reserved IP is gone');
    problem(await api('POST', '/v1/subscriptions/contoso/reserved-ips/rip1/disassociate'), 409, 'CONFLICT');

    assert.equal((await api('DELETE', '/v1/subscriptions/contoso/reserved-ips/rip1')).status, 204);
    problem(await api('GET', '/v1/subscriptions/contoso/reserved-ips/rip1'), 404, 'NOT_FOUND');
    problem(await api('DELETE', '/v1/subscriptions/contoso/reserved-ips/rip1'), 404, 'NOT_FOUND');
  });

  test('a reserved IP keeps its address through the deallocation and deletion of its service', async () => {
    const rip = asReservedIp(
      ok(await api('POST', '/v1/subscriptions/contoso/reserved-ips', { name: 'rip2' }), 201),
    );
    const svc = await newService('ripkeep', 'net', 'rip2');
    assert.equal(svc.reservedIp, 'rip2');
    assert.equal(svc.vip, rip.address);
    await newVm('ripkeep', { name: 'k1', subnet: 'front' });
    await vmOp('ripkeep', 'k1', 'deallocate');
    assert.equal((await getService('ripkeep')).vip, rip.address, 'the VIP survives deallocation');
    assert.equal((await api('DELETE', '/v1/services/ripkeep')).status, 204);
    assert.deepEqual(
      asReservedIp(ok(await api('GET', '/v1/subscriptions/contoso/reserved-ips/rip2'))),
      { ...rip, service: null },
      'the reserved IP survives the service',
    );
    assert.equal((await api('DELETE', '/v1/subscriptions/contoso/reserved-ips/rip2')).status, 204);
  });
});

// ------------------------------------------------------------------ cloud services

describe('cloud services', () => {
  test('a cloud service is created, read and listed with the contract fields', async () => {
    const svc = await newService('shop');
    assert.deepEqual(svc, {
      subscription: 'contoso',
      name: 'shop',
      vip: null,
      reservedIp: null,
      dnsName: `shop.${ZONE}`,
      vnet: 'net',
      vms: [],
    });
    const one = await api('GET', '/v1/services/shop');
    assert.deepEqual(asService(ok(one)), svc);
    assert.ok(one.headers.get('etag'));
    for (const path of ['/v1/services', '/v1/subscriptions/contoso/services']) {
      const list = (ok(await api('GET', path)) as unknown[]).map(asService);
      assert.deepEqual(
        list.find((s) => s.name === 'shop'),
        svc,
        path,
      );
    }
    const bare = await newService('bare', null);
    assert.equal(bare.vnet, null, 'a service may be bound to no network');
  });

  test('a second service with the same DNS label is refused with 409 ALREADY_EXISTS', async () => {
    problem(await api('POST', '/v1/subscriptions/contoso/services', { name: 'shop' }), 409, 'ALREADY_EXISTS');
  });

  test('reserve-vip turns the current VIP into a reserved IP in place', async () => {
    await newService('resv');
    await newVm('resv', { name: 'r1', subnet: 'front' });
    const vip = (await getService('resv')).vip!;
    assert.ok(inCidr(vip, PUBLIC_POOL));
    const rip = asReservedIp(
      ok(await api('POST', '/v1/services/resv/reserve-vip', { name: 'resv-ip' }), 201),
    );
    assert.deepEqual(rip, { subscription: 'contoso', name: 'resv-ip', address: vip, service: 'resv' });
    const svc = await getService('resv');
    assert.equal(svc.reservedIp, 'resv-ip');
    assert.equal(svc.vip, vip);
    await vmOp('resv', 'r1', 'deallocate');
    assert.equal((await getService('resv')).vip, vip, 'a reserved VIP survives deallocation');
    problem(await api('POST', '/v1/services/resv/reserve-vip', { name: 'again' }), 409, 'CONFLICT');
  });

  test('reserve-vip of a service without a VIP is refused with 409', async () => {
    problem(await api('POST', '/v1/services/bare/reserve-vip', { name: 'nothing' }), 409, 'CONFLICT');
  });

  test('deleting a service deletes its VMs and gives its VIP back to the pool', async () => {
    await newService('gone');
    await newVm('gone', { name: 'g1', subnet: 'front' });
    await newVm('gone', { name: 'g2', subnet: 'front' });
    const bound = (ok(await api('GET', '/v1/pools')) as Pool[]).find((p) => p.cidr === PUBLIC_POOL)!.bound;
    const cur = await api('GET', '/v1/services/gone');
    problem(
      await api('DELETE', '/v1/services/gone', undefined, { 'if-match': '"stale"' }),
      412,
      'PRECONDITION_FAILED',
    );
    ok(await api('GET', '/v1/services/gone'));
    assert.equal(
      (await api('DELETE', '/v1/services/gone', undefined, { 'if-match': cur.headers.get('etag')! })).status,
      204,
    );
    problem(await api('GET', '/v1/services/gone'), 404, 'NOT_FOUND');
    problem(await api('GET', '/v1/services/gone/vms/g1'), 404, 'NOT_FOUND');
    const after = (ok(await api('GET', '/v1/pools')) as Pool[]).find((p) => p.cidr === PUBLIC_POOL)!.bound;
    assert.equal(after, bound - 1, 'R3: the VIP went back to the pool');
    problem(await api('DELETE', '/v1/services/gone'), 404, 'NOT_FOUND');
  });
});

// ------------------------------------------------------------------ VMs

describe('VMs', () => {
  before(async () => {
    await newService('vmsvc');
  });

  test('a new VM runs with a DIP in its subnet, a host, normalized endpoints, and gives its service a VIP', async () => {
    const vm = await newVm('vmsvc', {
      name: 'web1',
      subnet: 'front',
      endpoints: [{ name: 'http', publicPort: 8080, localPort: 8000 }],
    });
    assert.equal(vm.subscription, 'contoso');
    assert.equal(vm.service, 'vmsvc');
    assert.equal(vm.name, 'web1');
    assert.equal(vm.state, 'running');
    assert.ok(usableIn(vm.dip!, '127.16.1.0/24'), `DIP ${vm.dip} is a usable address of front`);
    assert.ok(vm.host);
    assert.equal(vm.subnet, 'front');
    assert.equal(vm.vnet, 'net');
    assert.equal(vm.staticDip, null);
    assert.equal(vm.ilpip, null);
    assert.equal(vm.endpoints.length, 1);
    assert.deepEqual(
      { ...vm.endpoints[0] },
      {
        name: 'http',
        protocol: 'tcp',
        publicPort: 8080,
        localPort: 8000,
        distribution: 'fiveTuple',
        idleTimeoutMinutes: 4,
        acl: [],
        proxyProtocol: false,
      },
    );
    const svc = await getService('vmsvc');
    assert.ok(svc.vip !== null && inCidr(svc.vip, PUBLIC_POOL), 'R1: the first allocated VM brings a VIP');
    assert.deepEqual(svc.vms, ['web1']);
  });

  test('a VM is read and listed', async () => {
    const vm = await getVm('vmsvc', 'web1');
    for (const path of ['/v1/vms', '/v1/services/vmsvc/vms']) {
      const list = (ok(await api('GET', path)) as unknown[]).map(asVm);
      assert.deepEqual(
        list.find((v) => v.service === 'vmsvc' && v.name === 'web1'),
        vm,
        path,
      );
    }
  });

  test('stop keeps both addresses, start resumes, restart keeps both, and invalid transitions get 409', async () => {
    const before = await getVm('vmsvc', 'web1');
    const vip = (await getService('vmsvc')).vip;
    const stopped = await vmOp('vmsvc', 'web1', 'stop');
    assert.equal(stopped.state, 'stopped');
    assert.equal(stopped.dip, before.dip, 'R8: stop keeps the DIP');
    assert.equal(stopped.host, before.host);
    assert.equal((await getService('vmsvc')).vip, vip, 'R2: the VIP stays while a VM is stopped');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/stop'), 409, 'INVALID_TRANSITION');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/restart'), 409, 'INVALID_TRANSITION');
    const started = await vmOp('vmsvc', 'web1', 'start');
    assert.equal(started.state, 'running');
    assert.equal(started.dip, before.dip);
    const restarted = await vmOp('vmsvc', 'web1', 'restart');
    assert.equal(restarted.state, 'running');
    assert.equal(restarted.dip, before.dip, 'R8: restart keeps the DIP');
    assert.equal((await getService('vmsvc')).vip, vip, 'R8: restart keeps the VIP');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/start'), 409, 'INVALID_TRANSITION');
  });

  test('redeploy moves the VM to another host', async () => {
    const before = await getVm('vmsvc', 'web1');
    const moved = await vmOp('vmsvc', 'web1', 'redeploy');
    assert.equal(moved.state, 'running');
    assert.notEqual(moved.host, before.host, 'R5: redeploy changes the host');
    assert.ok(usableIn(moved.dip!, '127.16.1.0/24'));
  });

  test('deallocate releases the DIP and the last VIP; start draws them again', async () => {
    const gone = await vmOp('vmsvc', 'web1', 'deallocate');
    assert.equal(gone.state, 'deallocated');
    assert.equal(gone.dip, null, 'R4: deallocation releases the DIP');
    assert.equal(gone.host, null);
    assert.equal((await getService('vmsvc')).vip, null, 'R3: the last deallocation releases the VIP');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/deallocate'), 409, 'INVALID_TRANSITION');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/redeploy'), 409, 'INVALID_TRANSITION');
    const back = await vmOp('vmsvc', 'web1', 'start');
    assert.equal(back.state, 'running');
    assert.ok(usableIn(back.dip!, '127.16.1.0/24'));
    assert.ok((await getService('vmsvc')).vip !== null, 'R1: a VIP again');
  });

  test('a VM is created with a static DIP and an ILPIP, or without being started', async () => {
    const db = await newVm('vmsvc', { name: 'db1', subnet: 'back', staticDip: '127.16.2.10', ilpip: true });
    assert.equal(db.dip, '127.16.2.10');
    assert.equal(db.staticDip, '127.16.2.10');
    assert.ok(db.ilpip !== null && inCidr(db.ilpip, PUBLIC_POOL), 'the ILPIP comes from the public pool');
    const cold = await newVm('vmsvc', { name: 'cold', subnet: 'back', start: false });
    assert.equal(cold.state, 'deallocated');
    assert.equal(cold.dip, null);
    const redeployed = await vmOp('vmsvc', 'db1', 'redeploy');
    assert.equal(redeployed.dip, '127.16.2.10', 'R5: a static DIP never moves');
  });

  test('PATCH changes endpoints, workload and the ILPIP', async () => {
    const endpoints = [
      { name: 'http', protocol: 'tcp', publicPort: 80, localPort: 8080, lbSet: 'web' },
      { name: 'dns', protocol: 'udp', publicPort: 53 },
    ];
    const vm = asVm(
      ok(await api('PATCH', '/v1/services/vmsvc/vms/web1', { workload: 'whoami', ilpip: true, endpoints })),
    );
    assert.equal(vm.workload, 'whoami');
    assert.ok(vm.ilpip !== null && inCidr(vm.ilpip, PUBLIC_POOL));
    assert.deepEqual(
      vm.endpoints.map((e) => [e.name, e.protocol, e.publicPort, e.localPort, e.lbSet]),
      [
        ['http', 'tcp', 80, 8080, 'web'],
        ['dns', 'udp', 53, 53, undefined],
      ],
    );
    const off = asVm(ok(await api('PATCH', '/v1/services/vmsvc/vms/web1', { ilpip: false })));
    assert.equal(off.ilpip, null);
    assert.deepEqual(await getVm('vmsvc', 'web1'), off);
  });

  test('every member of an endpoint comes back as given: probe, ACL rules, lb set, distribution, PROXY protocol', async () => {
    // The response schema describes the canonical endpoint member by member, and the serializer
    // sends only what it describes: a member missing from the schema would vanish here.
    const endpoint = {
      name: 'web',
      protocol: 'tcp',
      publicPort: 8443,
      localPort: 8000,
      lbSet: 'front',
      probe: { protocol: 'http', port: 8001, path: '/healthz', intervalSeconds: 5, timeoutSeconds: 11 },
      distribution: 'sourceIPProtocol',
      idleTimeoutMinutes: 9,
      acl: [
        { order: 1, action: 'permit', remoteSubnet: '10.1.0.0/16', description: 'office' },
        { order: 2, action: 'deny', remoteSubnet: '0.0.0.0/0' },
      ],
      proxyProtocol: true,
    };
    const made = await newVm('vmsvc', {
      name: 'full1',
      subnet: 'front',
      start: false,
      endpoints: [endpoint],
    });
    assert.deepEqual(made.endpoints, [endpoint]);
    assert.deepEqual((await getVm('vmsvc', 'full1')).endpoints, [endpoint]);
    assert.equal((await api('DELETE', '/v1/services/vmsvc/vms/full1')).status, 204);
  });

  test('a static DIP outside the subnet is refused with 422, a static DIP change of an allocated VM with 409', async () => {
    problem(
      await api('POST', '/v1/services/vmsvc/vms', { name: 'x1', subnet: 'front', staticDip: '127.16.2.5' }),
      422,
      'ADDRESS_OUT_OF_RANGE',
    );
    problem(
      await api('POST', '/v1/services/vmsvc/vms', { name: 'x1', subnet: 'front', staticDip: '127.16.1.0' }),
      422,
    );
    problem(await api('GET', '/v1/services/vmsvc/vms/x1'), 404, 'NOT_FOUND');
    problem(
      await api('PATCH', '/v1/services/vmsvc/vms/web1', { staticDip: '127.16.1.200' }),
      409,
      'INVALID_TRANSITION',
    );
  });

  test('a full /29 subnet refuses the next VM with 409 POOL_EXHAUSTED naming the subnet, and stays consistent', async () => {
    await newService('tinysvc');
    for (const n of ['t1', 't2', 't3']) {
      const vm = await newVm('tinysvc', { name: n, subnet: 'tiny' });
      assert.ok(usableIn(vm.dip!, '127.16.9.0/29'));
    }
    const before = await dump();
    const p = problem(
      await api('POST', '/v1/services/tinysvc/vms', { name: 't4', subnet: 'tiny' }),
      409,
      'POOL_EXHAUSTED',
    );
    assert.match(p.detail, /tiny/, 'the problem names the exhausted subnet');
    assert.equal(await dump(), before, 'a refused creation changes nothing');
    const vnet = asVnet(ok(await api('GET', '/v1/subscriptions/contoso/vnets/net')));
    assert.deepEqual(
      vnet.subnets.find((s) => s.name === 'tiny'),
      { name: 'tiny', cidr: '127.16.9.0/29', usable: 3, bound: 3, free: 0 },
    );
    // A stopped VM keeps its DIP; only deallocation makes room.
    await vmOp('tinysvc', 't1', 'stop');
    problem(
      await api('POST', '/v1/services/tinysvc/vms', { name: 't4', subnet: 'tiny' }),
      409,
      'POOL_EXHAUSTED',
    );
    await vmOp('tinysvc', 't1', 'deallocate');
    ok(await api('POST', '/v1/services/tinysvc/vms', { name: 't4', subnet: 'tiny' }), 201);
    problem(await api('POST', '/v1/services/tinysvc/vms/t1/start'), 409, 'POOL_EXHAUSTED');
    assert.equal((await getVm('tinysvc', 't1')).state, 'deallocated');
  });

  test('a duplicate VM name gets 409 ALREADY_EXISTS, an unknown subnet 404, an unknown operation 400', async () => {
    problem(
      await api('POST', '/v1/services/vmsvc/vms', { name: 'web1', subnet: 'front' }),
      409,
      'ALREADY_EXISTS',
    );
    problem(await api('POST', '/v1/services/vmsvc/vms', { name: 'x2', subnet: 'nowhere' }), 404, 'NOT_FOUND');
    problem(await api('POST', '/v1/services/vmsvc/vms/web1/explode'), 400, 'BAD_REQUEST');
    problem(
      await api('POST', '/v1/services/bare/vms', { name: 'x3', subnet: 'front' }),
      422,
      'INVALID_ARGUMENT',
    );
  });

  test('a deleted VM answers 404 afterwards', async () => {
    await newVm('vmsvc', { name: 'tmp', subnet: 'front' });
    assert.equal((await api('DELETE', '/v1/services/vmsvc/vms/tmp')).status, 204);
    problem(await api('GET', '/v1/services/vmsvc/vms/tmp'), 404, 'NOT_FOUND');
    problem(await api('DELETE', '/v1/services/vmsvc/vms/tmp'), 404, 'NOT_FOUND');
    problem(await api('POST', '/v1/services/vmsvc/vms/tmp/start'), 404, 'NOT_FOUND');
  });

  test('a stale If-Match gets 412 and changes nothing on PATCH, operations and DELETE; the current ETag succeeds', async () => {
    await newVm('vmsvc', { name: 'etag', subnet: 'front' });
    const first = await api('GET', '/v1/services/vmsvc/vms/etag');
    const e1 = first.headers.get('etag')!;
    assert.match(e1, /^"[^"]+"$/, 'a strong ETag');

    problem(
      await api('PATCH', '/v1/services/vmsvc/vms/etag', { workload: 'echo' }, { 'if-match': '"stale"' }),
      412,
      'PRECONDITION_FAILED',
    );
    assert.deepEqual(await getVm('vmsvc', 'etag'), first.body);
    const patched = await api(
      'PATCH',
      '/v1/services/vmsvc/vms/etag',
      { workload: 'echo' },
      { 'if-match': e1 },
    );
    assert.equal(asVm(ok(patched)).workload, 'echo');
    const e2 = patched.headers.get('etag')!;
    assert.notEqual(e2, e1, 'a change gives a new ETag');
    assert.equal((await api('GET', '/v1/services/vmsvc/vms/etag')).headers.get('etag'), e2);

    problem(await api('POST', '/v1/services/vmsvc/vms/etag/stop', undefined, { 'if-match': e1 }), 412);
    assert.equal((await getVm('vmsvc', 'etag')).state, 'running');
    const stopped = await api('POST', '/v1/services/vmsvc/vms/etag/stop', undefined, { 'if-match': e2 });
    assert.equal(asVm(ok(stopped)).state, 'stopped');
    const e3 = stopped.headers.get('etag')!;

    problem(await api('DELETE', '/v1/services/vmsvc/vms/etag', undefined, { 'if-match': e2 }), 412);
    ok(await api('GET', '/v1/services/vmsvc/vms/etag'));
    assert.equal(
      (await api('DELETE', '/v1/services/vmsvc/vms/etag', undefined, { 'if-match': e3 })).status,
      204,
    );
    problem(await api('GET', '/v1/services/vmsvc/vms/etag'), 404);
  });

  test('If-None-Match with the current ETag answers 304 without a body; another ETag gets 200', async () => {
    const cur = await api('GET', '/v1/services/vmsvc/vms/web1');
    const etag = cur.headers.get('etag')!;
    const same = await api('GET', '/v1/services/vmsvc/vms/web1', undefined, { 'if-none-match': etag });
    assert.equal(same.status, 304);
    assert.equal(same.text, '');
    const other = await api('GET', '/v1/services/vmsvc/vms/web1', undefined, { 'if-none-match': '"other"' });
    assert.deepEqual(ok(other), cur.body);
    const svc = await api('GET', '/v1/services/vmsvc');
    assert.equal(
      (await api('GET', '/v1/services/vmsvc', undefined, { 'if-none-match': svc.headers.get('etag')! }))
        .status,
      304,
    );
  });
});

// ------------------------------------------------------------------ every error class

describe('errors', () => {
  test('a body that violates the schema gets 400 with `errors` listing each offending path', async () => {
    const p = problem(
      await api('POST', '/v1/subscriptions/contoso/vnets', { name: 7, addressSpace: 'x', extra: true }),
      400,
      'BAD_REQUEST',
    );
    assert.ok(Array.isArray(p.errors), 'errors is a list');
    for (const e of p.errors) {
      assert.equal(typeof e.path, 'string');
      assert.equal(typeof e.message, 'string');
    }
    const paths = p.errors.map((e) => e.path);
    for (const want of ['body/name', 'body/addressSpace'])
      assert.ok(paths.includes(want), `${want} in ${JSON.stringify(p.errors)}`);
    assert.ok(
      p.errors.some((e) => e.path === 'body' && e.message.includes('extra')),
      `the unknown field is named: ${JSON.stringify(p.errors)}`,
    );
    const q = problem(await api('GET', '/v1/events?since=abc'), 400, 'BAD_REQUEST');
    assert.ok(q.errors?.some((e) => e.path.includes('since')));
  });

  test('no token, a wrong token or a malformed header gets 401 with WWW-Authenticate', async () => {
    for (const [token, header] of [
      [undefined, undefined],
      ['vipdip_wrong', undefined],
      [undefined, 'Basic YWxhZGRpbjpvcGVuc2VzYW1l'],
      [undefined, 'Bearer'],
    ] as const) {
      const r = await call(srv, token, 'GET', '/v1/vms', undefined, header ? { authorization: header } : {});
      problem(r, 401, 'UNAUTHORIZED');
      assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer\b/);
    }
  });

  test('a subscription token on an operator route gets 403', async () => {
    const t = contosoToken;
    for (const [method, path, body] of [
      ['POST', '/v1/subscriptions', { name: 'sneaky' }],
      ['DELETE', '/v1/subscriptions/contoso', undefined],
      ['GET', '/v1/tokens', undefined],
      ['POST', '/v1/subscriptions/contoso/tokens', { name: 'more' }],
      ['DELETE', '/v1/subscriptions/contoso/tokens/contoso-ci', undefined],
      ['POST', '/v1/pools', { cidr: '127.210.0.0/24' }],
      ['DELETE', `/v1/pools/${PUBLIC_POOL}`, undefined],
      ['POST', '/v1/hosts', { name: 'sneaky-host', rack: 'rack9' }],
      ['POST', '/v1/hosts/rack1-host1/maintenance', undefined],
      ['POST', '/v1/racks/rack1/maintenance', undefined],
    ] as const)
      problem(await withToken(t, method, path, body), 403, 'FORBIDDEN');
    // …while its own resources are within reach.
    ok(await withToken(t, 'GET', '/v1/services/vmsvc/vms/web1'));
  });

  test('an unknown resource or route gets 404', async () => {
    for (const path of [
      '/v1/subscriptions/nope',
      '/v1/subscriptions/contoso/vnets/nope',
      '/v1/subscriptions/contoso/reserved-ips/nope',
      '/v1/services/nope',
      '/v1/services/nope/vms',
      '/v1/services/vmsvc/vms/nope',
      '/v1/nothing-here',
      '/nothing-here',
    ])
      problem(await api('GET', path), 404, 'NOT_FOUND');
    problem(await api('PUT', '/v1/services/vmsvc'), 404, 'NOT_FOUND');
  });

  test('a body over its route limit gets 413 (1 MiB by default, 2 MiB to apply, 4 KiB without a body)', async () => {
    const big = JSON.stringify({ name: 'x'.repeat((1 << 20) + 16) });
    problem(await api('POST', '/v1/subscriptions', big), 413, 'PAYLOAD_TOO_LARGE');
    problem(await api('POST', '/v1/apply', `# ${'y'.repeat(2 << 20)}\n`, YAML), 413, 'PAYLOAD_TOO_LARGE');
    problem(
      await api('POST', '/v1/services/x/vms/y/start', JSON.stringify({ pad: 'z'.repeat(8192) })),
      413,
      'PAYLOAD_TOO_LARGE',
    );
  });

  test('a refused body is read to its end and thrown away: its client reads the 413 and the connection goes on', async () => {
    // Closing with the body still arriving made the kernel reset the connection, which the client
    // could meet before the answer (undici: EPIPE, on a loaded machine).
    const { hostname, port } = new URL(srv.url);
    const sock = connect(Number(port), hostname);
    const errors: string[] = [];
    sock.on('error', (e: NodeJS.ErrnoException) => errors.push(e.code ?? e.message));
    let text = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => (text += d));
    await once(sock, 'connect');
    const until = async (what: () => boolean, why: string) => {
      for (const end = Date.now() + 10_000; !what(); await new Promise((r) => setTimeout(r, 10)))
        assert.ok(Date.now() < end && errors.length === 0, `${why}: ${errors.join(' ')} ${text}`);
    };
    const size = 2 << 20;
    sock.write(
      `POST /v1/subscriptions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${op}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${size}\r\n\r\n`,
    );
    await until(() => text.includes('\r\n\r\n'), 'the 413 comes before the body');
    assert.match(text, /^HTTP\/1\.1 413 /);
    assert.doesNotMatch(text, /^connection: close/im);
    // Then the whole body, after its answer: every byte is taken.
    const chunk = Buffer.alloc(64 << 10, 0x61);
    for (let sent = 0; sent < size; sent += chunk.length) if (!sock.write(chunk)) await once(sock, 'drain');
    text = '';
    sock.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
    await until(() => /\r\n\r\n.*"ok"/s.test(text), 'the next request on the connection is answered');
    assert.match(text, /^HTTP\/1\.1 200 /);
    sock.destroy();
  });

  test('an unsupported content type gets 415', async () => {
    for (const type of ['text/xml', 'application/x-www-form-urlencoded', 'application/octet-stream'])
      problem(
        await api('POST', '/v1/subscriptions', 'name=x', { 'content-type': type }),
        415,
        'UNSUPPORTED_MEDIA_TYPE',
      );
  });

  test('a domain validation failure gets 422', async () => {
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets', {
        name: 'v422',
        addressSpace: ['127.19.0.0/16'],
        subnets: [{ name: 's', cidr: '127.19.0.0/8' }],
      }),
      422,
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/vnets', { name: 'v422', addressSpace: ['10.0.0.0/33'] }),
      422,
      'INVALID_CIDR',
    );
    problem(
      await api('POST', '/v1/services/vmsvc/vms', { name: 'x4', subnet: 'front', staticDip: '127.16.200.9' }),
      422,
      'ADDRESS_OUT_OF_RANGE',
    );
    problem(
      await api('POST', '/v1/services/vmsvc/vms', { name: 'x4', subnet: 'front', staticDip: '127.16.1.300' }),
      422,
      'INVALID_ADDRESS',
    );
    problem(
      await api('POST', '/v1/subscriptions/contoso/services', { name: 'Not-A-Label' }),
      422,
      'INVALID_ARGUMENT',
    );
    problem(
      await api('POST', '/v1/services/vmsvc/vms', {
        name: 'x4',
        subnet: 'front',
        endpoints: [{ name: 'http', publicPort: 70000 }],
      }),
      422,
      'INVALID_ARGUMENT',
    );
    problem(await api('GET', '/v1/subscriptions/contoso/vnets/v422'), 404);
  });
});

// ------------------------------------------------------------------ documents and probes

describe('OpenAPI, health and metrics', () => {
  test('GET /v1/openapi.json is an OpenAPI 3.1 document listing the /v1 paths', async () => {
    const r = await call(srv, undefined, 'GET', '/v1/openapi.json');
    const doc = ok(r) as { openapi: string; paths: Record<string, Record<string, unknown>>; info: unknown };
    assert.match(doc.openapi, /^3\.1\./);
    assert.ok(isObj(doc.info));
    const want: [string, string][] = [
      ['/v1/subscriptions', 'get'],
      ['/v1/subscriptions', 'post'],
      ['/v1/subscriptions/{subscription}', 'get'],
      ['/v1/subscriptions/{subscription}', 'delete'],
      ['/v1/subscriptions/{subscription}/tokens', 'post'],
      ['/v1/subscriptions/{subscription}/tokens/{name}', 'delete'],
      ['/v1/tokens', 'get'],
      ['/v1/pools', 'get'],
      ['/v1/pools', 'post'],
      ['/v1/pools/{base}/{prefix}', 'delete'],
      ['/v1/hosts', 'get'],
      ['/v1/hosts', 'post'],
      ['/v1/hosts/{host}/maintenance', 'post'],
      ['/v1/racks/{rack}/maintenance', 'post'],
      ['/v1/vnets', 'get'],
      ['/v1/subscriptions/{subscription}/vnets', 'get'],
      ['/v1/subscriptions/{subscription}/vnets', 'post'],
      ['/v1/subscriptions/{subscription}/vnets/{vnet}', 'get'],
      ['/v1/subscriptions/{subscription}/vnets/{vnet}', 'patch'],
      ['/v1/subscriptions/{subscription}/vnets/{vnet}', 'delete'],
      ['/v1/subscriptions/{subscription}/vnets/{vnet}/subnets', 'post'],
      ['/v1/subscriptions/{subscription}/vnets/{vnet}/subnets/{subnet}', 'delete'],
      ['/v1/reserved-ips', 'get'],
      ['/v1/subscriptions/{subscription}/reserved-ips', 'get'],
      ['/v1/subscriptions/{subscription}/reserved-ips', 'post'],
      ['/v1/subscriptions/{subscription}/reserved-ips/{name}', 'get'],
      ['/v1/subscriptions/{subscription}/reserved-ips/{name}', 'delete'],
      ['/v1/subscriptions/{subscription}/reserved-ips/{name}/associate', 'post'],
      ['/v1/subscriptions/{subscription}/reserved-ips/{name}/disassociate', 'post'],
      ['/v1/services', 'get'],
      ['/v1/subscriptions/{subscription}/services', 'get'],
      ['/v1/subscriptions/{subscription}/services', 'post'],
      ['/v1/services/{service}', 'get'],
      ['/v1/services/{service}', 'delete'],
      ['/v1/services/{service}/reserve-vip', 'post'],
      ['/v1/vms', 'get'],
      ['/v1/services/{service}/vms', 'get'],
      ['/v1/services/{service}/vms', 'post'],
      ['/v1/services/{service}/vms/{vm}', 'get'],
      ['/v1/services/{service}/vms/{vm}', 'patch'],
      ['/v1/services/{service}/vms/{vm}', 'delete'],
      ['/v1/services/{service}/vms/{vm}/{operation}', 'post'],
      ['/v1/events', 'get'],
      ['/v1/events/stream', 'get'],
      ['/v1/apply', 'post'],
      ['/v1/images', 'get'],
      ['/v1/images', 'post'],
      ['/v1/images/{name}', 'get'],
      ['/v1/images/{name}', 'put'],
      ['/v1/images/{name}', 'delete'],
    ];
    const missing = want.filter(([p, m]) => !isObj(doc.paths[p]) || !(m in doc.paths[p]));
    assert.deepEqual(missing, [], 'every route is documented');
    for (const p of Object.keys(doc.paths)) assert.match(p, /^\/v1\//);
  });

  test('/healthz answers 200', async () => {
    const r = await call(srv, undefined, 'GET', '/healthz');
    assert.equal(r.status, 200);
  });

  test('/metrics is Prometheus text with the request, address, VM and event metrics', async () => {
    const r = await call(srv, op, 'GET', '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    for (const name of [
      'vipdip_http_requests_total',
      'vipdip_pool_addresses',
      'vipdip_vms',
      'vipdip_events_total',
    ]) {
      assert.match(r.text, new RegExp(`^# TYPE ${name} (counter|gauge)$`, 'm'), name);
      assert.match(r.text, new RegExp(`^${name}\\{[^}]*\\} \\d+`, 'm'), `${name} has samples`);
    }
    assert.match(r.text, /^vipdip_vms\{state="running"\} [1-9]\d*$/m);
    assert.match(
      r.text,
      /^vipdip_pool_addresses\{range="pool 127\.100\.0\.0\/16",state="bound"\} [1-9]\d*$/m,
    );
  });
});

// ------------------------------------------------------------------ declarative apply

const TOPOLOGY = `
subscriptions:
  - name: tailwind
    virtualNetworks:
      - name: tw-net
        addressSpace: [127.30.0.0/16]
        subnets:
          - { name: front, cidr: 127.30.1.0/24 }
          - { name: back, cidr: 127.30.2.0/24 }
    reservedIps:
      - { name: tw-ip }
    cloudServices:
      - name: twshop
        vnet: tw-net
        reservedIp: tw-ip
        vms:
          - name: web1
            subnet: front
            workload: whoami
            endpoints:
              - { name: http, protocol: tcp, publicPort: 8080, localPort: 8000,
                  lbSet: web, probe: { protocol: http, port: 8000, path: / } }
          - name: web2
            subnet: front
            endpoints:
              - { name: http, protocol: tcp, publicPort: 8080, localPort: 8000,
                  lbSet: web, probe: { protocol: http, port: 8000, path: / } }
          - name: db1
            subnet: back
            staticDip: 127.30.2.10
      - name: twblog
        vnet: tw-net
        vms:
          - { name: b1, subnet: back, ilpip: true }
`;
const applyYaml = (doc: string, query = '') => api('POST', `/v1/apply${query}`, doc, YAML);
const has = (cs: Change[], action: string, kind: string, name: string) =>
  cs.some((c) => c.action === action && c.kind === kind && c.name === name);

describe('declarative apply', () => {
  test('a YAML topology is created by POST /v1/apply', async () => {
    const r = ok(await applyYaml(TOPOLOGY)) as ApplyResult;
    assert.equal(r.dryRun, false);
    assert.deepEqual(r.wouldDelete, []);
    for (const [action, kind, name] of [
      ['create', 'subscription', 'tailwind'],
      ['create', 'virtual network', 'tailwind/tw-net'],
      ['create', 'reserved IP', 'tailwind/tw-ip'],
      ['create', 'cloud service', 'twshop'],
      ['create', 'cloud service', 'twblog'],
      ['create', 'VM', 'twshop/web1'],
      ['create', 'VM', 'twshop/web2'],
      ['create', 'VM', 'twshop/db1'],
      ['create', 'VM', 'twblog/b1'],
    ] as const)
      assert.ok(
        has(r.changes, action, kind, name),
        `${action} ${kind} ${name} in ${JSON.stringify(r.changes)}`,
      );
    const rip = asReservedIp(ok(await api('GET', '/v1/subscriptions/tailwind/reserved-ips/tw-ip')));
    const shop = await getService('twshop');
    assert.equal(shop.subscription, 'tailwind');
    assert.equal(shop.reservedIp, 'tw-ip');
    assert.equal(shop.vip, rip.address);
    assert.deepEqual([...shop.vms].sort(), ['db1', 'web1', 'web2']);
    const db1 = await getVm('twshop', 'db1');
    assert.equal(db1.dip, '127.30.2.10');
    assert.equal(db1.state, 'running');
    const web1 = await getVm('twshop', 'web1');
    assert.equal(web1.workload, 'whoami');
    assert.ok(usableIn(web1.dip!, '127.30.1.0/24'));
    assert.equal(web1.endpoints[0]!.lbSet, 'web');
    assert.ok((await getVm('twblog', 'b1')).ilpip !== null);
  });

  test('applying the same topology again changes nothing and emits no event', async () => {
    const before = await dump();
    const r = ok(await applyYaml(TOPOLOGY)) as ApplyResult;
    assert.deepEqual(r, { dryRun: false, changes: [], wouldDelete: [] });
    assert.equal(await dump(), before, 'same state and the same last event');
  });

  test('a dry run reports the plan and changes nothing', async () => {
    const more = TOPOLOGY.replace(
      '          - name: db1\n',
      '          - { name: web3, subnet: front }\n          - name: db1\n',
    ).concat(`      - name: twnew\n        vnet: tw-net\n        vms: [{ name: n1, subnet: back }]\n`);
    const before = await dump();
    const r = ok(await applyYaml(more, '?dryRun=true')) as ApplyResult;
    assert.equal(r.dryRun, true);
    assert.ok(has(r.changes, 'create', 'VM', 'twshop/web3'), JSON.stringify(r.changes));
    assert.ok(has(r.changes, 'create', 'cloud service', 'twnew'));
    assert.ok(has(r.changes, 'create', 'VM', 'twnew/n1'));
    assert.equal(await dump(), before, 'a dry run leaves state and event log as they were');
    problem(await api('GET', '/v1/services/twshop/vms/web3'), 404);
    problem(await api('GET', '/v1/services/twnew'), 404);
  });

  test('without prune what the topology no longer names is only listed in wouldDelete; with prune it is deleted', async () => {
    const fewer = TOPOLOGY.replace(/ {10}- name: web2\n(?: {12}.*\n)+?(?= {10}- name: db1)/, '').replace(
      / {6}- name: twblog\n[\s\S]*$/,
      '',
    );
    assert.ok(!fewer.includes('web2') && !fewer.includes('twblog'), fewer);
    const before = await dump();
    const r = ok(await applyYaml(fewer)) as ApplyResult;
    assert.deepEqual(r.changes, []);
    assert.ok(has(r.wouldDelete, 'delete', 'VM', 'twshop/web2'), JSON.stringify(r.wouldDelete));
    assert.ok(has(r.wouldDelete, 'delete', 'cloud service', 'twblog'), JSON.stringify(r.wouldDelete));
    assert.equal(await dump(), before, 'nothing is deleted without prune');

    const pruned = ok(await applyYaml(fewer, '?prune=true')) as ApplyResult;
    assert.ok(has(pruned.changes, 'delete', 'VM', 'twshop/web2'), JSON.stringify(pruned.changes));
    assert.ok(has(pruned.changes, 'delete', 'cloud service', 'twblog'));
    assert.deepEqual(pruned.wouldDelete, []);
    problem(await api('GET', '/v1/services/twshop/vms/web2'), 404);
    problem(await api('GET', '/v1/services/twblog'), 404);
    ok(await api('GET', '/v1/services/twshop/vms/web1'));
    // Pruning is scoped to the subscriptions the topology names.
    ok(await api('GET', '/v1/services/vmsvc'));
  });

  test('the same topology as JSON is accepted and, once applied, changes nothing', async () => {
    const doc = {
      subscriptions: [
        {
          name: 'tailwind',
          virtualNetworks: [
            {
              name: 'tw-net',
              addressSpace: ['127.30.0.0/16'],
              subnets: [
                { name: 'front', cidr: '127.30.1.0/24' },
                { name: 'back', cidr: '127.30.2.0/24' },
              ],
            },
          ],
          reservedIps: [{ name: 'tw-ip' }],
          cloudServices: [
            {
              name: 'twshop',
              vnet: 'tw-net',
              reservedIp: 'tw-ip',
              vms: [
                {
                  name: 'web1',
                  subnet: 'front',
                  workload: 'whoami',
                  endpoints: [
                    {
                      name: 'http',
                      protocol: 'tcp',
                      publicPort: 8080,
                      localPort: 8000,
                      lbSet: 'web',
                      probe: { protocol: 'http', port: 8000, path: '/' },
                    },
                  ],
                },
                { name: 'db1', subnet: 'back', staticDip: '127.30.2.10' },
              ],
            },
          ],
        },
      ],
    };
    const before = await dump();
    assert.deepEqual(ok(await api('POST', '/v1/apply', doc)), {
      dryRun: false,
      changes: [],
      wouldDelete: [],
    });
    assert.equal(await dump(), before);
  });

  test('an invalid topology is refused with 422 listing every problem by path, and changes nothing', async () => {
    const bad = `
subscriptions:
  - name: tailwind
    bogus: 1
    virtualNetworks:
      - name: tw-net2
        addressSpace: [127.40.0.0/16, not-a-cidr]
        subnets:
          - { name: s1, cidr: 127.41.1.0/24 }
    cloudServices:
      - name: twbad
        vnet: nowhere
        vms:
          - { name: v1, subnet: s1, staticDip: 999.1.1.1 }
      - name: Bad_Label
`;
    const before = await dump();
    const p = problem(await applyYaml(bad), 422);
    assert.ok(Array.isArray(p.errors), 'errors lists the problems');
    const want = [
      'subscriptions[0].bogus',
      'subscriptions[0].virtualNetworks[0].addressSpace[1]',
      'subscriptions[0].virtualNetworks[0].subnets[0].cidr',
      'subscriptions[0].cloudServices[0].vnet',
      'subscriptions[0].cloudServices[0].vms[0].staticDip',
      'subscriptions[0].cloudServices[1].name',
    ];
    for (const path of want) {
      const e = p.errors.find((x) => x.path === path);
      assert.ok(e, `${path} in ${JSON.stringify(p.errors, null, 1)}`);
      assert.ok(e.message.length > 0);
    }
    assert.equal(await dump(), before, 'a refused topology changes nothing');
    problem(await applyYaml('subscriptions: [unclosed'), 422);
    problem(await applyYaml('- just\n- a list\n'), 422);
  });
});

// ------------------------------------------------------------------ shutdown

describe('shutdown', () => {
  test('the server stops cleanly on SIGTERM and fsck finds the state it leaves clean', async () => {
    stopped = true;
    const code = await srv.stop({ keep: true });
    try {
      assert.equal(code, 0, `vipdip up exited with ${code}:\n${srv.output()}`);
      assert.match(srv.output(), /state closed cleanly/);
      const fsck = spawnSync(process.execPath, [BIN, 'fsck', '--state', srv.stateDir], { encoding: 'utf8' });
      assert.equal(fsck.status, 0, `fsck: ${fsck.stdout}${fsck.stderr}`);
      assert.match(fsck.stdout, /clean/);
    } finally {
      rmSync(srv.dir, { recursive: true, force: true });
    }
  });
});
