/**
 * The wiring of several replicas, end to end with the real binary: `vipdip serve --store
 * postgres://…` and `VIPDIP_STORE`, two replicas of one cloud seeing each other's changes, `vipdip
 * fsck --store postgres://…` (clean, then a corruption found), and clear one-line failures for a
 * store that cannot be reached.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { call, startServer, vipdip, type TestServer } from '../support/server.ts';
import { usePostgres, type PgCluster } from '../support/postgres.ts';

const postgres = usePostgres();
let cluster: PgCluster;
let url: string;
const servers: TestServer[] = [];

before(async () => {
  cluster = await postgres();
  url = await cluster.createDatabase('wiring');
});
after(async () => {
  for (const s of servers) await s.stop();
});

const TOPOLOGY = `
subscriptions:
  - name: contoso
    virtualNetworks:
      - name: net
        addressSpace: [127.16.0.0/16]
        subnets: [{ name: front, cidr: 127.16.1.0/28 }]
    cloudServices:
      - name: shop
        vnet: net
        vms:
          - { name: web1, subnet: front }
          - { name: web2, subnet: front }
`;

test('two vipdip serve replicas, one named by --store and one by VIPDIP_STORE, are one cloud', async () => {
  const a = await startServer({ command: 'serve', args: ['--store', url] });
  servers.push(a);
  const b = await startServer({ command: 'serve', env: { VIPDIP_STORE: url } });
  servers.push(b);
  assert.match(a.output(), /state postgres:\/\/postgres@127\.0\.0\.1:\d+\/wiring/);
  assert.match(a.output(), /no data plane/);

  const applied = await call(a, a.operatorToken, 'POST', '/v1/apply', TOPOLOGY, {
    'content-type': 'application/yaml',
  });
  assert.equal(applied.status, 200, applied.text);
  // What A applied, B serves (each replica's operator token is valid on both).
  const vmsOnB = await call(b, a.operatorToken, 'GET', '/v1/vms');
  assert.equal(vmsOnB.status, 200, vmsOnB.text);
  const list = vmsOnB.body as { name: string; dip: string | null }[];
  assert.deepEqual(list.map((v) => v.name).sort(), ['web1', 'web2']);
  assert.ok(list.every((v) => v.dip !== null));

  // An operation on B is seen by A, and A's event log has it.
  const dealloc = await call(b, b.operatorToken, 'POST', '/v1/services/shop/vms/web1/deallocate');
  assert.equal(dealloc.status, 200, dealloc.text);
  const onA = await call(a, a.operatorToken, 'GET', '/v1/services/shop/vms/web1');
  assert.equal((onA.body as { state: string }).state, 'deallocated');
  const events = (await call(a, a.operatorToken, 'GET', '/v1/events?since=0&limit=1000')).body as {
    events: { seq: number; type: string; resource: string }[];
  };
  assert.ok(events.events.some((e) => e.type === 'vm.deallocated' && e.resource === 'vm/shop/web1'));
  assert.deepEqual(
    events.events.map((e) => e.seq),
    events.events.map((_, i) => i + 1),
  );
});

test('vipdip fsck --store postgres://… is clean, then reports a corruption with exit 1', async () => {
  const clean = await vipdip(['fsck', '--store', url]);
  assert.equal(clean.code, 0, clean.out + clean.err);
  assert.match(clean.out, /clean: invariants I1–I6 hold/);
  const viaEnv = await vipdip(['fsck'], { VIPDIP_STORE: url });
  assert.equal(viaEnv.code, 0, viaEnv.out + viaEnv.err);

  // A running VM loses its DIP behind the control plane's back: I3 (and the bindings disagree).
  await queryIn('wiring', `update vms set dip = null where name = 'web2'`);
  const dirty = await vipdip(['fsck', '--store', url]);
  assert.equal(dirty.code, 1, dirty.out + dirty.err);
  assert.match(dirty.out, /^I3 vm\/shop\/web2: is running but holds no DIP$/m);
});

test('a store that cannot be reached is one line and a non-zero exit, for serve and fsck', async () => {
  const dead = `postgres://postgres@127.0.0.1:${cluster.port + 1}/nothing`;
  for (const args of [
    ['serve', '--store', dead, '--listen', '127.0.0.1:0'],
    ['fsck', '--store', dead],
  ]) {
    const r = await vipdip(args);
    assert.notEqual(r.code, 0, `vipdip ${args.join(' ')} succeeded`);
    const lines = r.err.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, r.err);
    assert.match(lines[0]!, /^vipdip: service unavailable: the PostgreSQL store cannot be reached/);
  }
  const bad = await vipdip(['fsck', '--store', 'mysql://x/y']);
  assert.notEqual(bad.code, 0);
  assert.match(bad.err, /^vipdip: invalid argument: store mysql:\/\/x\/y: expected sqlite:PATH/);
});

async function queryIn(database: string, sqlText: string): Promise<void> {
  const pg = (await import('pg')).default;
  const c = new pg.Client({ connectionString: cluster.urlOf(database) });
  await c.connect();
  try {
    await c.query(sqlText);
  } finally {
    await c.end();
  }
}
