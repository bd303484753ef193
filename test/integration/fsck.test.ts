/**
 * fsck finds what it should: a state built through the lifecycle is clean, and each corruption
 * written straight into the SQLite file breaks one invariant of SPEC.md §2 and is reported under
 * that invariant's id. Corruptions keep everything else consistent (bindings, event log) wherever
 * the invariant allows it, so that the finding cannot come from a side effect.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import type BetterSqlite3 from 'better-sqlite3';
import { formatIpv4, parseIpv4, type Ipv4 } from '../../src/core/index.ts';
import { formatFinding, fsck, type Finding } from '../../src/lifecycle/index.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';
import { buildCleanState } from '../support/states.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = join(ROOT, 'bin/vipdip.js');

type Raw = BetterSqlite3.Database;

/**
 * A state with a bit of everything: running, stopped and deallocated VMs, a static DIP, an ILPIP,
 * a service on a reserved IP, an unassociated reserved IP, a service with no VM, a redeploy and a
 * host maintenance (DIPs that moved).
 */
async function cleanState(dir?: string): Promise<TestCloud> {
  const t = await makeCloud(dir === undefined ? {} : { dir });
  await buildCleanState(t.cloud);
  return t;
}

/** Runs `fn` on a fresh clean state, closed (and removed) afterwards. */
async function withState(fn: (t: TestCloud, raw: Raw) => Promise<void> | void): Promise<void> {
  const t = await cleanState();
  try {
    await fn(t, t.store.raw);
  } finally {
    await t.close();
  }
}

const check = (t: TestCloud): Promise<Finding[]> => t.store.read((r) => fsck(r));
const idsOf = (fs: readonly Finding[]) => [...new Set(fs.map((f) => f.invariant))].sort();

/** The findings name exactly these invariants, and one of them (`inv`) is about `resource`. */
function assertFinds(
  fs: readonly Finding[],
  ids: Finding['invariant'][],
  inv: Finding['invariant'],
  resource: string,
) {
  const lines = fs.map(formatFinding);
  assert.deepEqual(idsOf(fs), ids, lines.join('\n'));
  assert.ok(
    fs.some((f) => f.invariant === inv && f.resource === resource),
    `no ${inv} finding about ${resource} among:\n${lines.join('\n')}`,
  );
}

interface VmRow {
  id: number;
  service_id: number;
  subnet_id: number;
  state: string;
  dip: number | null;
  ilpip: number | null;
  ilpip_pool_id: number | null;
}

function vmRow(raw: Raw, service: string, vm: string): VmRow {
  const row = raw
    .prepare(
      `select vms.* from vms join cloud_services s on s.id = vms.service_id where s.name = ? and vms.name = ?`,
    )
    .get(service, vm) as VmRow | undefined;
  assert.ok(row, `VM ${service}/${vm} exists`);
  return row;
}

interface ServiceRow {
  id: number;
  vip: number | null;
  vip_pool_id: number | null;
}

function serviceRow(raw: Raw, name: string): ServiceRow {
  const row = raw.prepare('select * from cloud_services where name = ?').get(name) as ServiceRow | undefined;
  assert.ok(row, `service ${name} exists`);
  return row;
}

/** The seq of the last event of a type (optionally on one resource). */
function lastEvent(raw: Raw, type: string, resource?: string): { seq: number; resource: string } {
  const row = (
    resource === undefined
      ? raw.prepare('select seq, resource from events where type = ? order by seq desc limit 1').get(type)
      : raw
          .prepare(
            'select seq, resource from events where type = ? and resource = ? order by seq desc limit 1',
          )
          .get(type, resource)
  ) as { seq: number; resource: string } | undefined;
  assert.ok(row, `an event ${type} ${resource ?? ''} exists`);
  return row;
}

/** Appends an event as the lifecycle would: next seq, the last event's time. */
function appendEvent(raw: Raw, e: { type: string; resource: string; old: unknown; new: unknown }): void {
  const last = raw.prepare('select time from events order by seq desc limit 1').get() as { time: string };
  raw
    .prepare(
      `insert into events (time, type, subscription, resource, reason, old, new) values (?, ?, 'contoso', ?, 'corruption', ?, ?)`,
    )
    .run(last.time, e.type, e.resource, JSON.stringify(e.old), JSON.stringify(e.new));
}

/**
 * Moves a VM's DIP behind the lifecycle's back, keeping its binding and its last vm.dip event in
 * step, so that nothing but the address itself is wrong.
 */
function setVmDip(raw: Raw, service: string, vm: string, dip: string): void {
  const row = vmRow(raw, service, vm);
  const to = parseIpv4(dip);
  // The binding first: the database refuses a VM's DIP that is not bound to it (migration 010).
  raw
    .prepare('update address_bindings set address = ? where scope = ? and address = ?')
    .run(to, `subnet:${row.subnet_id}`, row.dip);
  raw.prepare('update vms set dip = ? where id = ?').run(to, row.id);
  const ev = lastEvent(raw, 'vm.dip', `vm/${service}/${vm}`);
  raw.prepare('update events set new = ? where seq = ?').run(JSON.stringify({ dip }), ev.seq);
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    c.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    c.once('error', rej);
    c.once('close', (code) => res({ code, stdout, stderr }));
  });
}

test('a state built through the lifecycle is clean', async () => {
  await withState(async (t) => {
    assert.deepEqual((await check(t)).map(formatFinding), []);
  });
});

test('the database itself refuses two VMs of one subnet holding the same DIP', async () => {
  await withState((_t, raw) => {
    const web1 = vmRow(raw, 'shop', 'web1');
    const web2 = vmRow(raw, 'shop', 'web2');
    assert.equal(web1.subnet_id, web2.subnet_id);
    assert.throws(() => raw.prepare('update vms set dip = ? where id = ?').run(web1.dip, web2.id), {
      code: 'SQLITE_CONSTRAINT_TRIGGER',
      message: /vms_dip_bound/,
    });
    // Nor one it never drew: a free address of its subnet, bound to no one.
    assert.throws(
      () => raw.prepare('update vms set dip = ? where id = ?').run(parseIpv4('127.16.1.222'), web2.id),
      {
        code: 'SQLITE_CONSTRAINT_TRIGGER',
      },
    );
    // Nor a VM row made with a DIP (no binding can name a VM before it exists).
    assert.throws(
      () =>
        raw
          .prepare(
            `insert into vms (service_id, name, subnet_id, state, dip, ilpip_enabled, endpoints) values (?, 'x', ?, 'running', ?, 0, '[]')`,
          )
          .run(web1.service_id, web1.subnet_id, parseIpv4('127.16.1.223')),
      { code: 'SQLITE_CONSTRAINT_TRIGGER' },
    );
  });
});

test('I1: a public address held by two resources through their columns is reported', async () => {
  await withState(async (t, raw) => {
    // app1's ILPIP column takes the VIP of its service; the log says so too, only the bindings differ.
    const shop = serviceRow(raw, 'shop');
    const app1 = vmRow(raw, 'shop', 'app1');
    assert.ok(shop.vip !== null && app1.ilpip !== null);
    raw
      .prepare('update vms set ilpip = ?, ilpip_pool_id = ? where id = ?')
      .run(shop.vip, shop.vip_pool_id, app1.id);
    const ev = lastEvent(raw, 'vm.ilpip', 'vm/shop/app1');
    raw
      .prepare('update events set new = ? where seq = ?')
      .run(JSON.stringify({ ilpip: formatIpv4(shop.vip as Ipv4) }), ev.seq);
    const fs = await check(t);
    assertFinds(fs, ['I1'], 'I1', 'vm/shop/app1');
    assert.ok(
      fs.some(
        (f) => f.invariant === 'I1' && /service\/shop holds too|vm\/shop\/app1 holds too/.test(f.message),
      ),
    );
  });
});

test('I1: a VM holding a DIP without a binding is reported', async () => {
  await withState(async (t, raw) => {
    const web2 = vmRow(raw, 'shop', 'web2');
    const gone = raw
      .prepare('delete from address_bindings where scope = ? and address = ?')
      .run(`subnet:${web2.subnet_id}`, web2.dip);
    assert.equal(gone.changes, 1);
    assertFinds(await check(t), ['I1'], 'I1', 'vm/shop/web2');
  });
});

// A DIP outside its subnet or on a reserved address cannot have a valid binding either: the binding
// that follows it is not a usable address of the subnet, which fsck reports under I1 as well.
test('I2: a DIP outside its subnet is reported', async () => {
  await withState(async (t, raw) => {
    setVmDip(raw, 'shop', 'web2', '127.16.3.7');
    assertFinds(await check(t), ['I1', 'I2'], 'I2', 'vm/shop/web2');
  });
});

test("I2: a DIP equal to the subnet's reserved .1 address is reported", async () => {
  await withState(async (t, raw) => {
    setVmDip(raw, 'shop', 'web2', '127.16.1.1');
    const fs = await check(t);
    assertFinds(fs, ['I1', 'I2'], 'I2', 'vm/shop/web2');
    assert.ok(fs.some((f) => f.invariant === 'I2' && /reserved address/.test(f.message)));
  });
});

test('I3: a deallocated VM that still holds a DIP is reported', async () => {
  await withState(async (t, raw) => {
    const web1 = vmRow(raw, 'shop', 'web1');
    assert.ok(web1.dip !== null);
    raw.prepare("update vms set state = 'deallocated' where id = ?").run(web1.id);
    const fs = await check(t);
    assertFinds(fs, ['I3'], 'I3', 'vm/shop/web1');
    assert.ok(fs.some((f) => /deallocated but holds DIP/.test(f.message)));
  });
});

test('I3: a running VM with no DIP is reported', async () => {
  await withState(async (t, raw) => {
    const web3 = vmRow(raw, 'shop', 'web3');
    assert.equal(web3.state, 'deallocated');
    raw.prepare("update vms set state = 'running' where id = ?").run(web3.id);
    const fs = await check(t);
    assertFinds(fs, ['I3'], 'I3', 'vm/shop/web3');
    assert.ok(fs.some((f) => /running but holds no DIP/.test(f.message)));
  });
});

test('I4: a service with allocated VMs but no VIP is reported', async () => {
  await withState(async (t, raw) => {
    const shop = serviceRow(raw, 'shop');
    raw.prepare('update cloud_services set vip = null, vip_pool_id = null where id = ?').run(shop.id);
    raw.prepare("delete from address_bindings where owner = ? and kind = 'vip'").run(`service:${shop.id}`);
    const ev = lastEvent(raw, 'service.vip', 'service/shop');
    raw.prepare('update events set new = ? where seq = ?').run(JSON.stringify({ vip: null }), ev.seq);
    const fs = await check(t);
    assertFinds(fs, ['I4'], 'I4', 'service/shop');
    assert.ok(fs.some((f) => /allocated VMs but no VIP/.test(f.message)));
  });
});

test('I4: a service with no allocated VM and no reserved IP that holds a VIP is reported', async () => {
  await withState(async (t, raw) => {
    const empty = serviceRow(raw, 'empty');
    const pool = raw.prepare('select id from public_pools order by id limit 1').get() as { id: number };
    const vip = parseIpv4('127.100.200.200');
    assert.equal(
      raw
        .prepare('select 1 from address_bindings where scope = ? and address = ?')
        .get(`pool:${pool.id}`, vip),
      undefined,
    );
    raw
      .prepare('update cloud_services set vip = ?, vip_pool_id = ? where id = ?')
      .run(vip, pool.id, empty.id);
    raw
      .prepare("insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, 'vip')")
      .run(`pool:${pool.id}`, vip, `service:${empty.id}`);
    appendEvent(raw, {
      type: 'service.vip',
      resource: 'service/empty',
      old: { vip: null },
      new: { vip: '127.100.200.200' },
    });
    const fs = await check(t);
    assertFinds(fs, ['I4'], 'I4', 'service/empty');
    assert.ok(fs.some((f) => /no allocated VM and no reserved IP/.test(f.message)));
  });
});

test('I5: a leaked binding whose owner holds nothing is reported', async () => {
  await withState(async (t, raw) => {
    // The DIP of deallocated web3 was "never given back".
    const web3 = vmRow(raw, 'shop', 'web3');
    assert.equal(web3.dip, null);
    const scope = `subnet:${web3.subnet_id}`;
    raw
      .prepare("insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, 'dip')")
      .run(scope, parseIpv4('127.16.1.200'), `vm:${web3.id}`);
    const fs = await check(t);
    assertFinds(fs, ['I5'], 'I5', `${scope} 127.16.1.200`);
    assert.ok(fs.some((f) => /leaked/.test(f.message)));
  });
});

test('I6: an event deleted from the middle of the log is reported as a gap', async () => {
  await withState(async (t, raw) => {
    const { m } = raw.prepare('select max(seq) as m from events').get() as { m: number };
    const middle = Math.floor(m / 2);
    assert.equal(raw.prepare('delete from events where seq = ?').run(middle).changes, 1);
    const fs = await check(t);
    assertFinds(fs, ['I6'], 'I6', `event ${middle + 1}`);
    assert.ok(fs.some((f) => /gap/.test(f.message)));
  });
});

test('I6: a last vm.dip event whose new address differs from the state is reported', async () => {
  await withState(async (t, raw) => {
    const ev = lastEvent(raw, 'vm.dip');
    raw
      .prepare('update events set new = ? where seq = ?')
      .run(JSON.stringify({ dip: '127.16.1.250' }), ev.seq);
    const fs = await check(t);
    assertFinds(fs, ['I6'], 'I6', ev.resource);
    assert.ok(fs.some((f) => /event log says 127\.16\.1\.250/.test(f.message)));
  });
});

test('vipdip fsck exits 0 on a clean state and 1 with one line per finding on a corrupted one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-fsck-'));
  try {
    const t = await cleanState(dir);
    await t.close();
    const clean = await runCli(['fsck', '--state', dir]);
    assert.equal(clean.code, 0, clean.stderr);
    assert.match(clean.stdout, /^clean/);

    const t2 = await makeCloud({ dir });
    const raw = t2.store.raw;
    const web1 = vmRow(raw, 'shop', 'web1');
    const web3 = vmRow(raw, 'shop', 'web3');
    raw.prepare("update vms set state = 'deallocated' where id = ?").run(web1.id);
    raw
      .prepare("insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, 'dip')")
      .run(`subnet:${web3.subnet_id}`, parseIpv4('127.16.1.200'), `vm:${web3.id}`);
    const expected = (await check(t2)).map(formatFinding);
    await t2.close();

    const broken = await runCli(['fsck', '--state', dir]);
    assert.equal(broken.code, 1, broken.stderr);
    const lines = broken.stdout.split('\n').filter((l) => l !== '');
    assert.ok(lines.length >= 2);
    for (const l of lines) assert.match(l, /^I[1-6] /);
    assert.deepEqual(lines, expected);
    assert.ok(lines.some((l) => l.startsWith('I3 ')) && lines.some((l) => l.startsWith('I5 ')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
