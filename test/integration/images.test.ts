/**
 * Workload images over the real API and CLI (SPEC §4, §8): the operator registers, changes and
 * deletes images; everyone lists them (a tenant sees names only); a VM names an image, or, from
 * the operator only, an inline `command: …`; an image in use cannot be deleted; a topology's
 * `images:` section is the operator's. The control plane alone (`--driver none`): nothing runs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, startServer, vipdip, type TestServer } from '../support/server.ts';

let srv: TestServer;
let tenant: string;
const op = () => srv.operatorToken;
const api = (method: string, path: string, body?: unknown, token: string = op()) =>
  call(
    srv,
    token,
    method,
    path,
    body,
    typeof body === 'string' ? { 'content-type': 'application/yaml' } : {},
  );
const cli = (args: string[], token: string = op()) =>
  vipdip([...args], { VIPDIP_URL: srv.url, VIPDIP_TOKEN: token });

const TOPOLOGY = `
subscriptions:
  - name: contoso
    virtualNetworks:
      - name: net
        addressSpace: [127.41.0.0/16]
        subnets: [{ name: front, cidr: 127.41.1.0/24 }]
    cloudServices:
      - name: shop
        vnet: net
        vms:
          - { name: web1, subnet: front, workload: whoami }
`;

before(async () => {
  srv = await startServer();
  assert.equal((await api('POST', '/v1/apply', TOPOLOGY, op())).status, 200);
  const t = await api('POST', '/v1/subscriptions/contoso/tokens', { name: 'ci' });
  assert.equal(t.status, 201, t.text);
  tenant = (t.body as { token: string }).token;
});
after(async () => {
  await srv?.stop();
});

describe('images', () => {
  test('the operator registers an image; the operator sees its command, a tenant only its name', async () => {
    const made = await api('POST', '/v1/images', { name: 'web', command: 'exec httpd', env: { MODE: 'x' } });
    assert.equal(made.status, 201, made.text);
    const all = (await api('GET', '/v1/images')).body as { name: string; command?: string | null }[];
    assert.deepEqual(
      all.map((m) => [m.name, m.command]),
      [
        ['whoami', null],
        ['echo', null],
        ['web', 'exec httpd'],
      ],
    );
    const seen = await api('GET', '/v1/images', undefined, tenant);
    assert.equal(seen.status, 200);
    assert.deepEqual(seen.body, [
      { name: 'whoami', builtin: true, createdAt: null },
      { name: 'echo', builtin: true, createdAt: null },
      { name: 'web', builtin: false, createdAt: (made.body as { createdAt: string }).createdAt },
    ]);
    assert.doesNotMatch(seen.text, /httpd|MODE/);
  });

  test('a tenant cannot register, change or delete an image', async () => {
    for (const [m, p, b] of [
      ['POST', '/v1/images', { name: 'evil', command: 'id' }],
      ['PUT', '/v1/images/web', { command: 'id' }],
      ['DELETE', '/v1/images/web', undefined],
    ] as const) {
      const r = await api(m, p, b, tenant);
      assert.equal(r.status, 403, `${m} ${p}: ${r.text}`);
    }
    const web = (await api('GET', '/v1/images/web')).body as { command: string };
    assert.equal(web.command, 'exec httpd');
  });

  test('a built-in cannot be replaced, and a name is an image name', async () => {
    assert.equal((await api('POST', '/v1/images', { name: 'whoami', command: 'id' })).status, 409);
    assert.equal((await api('POST', '/v1/images', { name: 'Sh -c', command: 'id' })).status, 400);
    assert.equal((await api('POST', '/v1/images', { name: 'web', command: 'id' })).status, 409);
  });

  test('a tenant names an image for its VM; an unknown image or a command line is refused', async () => {
    const vm = '/v1/services/shop/vms/web1';
    const ok = await api('PATCH', vm, { workload: 'web' }, tenant);
    assert.equal(ok.status, 200, ok.text);
    assert.equal((ok.body as { workload: string }).workload, 'web');
    const unknown = await api('PATCH', vm, { workload: 'nope' }, tenant);
    assert.equal(unknown.status, 422, unknown.text);
    assert.match(unknown.text, /image nope does not exist/);
    const line = await api('PATCH', vm, { workload: 'sh -c id' }, tenant);
    assert.equal(line.status, 422, line.text);
    assert.match(line.text, /not an image name/);
    const cmd = await api('PATCH', vm, { workload: 'command: id' }, tenant);
    assert.equal(cmd.status, 403, cmd.text);
    assert.equal(((await api('GET', vm)).body as { workload: string }).workload, 'web');
  });

  test('the operator may give a VM an inline command', async () => {
    const r = await api('POST', '/v1/services/shop/vms', {
      name: 'job1',
      subnet: 'front',
      workload: 'command: echo hi',
      start: false,
    });
    assert.equal(r.status, 201, r.text);
    assert.equal((r.body as { workload: string }).workload, 'command: echo hi');
  });

  test('an image in use cannot be deleted (409); a free one can', async () => {
    const r = await api('DELETE', '/v1/images/web');
    assert.equal(r.status, 409, r.text);
    assert.match(r.text, /shop\/web1/);
    assert.equal(
      (await api('PATCH', '/v1/services/shop/vms/web1', { workload: 'whoami' }, tenant)).status,
      200,
    );
    assert.equal((await api('DELETE', '/v1/images/web')).status, 204);
    assert.equal((await api('GET', '/v1/images/web')).status, 404);
  });

  test('changing an image is one event; deleting one is another', async () => {
    assert.equal((await api('POST', '/v1/images', { name: 'batch', command: 'a' })).status, 201);
    const put = await api('PUT', '/v1/images/batch', { command: 'b', env: { K: 'v' } });
    assert.equal(put.status, 200, put.text);
    assert.equal((await api('PUT', '/v1/images/batch', { command: 'b', env: { K: 'v' } })).status, 200);
    const ev = (await api('GET', '/v1/events?resource=image/batch')).body as { events: { type: string }[] };
    const types = ev.events.map((e) => e.type);
    assert.deepEqual(types.filter((t) => t.startsWith('image.')).sort(), ['image.created', 'image.updated']);
    // A tenant does not see the operator's image events (their commands among them).
    const theirs = (await api('GET', '/v1/events?resource=image/batch', undefined, tenant)).body as {
      events: unknown[];
    };
    assert.deepEqual(theirs.events, []);
    assert.equal((await api('DELETE', '/v1/images/batch')).status, 204);
  });

  test('apply: images: is the operator’s; a tenant’s document with one is 403 and changes nothing', async () => {
    const doc = `images:\n  - { name: cron, command: "run-parts /etc/cron", env: { A: "1" } }\n`;
    const denied = await api('POST', '/v1/apply', doc, tenant);
    assert.equal(denied.status, 403, denied.text);
    assert.equal((await api('GET', '/v1/images/cron')).status, 404);
    const done = await api('POST', '/v1/apply', doc);
    assert.equal(done.status, 200, done.text);
    assert.deepEqual((done.body as { changes: unknown[] }).changes, [
      { action: 'create', kind: 'image', name: 'cron' },
    ]);
    const again = await api('POST', '/v1/apply', doc);
    assert.deepEqual((again.body as { changes: unknown[] }).changes, []);
  });

  test('apply: a tenant’s VM with a command is refused; with an image it is applied', async () => {
    const vmDoc = (workload: string) => TOPOLOGY.replace('workload: whoami', `workload: "${workload}"`);
    const r = await api('POST', '/v1/apply', vmDoc('command: id'), tenant);
    assert.equal(r.status, 422, r.text);
    assert.match(r.text, /only the operator may give a VM a command/);
    const ok = await api('POST', '/v1/apply', vmDoc('cron'), tenant);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(
      ((await api('GET', '/v1/services/shop/vms/web1')).body as { workload: string }).workload,
      'cron',
    );
  });

  test('the CLI adds, lists and deletes images, with one-line errors', async () => {
    const add = await cli(['image', 'add', 'tool', '--command', 'exec tool --serve', '--env', 'A=b=c']);
    assert.equal(add.code, 0, add.err);
    assert.match(add.out, /image tool added/);
    const list = await cli(['image', 'list']);
    assert.equal(list.code, 0, list.err);
    assert.match(list.out, /tool\s+operator\s+exec tool --serve\s+A/);
    assert.match(list.out, /whoami\s+built-in/);
    const json = await cli(['image', 'list', '-o', 'json']);
    const tool = (JSON.parse(json.out) as { name: string; env: Record<string, string> }[]).find(
      (m) => m.name === 'tool',
    );
    assert.deepEqual(tool?.env, { A: 'b=c' });
    const bad = await cli(['image', 'add', 'x', '--command', 'y', '--env', 'novalue']);
    assert.notEqual(bad.code, 0);
    assert.equal(bad.err.trim().split('\n').length, 1, bad.err);
    const denied = await cli(['image', 'add', 'evil', '--command', 'id'], tenant);
    assert.notEqual(denied.code, 0);
    assert.match(denied.err, /operator/);
    assert.doesNotMatch(denied.err, /\n\s+at /);
    const del = await cli(['image', 'delete', 'tool']);
    assert.equal(del.code, 0, del.err);
    const inUse = await cli(['image', 'delete', 'cron']);
    assert.notEqual(inUse.code, 0);
    assert.match(inUse.err, /shop\/web1/);
  });
});
