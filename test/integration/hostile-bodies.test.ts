/**
 * A hostile tenant's bodies (issue 11, items 3, 4 and 8): against a real `vipdip up`, every route
 * that may carry a body (read from the server's own OpenAPI document, not a hand-written list) gets
 * wide, long and deep bodies up to the default limit with a tenant token; each is answered 4xx with
 * a small problem, the server stays alive, and fsck finds the state clean after. Every input schema
 * bounds its strings and arrays; a route the caller may not use refuses before the body is sent.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const MIB = 1 << 20;
const PROBLEM_BYTES_MAX = 64 * 1024;

interface Schema {
  $ref?: string;
  type?: string | string[];
  maxItems?: number;
  maxLength?: number;
  enum?: unknown[];
  const?: unknown;
  format?: string;
  pattern?: string;
  items?: Schema;
  properties?: Record<string, Schema>;
  additionalProperties?: boolean | Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
}
interface Operation {
  parameters?: { name: string; in: string; schema?: Schema }[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
}
interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

let srv: TestServer;
let tenant: string;
let doc: OpenApi;

before(async () => {
  srv = await startServer();
  const op = srv.operatorToken;
  assert.equal((await call(srv, op, 'POST', '/v1/subscriptions', { name: 'tenant-a' })).status, 201);
  const t = await call(srv, op, 'POST', '/v1/subscriptions/tenant-a/tokens', { name: 'hostile' });
  tenant = (t.body as { token: string }).token;
  doc = (await call(srv, undefined, 'GET', '/v1/openapi.json')).body as OpenApi;
});
after(async () => {
  await srv.stop();
});

/** Every string and array of a schema, with its path, after following $refs. */
function leaves(s: Schema | undefined, path: string, out: { path: string; s: Schema }[], seen = 0): void {
  if (s === undefined || seen > 20) return;
  if (s.$ref !== undefined) {
    const name = s.$ref.replace(/^#\/components\/schemas\//, '').replace(/#$/, '');
    return leaves(doc.components?.schemas?.[name], path, out, seen + 1);
  }
  for (const alt of [...(s.anyOf ?? []), ...(s.oneOf ?? []), ...(s.allOf ?? [])])
    leaves(alt, path, out, seen + 1);
  const types = Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type];
  if (types.includes('string') || types.includes('array')) out.push({ path, s });
  if (s.items !== undefined) leaves(s.items, `${path}[]`, out, seen + 1);
  for (const [k, v] of Object.entries(s.properties ?? {})) leaves(v, `${path}.${k}`, out, seen + 1);
  if (typeof s.additionalProperties === 'object') leaves(s.additionalProperties, `${path}.*`, out, seen + 1);
}

const bodyRoutes = () =>
  Object.entries(doc.paths).flatMap(([path, methods]) =>
    Object.entries(methods)
      .filter(([m]) => ['post', 'put', 'patch', 'delete'].includes(m))
      .map(([m, o]) => ({
        method: m.toUpperCase(),
        path: path
          .replace('{subscription}', 'tenant-a')
          .replace('{operation}', 'start')
          .replace(/\{[a-z]+\}/g, 'x'),
        op: o,
      })),
  );

describe('every input is bounded', () => {
  test('each string of every body, path and query schema has a maxLength, each array a maxItems', () => {
    const unbounded: string[] = [];
    let checked = 0;
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, o] of Object.entries(methods)) {
        const found: { path: string; s: Schema }[] = [];
        for (const c of Object.values(o.requestBody?.content ?? {})) leaves(c.schema, 'body', found);
        for (const p of o.parameters ?? []) leaves(p.schema, `${p.in}.${p.name}`, found);
        for (const { path: where, s } of found) {
          checked++;
          const types = Array.isArray(s.type) ? s.type : [s.type];
          const bounded = types.includes('array')
            ? s.maxItems !== undefined
            : s.maxLength !== undefined || s.enum !== undefined || s.const !== undefined;
          if (!bounded) unbounded.push(`${method.toUpperCase()} ${path} ${where}`);
        }
      }
    }
    assert.ok(checked > 50, `only ${checked} inputs found: the walk of the document is broken`);
    assert.deepEqual(unbounded, []);
  });
});

describe('hostile bodies on every route', () => {
  test('wide, long and deep bodies get a small 4xx problem and the server stays alive', async () => {
    const routes = bodyRoutes();
    assert.ok(routes.length >= 25, `only ${routes.length} routes with a body method`);
    const deep = '['.repeat(MIB / 2 - 32) + ']'.repeat(MIB / 2 - 32);
    const failures: string[] = [];
    for (const r of routes) {
      const schema = Object.values(r.op.requestBody?.content ?? {})[0]?.schema;
      const arrayKey =
        Object.entries(schema?.properties ?? {}).find(([, v]) => v.type === 'array')?.[0] ?? 'items';
      const bodies = {
        wide: `{"${arrayKey}":[${Array.from({ length: Math.floor((MIB - 64) / 3) }, () => '{}').join(',')}]}`,
        long: `{"name":"${'a'.repeat(MIB - 64)}"}`,
        deep,
      };
      for (const [kind, body] of Object.entries(bodies)) {
        const res = await call(srv, tenant, r.method, r.path, body);
        const where = `${r.method} ${r.path} (${kind}): ${res.status}`;
        if (res.status < 400 || res.status >= 500) failures.push(where);
        else if (res.text.length > PROBLEM_BYTES_MAX)
          failures.push(`${where} answered ${res.text.length} bytes`);
        else if (!/problem\+json/.test(res.headers.get('content-type') ?? ''))
          failures.push(`${where} not a problem`);
      }
      assert.equal((await call(srv, undefined, 'GET', '/healthz')).status, 200, `dead after ${r.path}`);
    }
    assert.deepEqual(failures, []);
  });

  test('apply: a megabyte of YAML items, deep YAML, and a topology of too many values', async () => {
    const yaml = { 'content-type': 'application/yaml' };
    const wide = await call(
      srv,
      tenant,
      'POST',
      '/v1/apply',
      `subscriptions:\n${'- {}\n'.repeat(MIB / 5)}`,
      yaml,
    );
    assert.ok([400, 422].includes(wide.status), `status ${wide.status}`);
    assert.match((wide.body as { detail: string }).detail, /items|values/);
    const deep = await call(
      srv,
      tenant,
      'POST',
      '/v1/apply',
      `a: ${'['.repeat(5000)}${']'.repeat(5000)}\n`,
      yaml,
    );
    assert.equal(deep.status, 400);
    const detail = (deep.body as { detail: string }).detail;
    assert.match(detail, /nests deeper than 32 levels/);
    assert.doesNotMatch(detail, /call stack/i);
    const dashes = await call(
      srv,
      tenant,
      'POST',
      '/v1/apply',
      `subscriptions:\n${'- '.repeat(3000)}x\n`,
      yaml,
    );
    assert.equal(dashes.status, 400);
  });

  test('a problem lists at most 100 errors and says how many there were', async () => {
    // 300 virtual networks, each missing everything: three problems or more each.
    const vnets = Array.from({ length: 300 }, () => ({}));
    const res = await call(srv, tenant, 'POST', '/v1/apply', {
      subscriptions: [{ name: 'tenant-a', virtualNetworks: vnets }],
    });
    assert.equal(res.status, 422);
    const p = res.body as { errors: unknown[]; errorsTotal: number };
    assert.equal(p.errors.length, 100);
    assert.ok(p.errorsTotal >= 300, `errorsTotal ${p.errorsTotal}`);
    assert.equal(
      (await call(srv, tenant, 'GET', '/v1/subscriptions/tenant-a/vnets')).body instanceof Array,
      true,
    );
  });

  test('the state is consistent after all of it (fsck clean)', async () => {
    const ok = await call(srv, tenant, 'GET', '/v1/vms');
    assert.equal(ok.status, 200);
    const code = await srv.stop({ keep: true });
    assert.equal(code, 0);
    const fsck = spawnSync(process.execPath, [BIN, 'fsck', '--state', srv.stateDir], { encoding: 'utf8' });
    assert.equal(fsck.status, 0, `fsck: ${fsck.stdout}${fsck.stderr}`);
    srv = await startServer({ dir: srv.dir });
    tenant = (
      (await call(srv, srv.operatorToken, 'POST', '/v1/subscriptions/tenant-a/tokens', { name: 'again' }))
        .body as {
        token: string;
      }
    ).token;
  });
});

describe('authorization before the body', () => {
  test('a tenant sending an agent report is refused before the body arrives', async () => {
    const { port } = new URL(srv.url);
    // Headers announce 64 MB; one chunk is sent and the rest never is. The 403 must come anyway.
    const answer = await new Promise<{ status: number; body: string }>((ok, fail) => {
      const req = request(
        {
          host: '127.0.0.1',
          port,
          method: 'PUT',
          path: '/v1/agents/x/report',
          headers: {
            authorization: `Bearer ${tenant}`,
            'content-type': 'application/json',
            'content-length': String(64 * MIB),
          },
        },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => ok({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', fail);
      req.write(`{"agent":"x","backends":[${'{"a":1},'.repeat(1000)}`);
    });
    assert.equal(answer.status, 403);
    assert.match(answer.body, /agent or the operator token/);
  });

  test('a body declared in another charset than UTF-8 is 415 and creates nothing', async () => {
    const res = await call(
      srv,
      tenant,
      'POST',
      '/v1/subscriptions/tenant-a/vnets',
      { name: 'utf16net', addressSpace: ['10.1.0.0/16'] },
      { 'content-type': 'application/json; charset=utf-16' },
    );
    assert.equal(res.status, 415);
    const list = (await call(srv, tenant, 'GET', '/v1/subscriptions/tenant-a/vnets')).body as {
      name: string;
    }[];
    assert.ok(!list.some((v) => v.name === 'utf16net'));
  });

  test('no problem echoes a token given in the query string', async () => {
    const secret = 'vd_not-a-real-token-but-secret';
    const res = await call(srv, undefined, 'GET', `/v1/vms?access_token=${secret}`);
    assert.equal(res.status, 401);
    assert.doesNotMatch(res.text, new RegExp(secret));
    const nf = await call(srv, tenant, 'GET', `/v1/no-such-route?access_token=${secret}`);
    assert.doesNotMatch(nf.text, new RegExp(secret));
  });
});

describe('the smaller defects', () => {
  test('a subscription name with capitals is refused, so CONTOSO cannot sit beside contoso', async () => {
    const op = srv.operatorToken;
    const res = await call(srv, op, 'POST', '/v1/subscriptions', { name: 'CONTOSO' });
    assert.equal(res.status, 422);
    assert.match((res.body as { detail: string }).detail, /must be lower case/);
    const apply = await call(srv, op, 'POST', '/v1/apply', { subscriptions: [{ name: 'Tenant-A' }] });
    assert.equal(apply.status, 422);
    const subs = (await call(srv, op, 'GET', '/v1/subscriptions')).body as { name: string }[];
    assert.ok(!subs.some((s) => s.name !== s.name.toLowerCase()));
  });

  test('a VNet address space smaller than the smallest subnet (/29) is refused', async () => {
    for (const cidr of ['10.9.0.0/31', '10.9.0.1/32', '10.9.0.0/30']) {
      const res = await call(srv, tenant, 'POST', '/v1/subscriptions/tenant-a/vnets', {
        name: 'tiny',
        addressSpace: [cidr],
      });
      assert.equal(res.status, 422, cidr);
      assert.match((res.body as { detail: string }).detail, /smaller than the smallest subnet, a \/29/);
    }
    const apply = await call(srv, tenant, 'POST', '/v1/apply', {
      subscriptions: [
        { name: 'tenant-a', virtualNetworks: [{ name: 'tiny', addressSpace: ['10.9.0.0/32'] }] },
      ],
    });
    assert.equal(apply.status, 422);
    const ok = await call(srv, tenant, 'POST', '/v1/subscriptions/tenant-a/vnets', {
      name: 'small',
      addressSpace: ['10.9.0.0/29'],
    });
    assert.equal(ok.status, 201);
  });

  test('apply refuses to move a host to another rack, and changes nothing', async () => {
    const op = srv.operatorToken;
    const hosts = (await call(srv, op, 'GET', '/v1/hosts')).body as { name: string; rack: string }[];
    const h = hosts[0]!;
    const other = hosts.find((x) => x.rack !== h.rack)?.rack ?? 'rack-elsewhere';
    const res = await call(srv, op, 'POST', '/v1/apply', {
      fabric: { racks: [{ name: other, hosts: [h.name] }] },
    });
    assert.equal(res.status, 409);
    assert.match((res.body as { detail: string }).detail, new RegExp(`host ${h.name} is in rack ${h.rack}`));
    assert.deepEqual((await call(srv, op, 'GET', '/v1/hosts')).body, hosts);
  });

  test('forgetting an agent that never reported is 404', async () => {
    const res = await call(srv, srv.operatorToken, 'DELETE', '/v1/agents/never-was');
    assert.equal(res.status, 404);
  });
});
