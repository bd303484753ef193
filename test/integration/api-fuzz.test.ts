/**
 * Adversarial requests against every route of a real `vipdip up`: fast-check generates malformed
 * bodies (wrong types, 10–100 KB strings, 1000-level nesting, invalid CIDRs and addresses, bad
 * ports, unicode and control-character names), odd paths (`..`, NUL, very long and badly encoded
 * segments), odd query strings, odd content types, invalid JSON, invalid YAML and YAML bombs.
 * Every request is built to be invalid, so for every response: the status is below 500; an error
 * is RFC 9457 application/problem+json with a `code`; nothing is accepted; and afterwards the whole
 * state (every listing and the last event) is exactly what it was.
 *
 * Failures are collected per category and reported grouped (route, status, content type) with
 * examples, and the fast-check seed (set FUZZ_SEED to replay a run).
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { call, startServer, type TestServer } from '../support/server.ts';

// ------------------------------------------------------------------ requests and verdicts

interface Req {
  method: string;
  /** Sent exactly as given: percent-encodings, `..` and all. */
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** The route this request aims at, for grouping failures. */
  route: string;
  /** A GET that may legitimately succeed (reads change nothing). */
  mayPass?: boolean;
}
interface Answer {
  status: number;
  contentType: string;
  text: string;
}

let srv: TestServer;
let op: string;
let stateBefore: string;
const SEED = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : Date.now() % 2 ** 31;

function send(r: Req): Promise<Answer> {
  const url = new URL(srv.url);
  return new Promise((resolve) => {
    const headers: Record<string, string> = { authorization: `Bearer ${op}`, ...r.headers };
    if (r.body !== undefined) headers['content-length'] = String(Buffer.byteLength(r.body));
    const req = request(
      { host: url.hostname, port: url.port, method: r.method, path: r.path, headers },
      (res) => {
        const contentType = String(res.headers['content-type'] ?? '');
        if (contentType.startsWith('text/event-stream')) {
          // A stream that opened: nothing more to read, and it must not have opened.
          res.destroy();
          resolve({ status: res.statusCode ?? 0, contentType, text: '(an event stream)' });
          return;
        }
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType, text }));
        res.on('error', (e) => resolve({ status: -1, contentType, text: `response error: ${e.message}` }));
      },
    );
    req.setTimeout(15_000, () => req.destroy(new Error('no answer in 15 s')));
    req.on('error', (e) => resolve({ status: -1, contentType: '', text: `request error: ${e.message}` }));
    req.end(r.body);
  });
}

/** What is wrong with an answer, or null. */
function verdict(r: Req, a: Answer): string | null {
  if (a.status < 0) return a.text;
  if (a.status >= 500) return `server error ${a.status}`;
  if (a.status < 400) return r.mayPass ? null : `accepted (${a.status}) a request built to be invalid`;
  if (!/^application\/problem\+json/.test(a.contentType)) return `error ${a.status} is not problem+json`;
  let body: unknown;
  try {
    body = JSON.parse(a.text);
  } catch {
    return `error ${a.status} has a body that is not JSON`;
  }
  const p = body as Record<string, unknown>;
  if (typeof p.code !== 'string' || p.code === '') return `error ${a.status} has no code`;
  for (const k of ['type', 'title', 'detail'] as const)
    if (typeof p[k] !== 'string') return `error ${a.status} has no ${k}`;
  if (p.status !== a.status) return `problem.status ${String(p.status)} is not the HTTP status ${a.status}`;
  return null;
}

const clip = (s: string, n = 160) => (s.length > n ? `${s.slice(0, n)}…(${s.length} chars)` : s);

/** Runs requests, and fails with every bad answer grouped by route, verdict and content type. */
class Findings {
  readonly groups = new Map<string, { count: number; examples: string[] }>();
  sent = 0;

  async check(r: Req): Promise<void> {
    this.record(r, await send(r));
  }

  record(r: Req, a: Answer): void {
    this.sent++;
    const v = verdict(r, a);
    if (v === null) return;
    // Accepted requests are grouped by route; bare errors by what produced them (one cause, many routes).
    let origin = r.route;
    if (a.status >= 400 && !a.contentType.startsWith('application/problem+json')) {
      const code = /"code":"([A-Z_]+)"/.exec(a.text)?.[1];
      origin = code ?? (/"error":"([^"]+)"/.exec(a.text)?.[1] || 'the HTTP layer');
    }
    const key = `${v} [${a.contentType || 'no content type'}] from ${origin}`;
    const g = this.groups.get(key) ?? { count: 0, examples: [] };
    g.count++;
    if (g.examples.length < 2)
      g.examples.push(
        `(${r.route}) ${r.method} ${clip(r.path, 100)}${r.headers ? ` ${clip(JSON.stringify(r.headers), 100)}` : ''}${r.body !== undefined ? ` body ${clip(JSON.stringify(r.body), 120)}` : ''} → ${a.status} ${clip(a.text)}`,
      );
    this.groups.set(key, g);
  }

  assertNone(what: string): void {
    const lines: string[] = [];
    for (const [k, g] of this.groups) {
      lines.push(`${g.count}× ${k}`);
      for (const e of g.examples) lines.push(`    e.g. ${e}`);
    }
    assert.equal(
      lines.length,
      0,
      `${what}: ${this.groups.size} kinds of bad answer among ${this.sent} requests (seed ${SEED}):\n${lines.join('\n')}`,
    );
  }
}

async function runProperty(arb: fc.Arbitrary<Req>, numRuns: number, f: Findings): Promise<void> {
  await fc.assert(
    fc.asyncProperty(arb, async (r) => {
      await f.check(r);
      return true;
    }),
    { numRuns, seed: SEED },
  );
}

// ------------------------------------------------------------------ what is valid (to stay invalid)

const OCTET = /^(0|[1-9][0-9]{0,2})$/;
function validIpv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => OCTET.test(p) && Number(p) <= 255);
}
function validCidr(s: string): boolean {
  const [base, prefix, extra] = s.split('/');
  if (extra !== undefined || base === undefined || prefix === undefined) return false;
  if (!validIpv4(base) || !/^(0|[1-9][0-9]?)$/.test(prefix) || Number(prefix) > 32) return false;
  const n = base.split('.').reduce((a, p) => a * 256 + Number(p), 0);
  return n % 2 ** (32 - Number(prefix)) === 0;
}
const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$/;
const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;

// ------------------------------------------------------------------ the fixture and the routes

const SUB = 'contoso';
const REAL = {
  subscription: SUB,
  vnet: 'net',
  subnet: 'spare',
  service: 'shop',
  vm: 'web1',
  name: 'spare-ip',
  host: 'rack1-host1',
  rack: 'rack1',
  operation: 'restart',
  base: '127.100.0.0',
  prefix: '16',
};
type Param = keyof typeof REAL;

type Kind =
  | 'name'
  | 'dns'
  | 'nullableName'
  | 'cidr'
  | 'cidrList'
  | 'subnets'
  | 'nullableAddress'
  | 'bool'
  | 'policy'
  | 'move'
  | 'workload'
  | 'endpoints';
interface BodySpec {
  base: Record<string, unknown>;
  fields: Record<string, Kind>;
  required: string[];
}
interface Route {
  method: string;
  path: string;
  body?: BodySpec;
}

const ENDPOINT = { name: 'e1', protocol: 'tcp', publicPort: 9000, localPort: 9001 };

const ROUTES: Route[] = [
  { method: 'GET', path: '/v1/subscriptions' },
  {
    method: 'POST',
    path: '/v1/subscriptions',
    body: { base: { name: 'fz-sub' }, fields: { name: 'name' }, required: ['name'] },
  },
  { method: 'GET', path: '/v1/subscriptions/:subscription' },
  { method: 'DELETE', path: '/v1/subscriptions/:subscription' },
  { method: 'GET', path: '/v1/tokens' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/tokens',
    body: { base: { name: 'fz-token' }, fields: { name: 'name' }, required: ['name'] },
  },
  { method: 'DELETE', path: '/v1/subscriptions/:subscription/tokens/:name' },
  { method: 'GET', path: '/v1/pools' },
  {
    method: 'POST',
    path: '/v1/pools',
    body: { base: { cidr: '127.220.0.0/24' }, fields: { cidr: 'cidr' }, required: ['cidr'] },
  },
  { method: 'DELETE', path: '/v1/pools/:base/:prefix' },
  { method: 'GET', path: '/v1/hosts' },
  {
    method: 'POST',
    path: '/v1/hosts',
    body: {
      base: { name: 'fz-host', rack: 'fz-rack' },
      fields: { name: 'name', rack: 'name' },
      required: ['name', 'rack'],
    },
  },
  { method: 'POST', path: '/v1/hosts/:host/maintenance' },
  { method: 'POST', path: '/v1/racks/:rack/maintenance' },
  { method: 'GET', path: '/v1/vnets' },
  { method: 'GET', path: '/v1/subscriptions/:subscription/vnets' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/vnets',
    body: {
      base: {
        name: 'fz-net',
        addressSpace: ['127.50.0.0/16'],
        subnets: [{ name: 's1', cidr: '127.50.1.0/24' }],
        dipPolicy: 'sequential',
        movePolicy: 'keep',
      },
      fields: {
        name: 'name',
        addressSpace: 'cidrList',
        subnets: 'subnets',
        dipPolicy: 'policy',
        movePolicy: 'move',
      },
      required: ['name', 'addressSpace'],
    },
  },
  { method: 'GET', path: '/v1/subscriptions/:subscription/vnets/:vnet' },
  {
    method: 'PATCH',
    path: '/v1/subscriptions/:subscription/vnets/:vnet',
    body: {
      base: { dipPolicy: 'sequential', movePolicy: 'keep' },
      fields: { dipPolicy: 'policy', movePolicy: 'move' },
      required: [],
    },
  },
  { method: 'DELETE', path: '/v1/subscriptions/:subscription/vnets/:vnet' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/vnets/:vnet/subnets',
    body: {
      base: { name: 'fz-subnet', cidr: '127.16.77.0/24' },
      fields: { name: 'name', cidr: 'cidr' },
      required: ['name', 'cidr'],
    },
  },
  { method: 'DELETE', path: '/v1/subscriptions/:subscription/vnets/:vnet/subnets/:subnet' },
  { method: 'GET', path: '/v1/reserved-ips' },
  { method: 'GET', path: '/v1/subscriptions/:subscription/reserved-ips' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/reserved-ips',
    body: { base: { name: 'fz-ip' }, fields: { name: 'name' }, required: ['name'] },
  },
  { method: 'GET', path: '/v1/subscriptions/:subscription/reserved-ips/:name' },
  { method: 'DELETE', path: '/v1/subscriptions/:subscription/reserved-ips/:name' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/reserved-ips/:name/associate',
    body: { base: { service: 'empty' }, fields: { service: 'dns' }, required: ['service'] },
  },
  { method: 'POST', path: '/v1/subscriptions/:subscription/reserved-ips/:name/disassociate' },
  { method: 'GET', path: '/v1/services' },
  { method: 'GET', path: '/v1/subscriptions/:subscription/services' },
  {
    method: 'POST',
    path: '/v1/subscriptions/:subscription/services',
    body: {
      base: { name: 'fz-svc', vnet: 'net', reservedIp: 'spare-ip' },
      fields: { name: 'dns', vnet: 'nullableName', reservedIp: 'nullableName' },
      required: ['name'],
    },
  },
  { method: 'GET', path: '/v1/services/:service' },
  { method: 'DELETE', path: '/v1/services/:service' },
  {
    method: 'POST',
    path: '/v1/services/:service/reserve-vip',
    body: { base: { name: 'fz-vip' }, fields: { name: 'name' }, required: ['name'] },
  },
  { method: 'GET', path: '/v1/vms' },
  { method: 'GET', path: '/v1/services/:service/vms' },
  {
    method: 'POST',
    path: '/v1/services/:service/vms',
    body: {
      base: {
        name: 'fz-vm',
        subnet: 'front',
        staticDip: '127.16.1.77',
        ilpip: true,
        workload: 'whoami',
        endpoints: [ENDPOINT],
        start: true,
      },
      fields: {
        name: 'dns',
        subnet: 'name',
        staticDip: 'nullableAddress',
        ilpip: 'bool',
        workload: 'workload',
        endpoints: 'endpoints',
        start: 'bool',
      },
      required: ['name', 'subnet'],
    },
  },
  { method: 'GET', path: '/v1/services/:service/vms/:vm' },
  {
    method: 'PATCH',
    path: '/v1/services/:service/vms/:vm',
    body: {
      base: { workload: 'echo', ilpip: true, endpoints: [ENDPOINT] },
      fields: { staticDip: 'nullableAddress', ilpip: 'bool', workload: 'workload', endpoints: 'endpoints' },
      required: [],
    },
  },
  { method: 'DELETE', path: '/v1/services/:service/vms/:vm' },
  { method: 'POST', path: '/v1/services/:service/vms/:vm/:operation' },
  { method: 'GET', path: '/v1/events' },
  { method: 'GET', path: '/v1/events/stream' },
  { method: 'POST', path: '/v1/apply' },
];
const BODY_ROUTES = ROUTES.filter((r) => r.body !== undefined);
const PARAM_ROUTES = ROUTES.filter((r) => r.path.includes(':'));

function fill(path: string, values: Partial<Record<Param, string>> = {}): string {
  return path.replace(/:([a-z]+)/g, (_, p: string) => values[p as Param] ?? REAL[p as Param]);
}

/** A topology that would change the state if it were applied. */
const LIVE_TOPOLOGY = {
  subscriptions: [{ name: 'fz-applied', reservedIps: [{ name: 'fz-applied-ip' }] }],
};

// ------------------------------------------------------------------ generators of bad values

const deep = (depth: number, leaf: unknown = 1): unknown => {
  let v: unknown = leaf;
  for (let i = 0; i < depth; i++) v = i % 2 === 0 ? { a: v } : [v];
  return v;
};
const deepValue = fc.integer({ min: 1000, max: 2000 }).map((d) => deep(d));
const hugeString = fc
  .tuple(fc.integer({ min: 10_000, max: 100_000 }), fc.constantFrom('a', 'é', '\u0000', '😀', '<', '%'))
  .map(([n, c]) => c.repeat(n));
const controlChars = fc.string({
  unit: fc.integer({ min: 0, max: 31 }).map((n) => String.fromCharCode(n)),
  minLength: 1,
});
const weirdText = fc.oneof(
  fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 40 }),
  controlChars,
  fc.constantFrom(
    '..',
    '.',
    '../../etc/passwd',
    "' OR 1=1 --",
    '<script>alert(1)</script>',
    '\u202eevil',
    'a\u0000b',
    'Ünïcödé',
    '名前',
    '😀',
    ' leading',
    'trailing ',
    'a b',
    '-dash',
    'dash-',
    '.dot',
    'UPPER',
    'under_score',
    '%00',
    '\\',
    '/slash',
    '${jndi:ldap://x}',
    '{{7*7}}',
  ),
);
/** A name the API must refuse: empty, or with a character outside [A-Za-z0-9._-], or badly placed. */
const badName = weirdText.filter((s) => !NAME.test(s));
const badDnsLabel = weirdText.filter((s) => !DNS_LABEL.test(s));
const cidrLike = fc.oneof(
  fc.constantFrom(
    '127.16.0.0/33',
    '127.16.0.1/16',
    '256.0.0.0/8',
    '127.16.0.0',
    '127.16.0.0/',
    '/16',
    '127.16.0/16',
    '127.016.0.0/16',
    '127.16.0.0/016',
    ' 127.16.0.0/16',
    '127.16.0.0/16 ',
    '127.16.0.0/-1',
    '::1/128',
    '127.16.0.0/16/16',
    '127.16.0.0\\16',
    '0x7f.0.0.0/8',
    '',
  ),
  fc
    .tuple(fc.nat(300), fc.nat(300), fc.nat(300), fc.nat(300), fc.integer({ min: -2, max: 40 }))
    .map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}/${p}`),
  fc.string({ maxLength: 18 }),
);
const badCidr = cidrLike.filter((s) => !validCidr(s));
const badAddress = fc
  .oneof(
    fc.constantFrom(
      '127.16.1.256',
      '127.16.1',
      '127.16.1.1.1',
      '127.016.1.5',
      ' 127.16.1.5',
      '::1',
      '',
      'localhost',
      '1e3',
    ),
    fc.tuple(fc.nat(999), fc.nat(999), fc.nat(999), fc.nat(999)).map((p) => p.join('.')),
    fc.string({ maxLength: 15 }),
  )
  .filter((s) => !validIpv4(s));
const badPort = fc.oneof(
  fc.constantFrom(-1, 0, 65536, 99999, 2 ** 31, -(2 ** 31), 1e21, 1.5, 80.0001, -0.5),
  fc.integer({ min: -1_000_000, max: 0 }),
  fc.integer({ min: 65536, max: 2 ** 31 }),
  fc.double({ min: 1, max: 65535, noInteger: true, noNaN: true }),
);
const badEndpoints = fc.oneof(
  badPort.map((p) => [{ ...ENDPOINT, publicPort: p }]),
  badPort.map((p) => [{ ...ENDPOINT, localPort: p }]),
  badPort.map((p) => [{ ...ENDPOINT, probe: { protocol: 'tcp', port: p } }]),
  badName.map((n) => [{ ...ENDPOINT, name: n }]),
  fc
    .string()
    .filter((s) => s !== 'tcp' && s !== 'udp')
    .map((p) => [{ ...ENDPOINT, protocol: p }]),
  badCidr.map((c) => [{ ...ENDPOINT, acl: [{ order: 1, action: 'permit', remoteSubnet: c }] }]),
  fc
    .integer({ min: -100, max: 100 })
    .filter((m) => m < 4 || m > 30)
    .map((m) => [{ ...ENDPOINT, idleTimeoutMinutes: m }]),
  fc.constant([ENDPOINT, ENDPOINT]), // the same name twice
  deepValue.map((d) => [{ ...ENDPOINT, extra: d }]),
  deepValue.map((d) => [{ ...ENDPOINT, probe: d }]),
);
const anyJson = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
  deepValue,
);
const notString = anyJson.filter((v) => typeof v !== 'string');
const notNullOrString = anyJson.filter((v) => typeof v !== 'string' && v !== null);
const notBool = anyJson.filter((v) => typeof v !== 'boolean');
const notList = anyJson.filter((v) => !Array.isArray(v));

function wrongTypeFor(kind: Kind): fc.Arbitrary<unknown> {
  switch (kind) {
    case 'name':
    case 'dns':
    case 'cidr':
      return notString;
    case 'nullableName':
    case 'nullableAddress':
    case 'workload':
      return notNullOrString;
    case 'bool':
      return notBool;
    case 'policy':
    case 'move':
      return notString;
    case 'cidrList':
      return fc.oneof(notList, fc.array(notString, { minLength: 1, maxLength: 3 }), fc.constant([]));
    case 'subnets':
      return fc.oneof(
        notList,
        fc
          .array(fc.oneof(notString, fc.string()), { minLength: 1, maxLength: 2 })
          .filter((a) => a.some((x) => typeof x !== 'object' || x === null || Array.isArray(x))),
      );
    case 'endpoints':
      return fc.oneof(
        notList,
        fc.array(fc.oneof(fc.integer(), fc.string(), fc.constant(null)), { minLength: 1, maxLength: 3 }),
      );
  }
}

/** A value of the right JSON type that the API must still refuse. */
function badValueFor(kind: Kind): fc.Arbitrary<unknown> {
  switch (kind) {
    case 'name':
    case 'nullableName':
      return badName;
    case 'dns':
      return badDnsLabel;
    case 'cidr':
      return badCidr;
    case 'cidrList':
      return badCidr.map((c) => ['127.50.0.0/16', c]);
    case 'subnets':
      return fc.oneof(
        badCidr.map((c) => [{ name: 's1', cidr: c }]),
        badName.map((n) => [{ name: n, cidr: '127.50.1.0/24' }]),
        fc.constant([{ name: 's1', cidr: '127.99.0.0/24' }]), // outside the address space
        fc.constant([{ name: 's1', cidr: '127.50.1.0/30' }]), // smaller than a /29
        fc.constant([
          { name: 's1', cidr: '127.50.1.0/24' },
          { name: 's2', cidr: '127.50.1.128/25' },
        ]),
      );
    case 'nullableAddress':
      return badAddress;
    case 'bool':
      return fc.constantFrom('true', 'false', 1, 0);
    case 'policy':
      return fc.string().filter((s) => s !== 'random' && s !== 'sequential');
    case 'move':
      return fc.string().filter((s) => s !== 'redraw' && s !== 'keep');
    case 'workload':
      return fc.constant('');
    case 'endpoints':
      return badEndpoints;
  }
}

/** One change that makes a valid body invalid. */
function mutatedBody(spec: BodySpec): fc.Arbitrary<{ body: unknown; how: string }> {
  const fields = Object.keys(spec.fields);
  const pick = fc.constantFrom(...fields);
  const variants: fc.Arbitrary<{ body: unknown; how: string }>[] = [
    fc
      .oneof(
        fc.constantFrom('extra', 'Name', 'name ', 'NAME', '__proto__', 'constructor', 'admin', ''),
        fc.string({ maxLength: 12 }),
      )
      .filter((k) => !fields.includes(k))
      .chain((k) =>
        anyJson.map((v) => ({ body: { ...spec.base, [k]: v }, how: `unknown field ${JSON.stringify(k)}` })),
      ),
    pick.chain((f) =>
      wrongTypeFor(spec.fields[f]!).map((v) => ({ body: { ...spec.base, [f]: v }, how: `${f}: wrong type` })),
    ),
    pick.chain((f) =>
      badValueFor(spec.fields[f]!).map((v) => ({ body: { ...spec.base, [f]: v }, how: `${f}: bad value` })),
    ),
    fc.constantFrom(...fields).chain((f) =>
      hugeString.map((v) => ({
        body: {
          ...spec.base,
          [f]: spec.fields[f] === 'cidrList' || spec.fields[f] === 'endpoints' ? [v] : v,
        },
        how: `${f}: a huge string`,
      })),
    ),
    deepValue.map((d) => ({ body: d, how: 'a deeply nested body' })),
    anyJson
      .filter((v) => typeof v !== 'object' || v === null || Array.isArray(v))
      .map((v) => ({ body: v, how: 'not an object' })),
  ];
  if (spec.required.length > 0)
    variants.push(
      fc.constantFrom(...spec.required).map((f) => {
        const body = { ...spec.base };
        delete body[f];
        return { body, how: `without ${f}` };
      }),
    );
  return fc.oneof(...variants);
}

/** A path segment that names nothing that exists, as it would arrive after decoding. */
const weirdSegment = fc
  .oneof(
    weirdText,
    fc.integer({ min: 65, max: 3000 }).map((n) => 'a'.repeat(n)),
    fc.constantFrom('..', '.', '%', '%2e%2e', '..%2f..%2f'),
  )
  .filter((s) => s === '' || !/^[A-Za-z0-9-]+$/.test(s) || s.length > 64);
/** The segment as sent: percent-encoded, raw when the characters allow it, or badly encoded. */
function encodeSegment(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    // A lone surrogate: send the bytes of its UTF-8 replacement.
    return [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
  }
}
const encodedSegment = fc.oneof(
  { weight: 5, arbitrary: weirdSegment.map(encodeSegment) },
  {
    weight: 2,
    arbitrary: fc.constantFrom('..', '.', '%2e%2e', '%2E.', '%00', '%00.json', 'a%2Fb', '~', ';x=1', ':x'),
  },
  { weight: 1, arbitrary: fc.constantFrom('%', '%zz', '%E0%A4%A', '%C0%AF', '%ff%fe', '%u0041') },
  { weight: 1, arbitrary: fc.integer({ min: 101, max: 3000 }).map((n) => 'b'.repeat(n)) },
);

const invalidSeq = fc
  .oneof(
    fc.constantFrom('-1', 'abc', '1e3', '1.5', '0x10', ' 1', '1 ', '', '9999999999999999', '+1', '١٢٣'),
    fc.string({ maxLength: 20 }),
    fc.integer({ min: 16, max: 4000 }).map((n) => '9'.repeat(n)),
  )
  .filter((s) => !/^[0-9]{1,15}$/.test(s));

type Pair = [string, string];
const queryString = (pairs: Pair[]) =>
  pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
const validApplyQuery = (pairs: Pair[]) => {
  const keys = pairs.map(([k]) => k);
  return (
    new Set(keys).size === keys.length &&
    pairs.every(([k, v]) => (k === 'dryRun' || k === 'prune') && (v === 'true' || v === 'false'))
  );
};

// ------------------------------------------------------------------ YAML and JSON documents for apply

/** The oracle for apply bodies: true when the text could be an acceptable topology. */
function couldBeValidTopology(text: string): boolean {
  let doc: unknown;
  try {
    doc = parseYaml(text, { maxAliasCount: 100, logLevel: 'error' });
  } catch {
    return false;
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return false;
  return Object.keys(doc).every((k) => ['publicPools', 'fabric', 'subscriptions'].includes(k));
}

const yamlBomb = fc
  .record({ levels: fc.integer({ min: 6, max: 10 }), fanout: fc.integer({ min: 6, max: 12 }) })
  .map(({ levels, fanout }) => {
    const lines = [`l0: &l0 ["lol", "lol", "lol"]`];
    for (let i = 1; i <= levels; i++)
      lines.push(`l${i}: &l${i} [${Array.from({ length: fanout }, () => `*l${i - 1}`).join(', ')}]`);
    lines.push(`subscriptions: [*l${levels}]`);
    return lines.join('\n');
  });
const yamlBroken = fc
  .oneof(
    fc.string({ maxLength: 30 }).map((s) => `subscriptions: [${s}`),
    fc.string({ maxLength: 30 }).map((s) => `subscriptions:\n  - name: "${s.replaceAll('"', '')}`),
    fc.string({ maxLength: 30 }).map((s) => `subscriptions: []\nsubscriptions: [${JSON.stringify(s)}]`),
    fc.string({ maxLength: 20 }).map((s) => `subscriptions:\n\t- name: ${s}`),
    fc.constantFrom(
      'subscriptions: *nowhere',
      'a: &a [*a]',
      '{ unclosed',
      ': : :',
      'subscriptions:\n  - name: a\n   - name: b',
      '- [',
      '%YAML 9.9\n---\nsubscriptions: []',
      '%TAG ! tag:evil.com,2000:\n--- !foo\nsubscriptions: []',
      '"\\u12"',
      '---\n...\n---\n- a\n---\n- b',
      'subscriptions: !!binary "not base64 !!!"',
      '\u0000',
      '\uFEFF\uFEFF: x',
    ),
  )
  .filter((t) => !couldBeValidTopology(t));
/** Deep flow collections, under an unknown key so the document is invalid whatever they parse to. */
const yamlDeep = fc
  .tuple(fc.integer({ min: 1000, max: 3000 }), fc.boolean())
  .map(
    ([d, seq]) =>
      `zzUnknown: 1\nsubscriptions: ${seq ? '['.repeat(d) + ']'.repeat(d) : '{a: '.repeat(d) + '1' + '}'.repeat(d)}`,
  );
const yamlTagged = fc.constantFrom(
  '%YAML 1.1\n---\nzzUnknown: 1\nsubscriptions: !!set {a, b}',
  '%YAML 1.1\n---\nzzUnknown: 1\nsubscriptions:\n  - name: !!binary aGVsbG8=',
  '%YAML 1.1\n---\nzzUnknown: 1\nsubscriptions: !!omap [a: 1, b: 2]',
  '%YAML 1.1\n---\nzzUnknown: 1\nsubscriptions:\n  - name: !!timestamp 2001-12-14t21:59:43.10-05:00',
  'zzUnknown: 1\nsubscriptions:\n  - name: !!js/function "function(){}"',
  'zzUnknown: 1\nsubscriptions:\n  - name: !custom x',
  'zzUnknown: 1\nsubscriptions:\n  - ? [complex, key]\n    : value',
  'zzUnknown: 1\nsubscriptions:\n  - <<: {name: merged}',
);

/** Topology-shaped documents with fuzzed values everywhere, made invalid by an unknown top-level key. */
const shallowJson = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer(), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 5 }), fc.integer(), { maxKeys: 3 }),
);
const fuzzValue = fc.oneof(
  { weight: 4, arbitrary: shallowJson },
  { weight: 4, arbitrary: fc.string({ maxLength: 20 }) },
  { weight: 3, arbitrary: badName },
  { weight: 2, arbitrary: badCidr },
  { weight: 2, arbitrary: badAddress },
  { weight: 1, arbitrary: hugeString.map((h) => h.slice(0, 20_000)) },
);
const fuzzVm = fc.record(
  {
    name: fc.oneof(fuzzValue, fc.constant('vm1')),
    subnet: fc.oneof(fuzzValue, fc.constant('front')),
    staticDip: fc.oneof(fuzzValue, badAddress),
    ilpip: fuzzValue,
    workload: fuzzValue,
    endpoints: fc.oneof(badEndpoints, fuzzValue),
  },
  { requiredKeys: [] },
);
/**
 * The document as YAML; yaml's stringifier runs out of stack on some huge strings (its own limit,
 * not the server's), and JSON, which is YAML too, carries the same document then.
 */
function asYaml(doc: unknown): string {
  try {
    return toYaml(doc);
  } catch {
    return JSON.stringify(doc);
  }
}

const fuzzTopology = fc.record(
  {
    zzUnknown: fc.constant(true),
    publicPools: fc.oneof(fc.array(fc.oneof(badCidr, fuzzValue), { maxLength: 3 }), fuzzValue),
    fabric: fc.oneof(
      fuzzValue,
      fc.record({
        racks: fc.oneof(
          fuzzValue,
          fc.array(
            fc.record({ name: fuzzValue, hosts: fc.oneof(fuzzValue, fc.array(fuzzValue, { maxLength: 3 })) }),
            { maxLength: 2 },
          ),
        ),
      }),
    ),
    subscriptions: fc.oneof(
      fuzzValue,
      fc.array(
        fc.record(
          {
            name: fc.oneof(fuzzValue, fc.constant(SUB)),
            virtualNetworks: fc.oneof(
              fuzzValue,
              fc.array(
                fc.record(
                  {
                    name: fuzzValue,
                    addressSpace: fc.oneof(
                      fuzzValue,
                      fc.array(fc.oneof(badCidr, fuzzValue), { maxLength: 3 }),
                    ),
                    subnets: fc.oneof(
                      fuzzValue,
                      fc.array(fc.record({ name: fuzzValue, cidr: fc.oneof(badCidr, fuzzValue) }), {
                        maxLength: 3,
                      }),
                    ),
                    dipPolicy: fuzzValue,
                    movePolicy: fuzzValue,
                  },
                  { requiredKeys: [] },
                ),
                { maxLength: 2 },
              ),
            ),
            reservedIps: fc.oneof(fuzzValue, fc.array(fc.record({ name: fuzzValue }), { maxLength: 3 })),
            cloudServices: fc.oneof(
              fuzzValue,
              fc.array(
                fc.record(
                  {
                    name: fuzzValue,
                    vnet: fuzzValue,
                    reservedIp: fuzzValue,
                    vms: fc.oneof(fuzzValue, fc.array(fuzzVm, { maxLength: 3 })),
                  },
                  { requiredKeys: [] },
                ),
                { maxLength: 2 },
              ),
            ),
          },
          { requiredKeys: [] },
        ),
        { maxLength: 2 },
      ),
    ),
  },
  { requiredKeys: ['zzUnknown'] },
);

// ------------------------------------------------------------------ state

async function dump(): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const p of [
    '/v1/subscriptions',
    '/v1/vnets',
    '/v1/services',
    '/v1/vms',
    '/v1/reserved-ips',
    '/v1/pools',
    '/v1/hosts',
  ]) {
    const r = await call(srv, op, 'GET', p);
    assert.equal(r.status, 200, `${p}: ${r.text}`);
    out[p] = r.body;
  }
  let since = 0;
  for (;;) {
    const r = await call(srv, op, 'GET', `/v1/events?since=${since}&limit=1000`);
    const page = r.body as { events: unknown[]; next: number };
    if (page.events.length === 0) break;
    since = page.next;
  }
  out.lastSeq = since;
  return JSON.stringify(out);
}

before(async () => {
  srv = await startServer();
  op = srv.operatorToken;
  const setup: [string, string, unknown][] = [
    ['POST', '/v1/subscriptions', { name: SUB }],
    [
      'POST',
      `/v1/subscriptions/${SUB}/vnets`,
      {
        name: 'net',
        addressSpace: ['127.16.0.0/16'],
        subnets: [
          { name: 'front', cidr: '127.16.1.0/24' },
          { name: 'spare', cidr: '127.16.2.0/24' },
        ],
      },
    ],
    ['POST', `/v1/subscriptions/${SUB}/reserved-ips`, { name: 'shop-ip' }],
    ['POST', `/v1/subscriptions/${SUB}/reserved-ips`, { name: 'spare-ip' }],
    ['POST', `/v1/subscriptions/${SUB}/services`, { name: 'shop', vnet: 'net', reservedIp: 'shop-ip' }],
    ['POST', `/v1/subscriptions/${SUB}/services`, { name: 'empty', vnet: 'net' }],
    [
      'POST',
      '/v1/services/shop/vms',
      { name: 'web1', subnet: 'front', endpoints: [{ name: 'http', publicPort: 80 }] },
    ],
    ['POST', `/v1/subscriptions/${SUB}/tokens`, { name: 'ci' }],
  ];
  for (const [method, path, body] of setup) {
    const r = await call(srv, op, method, path, body);
    assert.equal(r.status, 201, `${method} ${path}: ${r.text}`);
  }
  stateBefore = await dump();
});

after(async () => {
  await srv.stop();
});

// ------------------------------------------------------------------ the properties

describe('adversarial requests (fast-check)', () => {
  test('malformed bodies on every route that takes one are refused with 4xx problems', async () => {
    const f = new Findings();
    const arb = fc.constantFrom(...BODY_ROUTES).chain((route) =>
      mutatedBody(route.body!).map(({ body, how }): Req => ({
        method: route.method,
        path: fill(route.path),
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        route: `${route.method} ${route.path} (${how.replace(/"[^"]*"/, '"…"')})`,
      })),
    );
    await runProperty(arb, 150, f);
    f.assertNone('malformed bodies');
  });

  test('odd path segments (.., NUL, unicode, very long, badly encoded) are refused with 4xx problems', async () => {
    const f = new Findings();
    const arb = fc.oneof(
      fc.constantFrom(...PARAM_ROUTES).chain((route) => {
        const params = [...route.path.matchAll(/:([a-z]+)/g)].map((m) => m[1] as Param);
        return fc.tuple(fc.constantFrom(...params), encodedSegment).map(([param, seg]): Req => ({
          method: route.method,
          path: fill(route.path, { [param]: seg }),
          ...(route.body
            ? { headers: { 'content-type': 'application/json' }, body: JSON.stringify(route.body.base) }
            : {}),
          route: `${route.method} ${route.path} (odd :${param})`,
        }));
      }),
      fc.tuple(fc.constantFrom(...ROUTES), encodedSegment).map(([route, seg]): Req => ({
        method: route.method,
        path: `${fill(route.path)}/${seg}`,
        route: `${route.method} ${route.path}/<extra segment>`,
      })),
    );
    await runProperty(arb, 100, f);
    f.assertNone('odd paths');
  });

  test('odd query strings are refused with 4xx problems, or answered when harmless', async () => {
    const f = new Findings();
    const keys = fc.oneof(
      fc.constantFrom(
        'since',
        'limit',
        'dryRun',
        'prune',
        'since[]',
        'since[a]',
        '__proto__',
        'constructor',
        '',
      ),
      fc.string({ maxLength: 10 }),
    );
    const pairs = fc.array(
      fc.tuple(keys, fc.oneof(invalidSeq, fc.constantFrom('true', 'false', '0', '5'))),
    ) as fc.Arbitrary<Pair[]>;
    const arb = fc.oneof(
      // Reads of the log: any query is harmless, but never a 5xx or a bare error.
      pairs.map((p): Req => ({
        method: 'GET',
        path: `/v1/events?${queryString(p)}`,
        route: 'GET /v1/events?…',
        mayPass: true,
      })),
      fc.constantFrom('since', 'limit').chain((k) =>
        invalidSeq.map((v): Req => ({
          method: 'GET',
          path: `/v1/events?${k}=${encodeURIComponent(v)}`,
          route: `GET /v1/events?${k}=<invalid>`,
        })),
      ),
      fc.tuple(invalidSeq, invalidSeq).map(([a, b]): Req => ({
        method: 'GET',
        path: `/v1/events?since=${encodeURIComponent(a)}&since=${encodeURIComponent(b)}`,
        route: 'GET /v1/events?since=…&since=…',
      })),
      // The stream must refuse, never open, with a bad since or Last-Event-ID.
      invalidSeq.map((v): Req => ({
        method: 'GET',
        path: `/v1/events/stream?since=${encodeURIComponent(v)}`,
        route: 'GET /v1/events/stream?since=<invalid>',
      })),
      invalidSeq
        // (An empty Last-Event-ID means "from the start", as the SSE specification has it.)
        .filter((v) => v !== '' && /^[\x20-\x7e]*$/.test(v) && v.trim() === v && v.length < 8000)
        .map((v): Req => ({
          method: 'GET',
          path: '/v1/events/stream',
          headers: { 'last-event-id': v },
          route: 'GET /v1/events/stream (Last-Event-ID <invalid>)',
        })),
      // Apply with a live topology: only a bad query stands between it and the state.
      pairs
        .filter((p) => p.length > 0 && !validApplyQuery(p))
        .map((p): Req => ({
          method: 'POST',
          path: `/v1/apply?${queryString(p)}`,
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(LIVE_TOPOLOGY),
          route: 'POST /v1/apply?<invalid>',
        })),
    );
    await runProperty(arb, 80, f);
    f.assertNone('odd query strings');
  });

  test('odd content types are refused with 4xx problems', async () => {
    const f = new Findings();
    const json = /^(application\/json|text\/plain|application\/yaml|text\/yaml|application\/x-yaml)$/;
    const contentType = fc.oneof(
      fc.constantFrom(
        'text/xml',
        'application/xml',
        'application/x-www-form-urlencoded',
        'multipart/form-data; boundary=xyz',
        'application/octet-stream',
        'image/png',
        'application/jsonx',
        'json',
        'application/',
        '/',
        ';',
        'text/html; charset=utf-8',
        'application/vnd.api+json',
        'application/problem+json',
        'application/merge-patch+json',
        'application/json-patch+json',
        'text/json',
        'application/json5',
        'application/ld+json',
      ),
      fc.stringMatching(/^[a-z]{1,10}\/[a-z0-9.+-]{1,20}$/).filter((t) => !json.test(t)),
    );
    const arb = fc
      .tuple(fc.constantFrom(...BODY_ROUTES, { method: 'POST', path: '/v1/apply' } as Route), contentType)
      .map(([route, type]): Req => ({
        method: route.method,
        path: fill(route.path),
        headers: { 'content-type': type },
        body: JSON.stringify(route.body?.base ?? LIVE_TOPOLOGY),
        route: `${route.method} ${route.path} (content-type ${type.split(/[;/]/)[0]}/…)`,
      }));
    // YAML and text bodies go through the YAML parser: outside /v1/apply they are not objects.
    const yamlElsewhere = fc
      .tuple(
        fc.constantFrom(...BODY_ROUTES),
        fc.constantFrom('text/plain', 'application/yaml', 'text/yaml', 'application/x-yaml'),
      )
      .map(([route, type]): Req => ({
        method: route.method,
        path: fill(route.path),
        headers: { 'content-type': type },
        body: JSON.stringify(route.body!.base),
        route: `${route.method} ${route.path} (content-type ${type})`,
      }));
    await runProperty(fc.oneof(arb, yamlElsewhere), 60, f);
    f.assertNone('odd content types');
  });

  test('invalid JSON on every route that takes a body is refused with 400 problems', async () => {
    const f = new Findings();
    const broken = fc
      .tuple(fc.constantFrom(...BODY_ROUTES, { method: 'POST', path: '/v1/apply' } as Route), fc.nat())
      .chain(([route, cut]) => {
        const good = JSON.stringify(route.body?.base ?? LIVE_TOPOLOGY);
        return fc
          .oneof(
            fc.constant(good.slice(0, cut % good.length)),
            fc.constant(good.replace(/"/g, "'")),
            fc.constant(good.replace(/"([a-zA-Z]+)":/g, '$1:')),
            fc.constant(good.replace(/}$/, ',}')),
            fc.constant(`${good}${good}`),
            fc.constant(`// comment\n${good}`),
            fc.constant(`${good} trailing`),
            fc.constant(good.replace(/:"[^"]*"/, ':NaN')),
            fc.constant(good.replace(/:"/, ':"\u0001')),
            fc.constant('\uFEFF\uFEFF' + good),
            fc.constant('['.repeat(5000)),
            fc.constant(''),
            fc.string({ maxLength: 50 }),
            fc.string({ unit: 'binary', maxLength: 50 }),
          )
          .filter((t) => {
            try {
              JSON.parse(t.replace(/^\uFEFF/, ''));
              return false;
            } catch {
              return true;
            }
          })
          .map((text): Req => ({
            method: route.method,
            path: fill(route.path),
            headers: { 'content-type': 'application/json' },
            body: text,
            route: `${route.method} ${route.path} (invalid JSON)`,
          }));
      });
    await runProperty(broken, 50, f);
    f.assertNone('invalid JSON');
  });

  test('invalid YAML, YAML bombs, deep and tagged YAML and fuzzed topologies are refused by /v1/apply with 4xx problems', async () => {
    const f = new Findings();
    const yamlReq =
      (route: string) =>
      (text: string): Req => ({
        method: 'POST',
        path: '/v1/apply',
        headers: { 'content-type': 'application/yaml' },
        body: text,
        route,
      });
    const arb = fc.oneof(
      yamlBroken.map(yamlReq('POST /v1/apply (broken YAML)')),
      yamlBomb.map(yamlReq('POST /v1/apply (YAML bomb)')),
      yamlDeep.map(yamlReq('POST /v1/apply (deep YAML)')),
      yamlTagged.map(yamlReq('POST /v1/apply (tagged YAML)')),
      fuzzTopology.map((doc) => yamlReq('POST /v1/apply (fuzzed topology, YAML)')(asYaml(doc))),
      fuzzTopology.map((doc): Req => ({
        method: 'POST',
        path: '/v1/apply',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(doc),
        route: 'POST /v1/apply (fuzzed topology, JSON)',
      })),
      fuzzTopology.map((doc): Req => ({
        method: 'POST',
        path: '/v1/apply?dryRun=true',
        headers: { 'content-type': 'text/plain' },
        body: asYaml(doc),
        route: 'POST /v1/apply?dryRun=true (fuzzed topology, text/plain)',
      })),
    );
    await runProperty(arb, 80, f);
    f.assertNone('apply documents');
  });
});

describe('adversarial requests (fixed)', () => {
  test('known hostile requests get 4xx problems, never a 5xx or a bare error', async () => {
    const f = new Findings();
    const json = { 'content-type': 'application/json' };
    const cases: Req[] = [
      {
        method: 'POST',
        path: '/v1/subscriptions',
        headers: json,
        body: JSON.stringify({ name: 'x'.repeat((1 << 20) + 1) }),
        route: 'a body over 1 MiB',
      },
      {
        method: 'POST',
        path: '/v1/subscriptions',
        headers: json,
        body: JSON.stringify(deep(1000)),
        route: 'a 1000-level body',
      },
      {
        method: 'POST',
        path: '/v1/apply',
        headers: json,
        body: JSON.stringify({ subscriptions: deep(1000), zzUnknown: 1 }),
        route: 'a 1000-level topology',
      },
      {
        method: 'POST',
        path: '/v1/subscriptions',
        headers: json,
        body: '{"__proto__":{"admin":true},"name":"proto"}',
        route: '__proto__ in a body',
      },
      {
        method: 'POST',
        path: '/v1/subscriptions',
        headers: json,
        body: '{"constructor":{"prototype":{"admin":true}},"name":"ctor"}',
        route: 'constructor.prototype in a body',
      },
      {
        method: 'POST',
        path: '/v1/apply',
        headers: json,
        body: '{"__proto__":{"subscriptions":[{"name":"polluted"}]}}',
        route: '__proto__ in a topology',
      },
      {
        method: 'POST',
        path: '/v1/apply',
        headers: { 'content-type': 'application/yaml' },
        body: '__proto__:\n  subscriptions: [{name: polluted}]\nzz: 1',
        route: '__proto__ in a YAML topology',
      },
      { method: 'GET', path: `/v1/services/${'a'.repeat(5000)}`, route: 'a 5000-character path segment' },
      { method: 'GET', path: '/v1/services/%E0%A4%A', route: 'a badly encoded path' },
      {
        method: 'GET',
        path: '/v1/vms',
        headers: { authorization: `Bearer ${'t'.repeat(300)}` },
        route: 'a 300-character token',
      },
      {
        method: 'POST',
        path: '/v1/subscriptions/contoso/tokens',
        headers: json,
        body: JSON.stringify({ name: '\u001b[31mred\u0007' }),
        route: 'a token name with terminal escapes',
      },
      {
        method: 'POST',
        path: '/v1/subscriptions/contoso/tokens',
        headers: json,
        body: JSON.stringify({ name: 'a\u0000b' }),
        route: 'a token name with NUL',
      },
    ];
    for (const c of cases) await f.check(c);
    // Requests the HTTP layer itself refuses, sent on a raw socket so the answer is read whatever
    // the server does with the connection afterwards.
    const port = Number(new URL(srv.url).port);
    const auth = `Authorization: Bearer ${op}\r\n`;
    for (const [route, text] of [
      [
        'a malformed Content-Length',
        `POST /v1/vms HTTP/1.1\r\nHost: x\r\n${auth}Content-Length: abc\r\n\r\n`,
      ],
      [
        'a 20 KB query string',
        `GET /v1/events?since=${'1'.repeat(20_000)} HTTP/1.1\r\nHost: x\r\n${auth}\r\n`,
      ],
      [
        'a 20 KB header',
        `GET /v1/events HTTP/1.1\r\nHost: x\r\n${auth}X-Filler: ${'f'.repeat(20_000)}\r\n\r\n`,
      ],
      ['a bad request line', `GET /v1/vms HTTP/9.9 junk\r\nHost: x\r\n\r\n`],
      ['a NUL in a header', `GET /v1/vms HTTP/1.1\r\nHost: x\r\n${auth}X-Bad: a\u0000b\r\n\r\n`],
    ] as const) {
      const answer = await new Promise<string>((resolve) => {
        const sock = connect(port, '127.0.0.1', () => sock.write(text));
        let d = '';
        sock.setEncoding('utf8');
        sock.on('data', (c: string) => (d += c));
        sock.on('close', () => resolve(d));
        sock.on('error', () => resolve(d));
        setTimeout(() => sock.destroy(), 5000);
      });
      const head = /^HTTP\/1\.1 (\d+)[^\r]*\r\n([\s\S]*?)\r\n\r\n([\s\S]*)$/.exec(answer);
      const req: Req = { method: 'RAW', path: clip(text.split('\r\n')[0]!, 60), route };
      const contentType = /content-type: *([^\r]*)/i.exec(head?.[2] ?? '')?.[1] ?? '';
      f.record(
        req,
        head
          ? { status: Number(head[1]), contentType, text: head[3]! }
          : { status: -1, contentType: '', text: `no HTTP answer: ${JSON.stringify(answer)}` },
      );
    }
    f.assertNone('hostile requests');
  });
});

describe('afterwards', () => {
  test('the state is exactly what it was before all the adversarial requests', async () => {
    assert.equal(
      await dump(),
      stateBefore,
      'subscriptions, networks, services, VMs, reserved IPs, pools, hosts and the last event are unchanged',
    );
  });
});
