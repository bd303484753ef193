/**
 * Tenant isolation over real HTTP: a subscription token reaches nothing of another subscription.
 * Every route is called with subscription B's token on subscription A's real resources; each one
 * answers exactly as it does for a resource that exists nowhere (404), or 403 on operator routes,
 * never 2xx, and nothing changes. Listings, the event log and the event stream show B only its own.
 * Without a valid token every /v1 route answers 401, however the path is spelled.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { call, startServer, type TestServer } from '../support/server.ts';

type Res = Awaited<ReturnType<typeof call>>;
interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  errors?: { path: string; message: string }[];
}
interface Event {
  seq: number;
  type: string;
  subscription: string | null;
  resource: string;
}

/** The names of one tenant's resources; routes are built from them. */
interface Names {
  sub: string;
  vnet: string;
  subnet: string;
  service: string;
  vm: string;
  rip: string;
  spare: string;
  token: string;
}
const A: Names = {
  sub: 'alpha',
  vnet: 'anet',
  subnet: 'asub2',
  service: 'ashop',
  vm: 'aweb',
  rip: 'aripx',
  spare: 'aspare',
  token: 'atok',
};
/** Names that exist nowhere: what a tenant must not be able to tell A's resources from. */
const GHOST: Names = {
  sub: 'ghost',
  vnet: 'gnet',
  subnet: 'gsub2',
  service: 'gshop',
  vm: 'gweb',
  rip: 'gripx',
  spare: 'gspare',
  token: 'gtok',
};
const B = { sub: 'beta', vnet: 'bnet', service: 'bshop', vm: 'bweb', spare: 'bspare' };

interface Route {
  method: string;
  path: string;
  body?: unknown;
  contentType?: string;
  /** Operator-only: a subscription token gets 403 whatever the names. */
  operator?: boolean;
}

const topologyNaming = (sub: string) =>
  `subscriptions:\n  - name: ${sub}\n    reservedIps:\n      - { name: extra }\n`;

/** Every route of the API, aimed at the resources named by `n` (subscription A's, or ghosts). */
function routes(n: Names): Route[] {
  const sub = `/v1/subscriptions/${n.sub}`;
  const vm = `/v1/services/${n.service}/vms/${n.vm}`;
  return [
    // operator routes
    { method: 'POST', path: '/v1/subscriptions', body: { name: `${n.sub}2` }, operator: true },
    { method: 'DELETE', path: sub, operator: true },
    { method: 'GET', path: '/v1/tokens', operator: true },
    { method: 'POST', path: `${sub}/tokens`, body: { name: 'stolen' }, operator: true },
    { method: 'DELETE', path: `${sub}/tokens/${n.token}`, operator: true },
    { method: 'POST', path: '/v1/pools', body: { cidr: '127.250.0.0/24' }, operator: true },
    { method: 'DELETE', path: '/v1/pools/127.100.0.0/16', operator: true },
    { method: 'POST', path: '/v1/hosts', body: { name: 'evil-host', rack: 'evil' }, operator: true },
    { method: 'POST', path: '/v1/hosts/rack1-host1/maintenance', operator: true },
    { method: 'POST', path: '/v1/racks/rack1/maintenance', operator: true },
    { method: 'POST', path: '/v1/images', body: { name: 'stolen', command: 'id' }, operator: true },
    { method: 'PUT', path: '/v1/images/whoami', body: { command: 'id' }, operator: true },
    { method: 'DELETE', path: '/v1/images/whoami', operator: true },
    // subscription
    { method: 'GET', path: sub },
    // virtual networks and subnets
    { method: 'GET', path: `${sub}/vnets` },
    { method: 'POST', path: `${sub}/vnets`, body: { name: 'stolen-net', addressSpace: ['127.60.0.0/16'] } },
    { method: 'GET', path: `${sub}/vnets/${n.vnet}` },
    { method: 'PATCH', path: `${sub}/vnets/${n.vnet}`, body: { dipPolicy: 'sequential' } },
    { method: 'DELETE', path: `${sub}/vnets/${n.vnet}` },
    {
      method: 'POST',
      path: `${sub}/vnets/${n.vnet}/subnets`,
      body: { name: 'stolen', cidr: '127.16.50.0/24' },
    },
    { method: 'DELETE', path: `${sub}/vnets/${n.vnet}/subnets/${n.subnet}` },
    // reserved IPs
    { method: 'GET', path: `${sub}/reserved-ips` },
    { method: 'POST', path: `${sub}/reserved-ips`, body: { name: 'stolen-ip' } },
    { method: 'GET', path: `${sub}/reserved-ips/${n.rip}` },
    { method: 'DELETE', path: `${sub}/reserved-ips/${n.spare}` },
    { method: 'POST', path: `${sub}/reserved-ips/${n.spare}/associate`, body: { service: n.service } },
    { method: 'POST', path: `${sub}/reserved-ips/${n.rip}/disassociate` },
    // B's own reserved IP, or B's own service, pointed at A's resources
    {
      method: 'POST',
      path: `/v1/subscriptions/${B.sub}/reserved-ips/${B.spare}/associate`,
      body: { service: n.service },
    },
    { method: 'POST', path: `/v1/subscriptions/${B.sub}/services`, body: { name: 'bnew1', vnet: n.vnet } },
    {
      method: 'POST',
      path: `/v1/subscriptions/${B.sub}/services`,
      body: { name: 'bnew2', vnet: B.vnet, reservedIp: n.spare },
    },
    // cloud services
    { method: 'GET', path: `${sub}/services` },
    { method: 'POST', path: `${sub}/services`, body: { name: 'stolen-svc' } },
    { method: 'GET', path: `/v1/services/${n.service}` },
    { method: 'DELETE', path: `/v1/services/${n.service}` },
    { method: 'POST', path: `/v1/services/${n.service}/reserve-vip`, body: { name: 'stolen-vip' } },
    // VMs
    { method: 'GET', path: `/v1/services/${n.service}/vms` },
    { method: 'POST', path: `/v1/services/${n.service}/vms`, body: { name: 'stolen-vm', subnet: 'front' } },
    { method: 'GET', path: vm },
    { method: 'PATCH', path: vm, body: { workload: 'stolen' } },
    { method: 'DELETE', path: vm },
    ...['start', 'stop', 'deallocate', 'restart', 'redeploy'].map((op) => ({
      method: 'POST',
      path: `${vm}/${op}`,
    })),
    // declarative apply of a topology naming A's subscription
    { method: 'POST', path: '/v1/apply', body: topologyNaming(n.sub), contentType: 'application/yaml' },
  ];
}

/** Routes that concern no subscription in particular. */
const GLOBAL_ROUTES: Route[] = [
  { method: 'GET', path: '/v1/whoami' },
  { method: 'GET', path: '/v1/subscriptions' },
  { method: 'GET', path: '/v1/pools' },
  { method: 'GET', path: '/v1/hosts' },
  { method: 'GET', path: '/v1/vnets' },
  { method: 'GET', path: '/v1/reserved-ips' },
  { method: 'GET', path: '/v1/services' },
  { method: 'GET', path: '/v1/vms' },
  { method: 'GET', path: '/v1/events' },
  { method: 'GET', path: '/v1/events/stream' },
];

// ------------------------------------------------------------------ helpers

let srv: TestServer;
let op: string;
let tokenA: string;
let tokenB: string;

const send = (token: string | undefined, r: Route): Promise<Res> =>
  call(srv, token, r.method, r.path, r.body, r.contentType ? { 'content-type': r.contentType } : {});
const api = (method: string, path: string, body?: unknown) => call(srv, op, method, path, body);

function ok(r: Res, status = 200): unknown {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  return r.body;
}

function isProblem(r: { status: number; headers: Headers; body: unknown }, status?: number): Problem {
  const where = `${r.status} ${JSON.stringify(r.body)}`;
  if (status !== undefined) assert.equal(r.status, status, where);
  assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, where);
  const p = r.body as Problem;
  assert.ok(typeof p === 'object' && p !== null, where);
  for (const k of ['type', 'title', 'detail', 'code'] as const) assert.equal(typeof p[k], 'string', where);
  assert.equal(p.status, r.status, where);
  return p;
}

/** A problem's text with the given names replaced by placeholders, to compare A with the ghosts. */
function normalized(p: Problem, n: Names): string {
  let text = JSON.stringify({
    status: p.status,
    code: p.code,
    title: p.title,
    detail: p.detail,
    errors: p.errors,
  });
  const pairs = (Object.entries(n) as [string, string][]).sort((x, y) => y[1].length - x[1].length);
  for (const [k, v] of pairs) text = text.replaceAll(v, `{${k}}`);
  return text;
}

/** A raw request whose path is sent exactly as given (percent-encodings, absolute form). */
function raw(
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Headers; body: unknown; text: string }> {
  const url = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const req = request(
      { host: url.hostname, port: url.port, method, path, headers, timeout: 10_000 },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => {
          let body: unknown = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* not JSON */
          }
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') h.set(k, v);
          resolve({ status: res.statusCode ?? 0, headers: h, body, text });
        });
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}

async function allEvents(token: string): Promise<Event[]> {
  const out: Event[] = [];
  let since = 0;
  for (;;) {
    const page = ok(await call(srv, token, 'GET', `/v1/events?since=${since}&limit=1000`)) as {
      events: Event[];
      next: number;
    };
    if (page.events.length === 0) return out;
    out.push(...page.events);
    since = page.next;
  }
}

/** Everything in the state, as the operator sees it. */
async function dump(): Promise<string> {
  const out: Record<string, unknown> = {};
  for (const p of [
    '/v1/subscriptions',
    '/v1/tokens',
    '/v1/vnets',
    '/v1/reserved-ips',
    '/v1/services',
    '/v1/vms',
    '/v1/pools',
    '/v1/hosts',
  ])
    out[p] = ok(await api('GET', p));
  out.events = await allEvents(op);
  return JSON.stringify(out);
}

/** Reads a text/event-stream until `done` says so; returns the events received. */
function readStream(
  token: string,
  path: string,
  done: (e: Event) => boolean,
  onOpen: () => Promise<void>,
): Promise<Event[]> {
  const url = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const got: Event[] = [];
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`the stream did not deliver the expected event in 15 s; got ${JSON.stringify(got)}`));
    }, 15_000);
    const req = request(
      { host: url.hostname, port: url.port, path, headers: { authorization: `Bearer ${token}` } },
      (res) => {
        if (res.statusCode !== 200) {
          clearTimeout(timer);
          reject(new Error(`stream answered ${res.statusCode}`));
          return;
        }
        let buf = '';
        let opened = false;
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          if (!opened) {
            opened = true;
            onOpen().catch((e: unknown) => {
              clearTimeout(timer);
              req.destroy();
              reject(e instanceof Error ? e : new Error(String(e)));
            });
          }
          let i: number;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const data = block
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trimStart())
              .join('\n');
            if (data === '') continue;
            const e = JSON.parse(data) as Event;
            got.push(e);
            if (done(e)) {
              clearTimeout(timer);
              req.destroy();
              resolve(got);
              return;
            }
          }
        });
      },
    );
    req.on('error', (e) => {
      if (!req.destroyed) reject(e);
    });
    req.end();
  });
}

// ------------------------------------------------------------------ set-up

before(async () => {
  srv = await startServer();
  op = srv.operatorToken;
  for (const [s, vnet, subnets] of [
    [A.sub, A.vnet, ['front', A.subnet]],
    [B.sub, B.vnet, ['front']],
  ] as const) {
    ok(await api('POST', '/v1/subscriptions', { name: s }), 201);
    // Overlapping address spaces across subscriptions are allowed.
    ok(
      await api('POST', `/v1/subscriptions/${s}/vnets`, {
        name: vnet,
        addressSpace: ['127.16.0.0/16'],
        subnets: subnets.map((name, i) => ({ name, cidr: `127.16.${i + 1}.0/24` })),
      }),
      201,
    );
  }
  ok(await api('POST', `/v1/subscriptions/${A.sub}/reserved-ips`, { name: A.rip }), 201);
  ok(await api('POST', `/v1/subscriptions/${A.sub}/reserved-ips`, { name: A.spare }), 201);
  ok(
    await api('POST', `/v1/subscriptions/${A.sub}/services`, {
      name: A.service,
      vnet: A.vnet,
      reservedIp: A.rip,
    }),
    201,
  );
  ok(await api('POST', `/v1/services/${A.service}/vms`, { name: A.vm, subnet: 'front', ilpip: true }), 201);
  ok(await api('POST', `/v1/services/${A.service}/vms`, { name: 'aweb2', subnet: 'front' }), 201);
  ok(await api('POST', `/v1/subscriptions/${B.sub}/reserved-ips`, { name: B.spare }), 201);
  ok(await api('POST', `/v1/subscriptions/${B.sub}/services`, { name: B.service, vnet: B.vnet }), 201);
  ok(await api('POST', `/v1/services/${B.service}/vms`, { name: B.vm, subnet: 'front' }), 201);
  tokenA = (
    ok(await api('POST', `/v1/subscriptions/${A.sub}/tokens`, { name: A.token }), 201) as { token: string }
  ).token;
  tokenB = (
    ok(await api('POST', `/v1/subscriptions/${B.sub}/tokens`, { name: 'btok' }), 201) as { token: string }
  ).token;
});

after(async () => {
  await srv.stop();
});

// ------------------------------------------------------------------ the tests

describe('a subscription token on another subscription', () => {
  test("every route on A's resources answers B exactly as for resources that do not exist (404, or 403 on operator routes), and changes nothing", async () => {
    const before = await dump();
    const real = routes(A);
    const ghost = routes(GHOST);
    assert.equal(real.length, ghost.length);
    const failures: string[] = [];
    for (let i = 0; i < real.length; i++) {
      const r = real[i]!;
      const label = `${r.method} ${r.path}`;
      const res = await send(tokenB, r);
      try {
        assert.ok(res.status < 200 || res.status >= 300, `answered ${res.status}: ${res.text}`);
        const p = isProblem(res);
        if (r.operator) assert.equal(res.status, 403, `operator route: ${res.text}`);
        else if (r.path !== '/v1/apply') assert.equal(res.status, 404, res.text);
        else assert.ok(res.status >= 400 && res.status < 500, res.text);
        const g = await send(tokenB, ghost[i]!);
        const pg = isProblem(g);
        assert.equal(
          normalized(p, A),
          normalized(pg, GHOST),
          'A differs from a resource that does not exist',
        );
      } catch (e) {
        failures.push(`${label}: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.equal(await dump(), before, "B's attempts changed nothing");
  });

  test("A's own token reaches the same resources (the routes are right)", async () => {
    ok(await call(srv, tokenA, 'GET', `/v1/subscriptions/${A.sub}`));
    ok(await call(srv, tokenA, 'GET', `/v1/subscriptions/${A.sub}/vnets/${A.vnet}`));
    ok(await call(srv, tokenA, 'GET', `/v1/subscriptions/${A.sub}/reserved-ips/${A.rip}`));
    ok(await call(srv, tokenA, 'GET', `/v1/services/${A.service}`));
    ok(await call(srv, tokenA, 'GET', `/v1/services/${A.service}/vms/${A.vm}`));
    ok(await call(srv, tokenA, 'POST', `/v1/services/${A.service}/vms/${A.vm}/restart`));
  });

  test('listings show each token only its own subscription', async () => {
    for (const [token, mine, other] of [
      [tokenB, B.sub, A.sub],
      [tokenA, A.sub, B.sub],
    ] as const) {
      const subs = ok(await call(srv, token, 'GET', '/v1/subscriptions')) as { name: string }[];
      assert.deepEqual(
        subs.map((s) => s.name),
        [mine],
      );
      for (const path of ['/v1/vnets', '/v1/reserved-ips', '/v1/services', '/v1/vms']) {
        const list = ok(await call(srv, token, 'GET', path)) as { subscription: string }[];
        assert.ok(list.length > 0, `${mine} has ${path}`);
        assert.deepEqual(
          list.filter((x) => x.subscription !== mine),
          [],
          `${path} with ${mine}'s token`,
        );
        const all = ok(await api('GET', path)) as { subscription: string }[];
        assert.deepEqual(
          list,
          all.filter((x) => x.subscription === mine),
          `${path} shows all of ${mine}'s and nothing of ${other}'s`,
        );
      }
    }
  });

  test("the event log shows each token only its subscription's events", async () => {
    const all = await allEvents(op);
    assert.ok(all.some((e) => e.subscription === A.sub));
    for (const [token, mine] of [
      [tokenB, B.sub],
      [tokenA, A.sub],
    ] as const) {
      const seen = await allEvents(token);
      assert.deepEqual(
        seen,
        all.filter((e) => e.subscription === mine),
        `the events of ${mine}, all of them and only them`,
      );
      // Small pages too: the filter holds across page boundaries.
      const paged: Event[] = [];
      let since = 0;
      for (;;) {
        const page = ok(await call(srv, token, 'GET', `/v1/events?since=${since}&limit=2`)) as {
          events: Event[];
          next: number;
        };
        if (page.events.length === 0) break;
        paged.push(...page.events);
        since = page.next;
      }
      assert.deepEqual(paged, seen);
    }
  });

  test("the event stream carries a subscription token only its subscription's events", async () => {
    const marker = (e: Event) => e.type === 'vm.restarted' && e.resource === `vm/${B.service}/${B.vm}`;
    const got = await readStream(tokenB, '/v1/events/stream?since=0', marker, async () => {
      ok(await call(srv, tokenA, 'POST', `/v1/services/${A.service}/vms/${A.vm}/stop`));
      ok(await call(srv, tokenA, 'POST', `/v1/services/${A.service}/vms/${A.vm}/start`));
      ok(await api('POST', `/v1/subscriptions/${A.sub}/reserved-ips`, { name: 'afresh' }), 201);
      ok(await call(srv, tokenB, 'POST', `/v1/services/${B.service}/vms/${B.vm}/restart`));
    });
    assert.deepEqual(
      got.filter((e) => e.subscription !== B.sub),
      [],
      'no event of another subscription, nor of the operator',
    );
    const want = (await allEvents(op)).filter((e) => e.subscription === B.sub && e.seq <= got.at(-1)!.seq);
    assert.deepEqual(
      got.map((e) => e.seq),
      want.map((e) => e.seq),
      "every one of B's events, in order",
    );
  });

  test("the fabric listings a subscription token may read reveal nothing of another tenant's usage", async () => {
    const look = async () => {
      const out: Record<string, unknown> = {};
      for (const path of ['/v1/pools', '/v1/hosts']) {
        const r = await call(srv, tokenB, 'GET', path);
        out[path] = r.status === 403 ? 403 : ok(r);
      }
      return JSON.stringify(out);
    };
    const before = await look();
    // A's activity: a reserved IP and VMs that take public addresses and host slots.
    ok(await call(srv, tokenA, 'POST', `/v1/subscriptions/${A.sub}/reserved-ips`, { name: 'aside' }), 201);
    ok(
      await call(srv, tokenA, 'POST', `/v1/services/${A.service}/vms`, {
        name: 'aweb3',
        subnet: 'front',
        ilpip: true,
      }),
      201,
    );
    ok(
      await call(srv, tokenA, 'POST', `/v1/services/${A.service}/vms`, { name: 'aweb4', subnet: 'front' }),
      201,
    );
    assert.equal(await look(), before, "B's view of pools and hosts moves with A's activity");
  });
});

describe('without a valid token', () => {
  const everyRoute = () => [...GLOBAL_ROUTES, ...routes(A)];

  test('every /v1 route answers 401 with WWW-Authenticate, whatever the credentials', async () => {
    const before = await dump();
    const failures: string[] = [];
    for (const r of everyRoute()) {
      for (const [what, headers] of [
        ['no token', {}],
        ['a wrong token', { authorization: 'Bearer vipdip_not-a-real-token' }],
        ['a revoked-looking token', { authorization: `Bearer ${tokenB}x` }],
        ['a non-bearer scheme', { authorization: `Basic ${Buffer.from('operator:x').toString('base64')}` }],
        ['an empty bearer', { authorization: 'Bearer ' }],
      ] as const) {
        const res = await call(srv, undefined, r.method, r.path, r.body, {
          ...headers,
          ...(r.contentType ? { 'content-type': r.contentType } : {}),
        });
        try {
          isProblem(res, 401);
          assert.equal((res.body as Problem).code, 'UNAUTHORIZED');
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer\b/);
        } catch (e) {
          failures.push(`${r.method} ${r.path} with ${what}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    assert.deepEqual(failures, [], failures.join('\n'));
    assert.equal(await dump(), before);
  });

  test('a percent-encoded or absolute-form /v1 path does not get past authentication', async () => {
    const failures: string[] = [];
    const port = new URL(srv.url).port;
    for (const r of everyRoute()) {
      if (r.body !== undefined) continue; // raw() sends no body; the routes with one are covered below
      const rest = r.path.slice('/v1/'.length);
      for (const path of [
        `/%761/${rest}`,
        `/v%31/${rest}`,
        `/%76%31/${rest}`,
        `http://127.0.0.1:${port}/v1/${rest}`,
      ]) {
        const res = await raw(r.method, path);
        try {
          assert.ok(
            res.status === 401 || res.status === 404,
            `answered ${res.status}: ${res.text.slice(0, 200)}`,
          );
          isProblem(res);
        } catch (e) {
          failures.push(`${r.method} ${path}: ${(e as Error).message.split('\n')[0]}`);
        }
      }
    }
    for (const path of ['/%761/subscriptions', `http://127.0.0.1:${port}/v1/subscriptions`]) {
      const res = await new Promise<number>((resolve, reject) => {
        const req = request(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path,
            headers: { 'content-type': 'application/json' },
          },
          (r) => {
            r.resume();
            resolve(r.statusCode ?? 0);
          },
        );
        req.on('error', reject);
        req.end(JSON.stringify({ name: 'intruder' }));
      });
      if (res !== 401 && res !== 404) failures.push(`POST ${path} (create a subscription): answered ${res}`);
    }
    const subs = ok(await api('GET', '/v1/subscriptions')) as { name: string }[];
    assert.ok(!subs.some((s) => s.name === 'intruder'), 'no subscription was created without a token');
    const byStatus: Record<string, number> = {};
    for (const f of failures) {
      const k = /answered (\d+)/.exec(f)?.[1] ?? 'other';
      byStatus[k] = (byStatus[k] ?? 0) + 1;
    }
    assert.deepEqual(
      failures,
      [],
      `${failures.length} requests got past authentication (by status: ${JSON.stringify(byStatus)}), such as:\n` +
        failures.slice(0, 12).join('\n'),
    );
  });
});
