/**
 * Migrations 007 to 010 on SQLite: the events table rebuilt without AUTOINCREMENT keeps every
 * event (its sequence number, its columns), its two indexes, and hands out the next number after
 * the last; the address bindings rebuilt WITHOUT ROWID keep every binding and both constraints; the
 * VMs, without their index by host, keep every row and both constraints; made again without their
 * DIP index, they keep rows, ids and constraints, and a DIP must be its VM's binding.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import { migrations } from '../../src/store/migrations/index.ts';
import { SqliteStore } from '../../src/store/index.ts';

test('007 and 008 rebuild the events and the bindings and lose nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-m007-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'state.db');
  // A state at 006, as the releases before this one left it, with events in it.
  const old = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
  const to006 = await new Migrator({ db: old, provider: migrations('sqlite') }).migrateTo('006-images');
  assert.equal(to006.error, undefined);
  const raw = new BetterSqlite3(path);
  assert.match(
    (raw.prepare(`select sql from sqlite_master where name = 'events'`).get() as { sql: string }).sql,
    /autoincrement/i,
    'the state before is the AUTOINCREMENT one',
  );
  const insert = raw.prepare(
    `insert into events (time, type, subscription, resource, reason, old, new, changes) values (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (let i = 1; i <= 5; i++)
    insert.run(
      `2026-12-06T00:00:0${i}.000Z`,
      'vm.started',
      i % 2 ? 'a' : null,
      `vm/s/v${i}`,
      'operator',
      null,
      `{"i":${i}}`,
      i === 1 ? '[]' : null,
    );
  const before = raw.prepare('select * from events order by seq').all();
  const bind = raw.prepare('insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, ?)');
  bind.run('subnet:1', 2130706436, 'vm:1', 'dip');
  bind.run('pool:1', 2130706437, 'svc:1', 'vip');
  bind.run('subnet:1', 2130706438, 'vm:2', 'static');
  const bindingsBefore = raw.prepare('select * from address_bindings order by scope, address').all();
  raw.close();
  await old.destroy();

  const store = await SqliteStore.open(path);
  try {
    const db = store.raw;
    assert.deepEqual(db.prepare('select * from events order by seq').all(), before);
    assert.doesNotMatch(
      (db.prepare(`select sql from sqlite_master where name = 'events'`).get() as { sql: string }).sql,
      /autoincrement/i,
    );
    const indexes = (
      db
        .prepare(`select name from sqlite_master where type = 'index' and tbl_name = 'events' order by name`)
        .all() as { name: string }[]
    ).map((r) => r.name);
    assert.deepEqual(indexes, ['events_resource', 'events_subscription']);
    assert.equal(
      (db.prepare(`select count(*) as n from sqlite_sequence where name = 'events'`).get() as { n: number })
        .n,
      0,
    );
    const next = db
      .prepare(
        `insert into events (time, type, resource, reason) values ('2026-12-06T00:00:06.000Z', 'vm.stopped', 'vm/s/v1', 'operator') returning seq`,
      )
      .get() as { seq: number };
    assert.equal(next.seq, 6);

    assert.deepEqual(
      db.prepare('select * from address_bindings order by scope, address').all(),
      bindingsBefore,
    );
    assert.match(
      (db.prepare(`select sql from sqlite_master where name = 'address_bindings'`).get() as { sql: string })
        .sql,
      /without rowid/i,
    );
    const bindNow = db.prepare(
      'insert into address_bindings (scope, address, owner, kind) values (?, ?, ?, ?)',
    );
    // The database still refuses a double bind, and a second address of one kind for one owner.
    assert.throws(() => bindNow.run('subnet:1', 2130706436, 'vm:9', 'dip'), /UNIQUE constraint failed/);
    assert.throws(() => bindNow.run('subnet:1', 2130706439, 'vm:1', 'dip'), /UNIQUE constraint failed/);
    bindNow.run('subnet:1', 2130706439, 'vm:3', 'dip');
  } finally {
    await store.close();
  }
});

/**
 * A state migrated up to `to` in a fresh directory, holding one subscription, VNet, subnet
 * (10.0.0.0/24), host and service, and VMs v1 (running on 10.0.0.4) and v2 (deallocated). Returns
 * its path and an open connection to it; the caller closes both `raw` and `old`.
 */
async function vmsAt(t: TestContext, to: string) {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-migration-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'state.db');
  const old = new Kysely<unknown>({ dialect: new SqliteDialect({ database: new BetterSqlite3(path) }) });
  const migrated = await new Migrator({ db: old, provider: migrations('sqlite') }).migrateTo(to);
  assert.equal(migrated.error, undefined);
  const raw = new BetterSqlite3(path);
  raw.exec(`
    insert into subscriptions (name, created_at) values ('a', '2026-12-06T00:00:00.000Z');
    insert into vnets (subscription_id, name, address_space, dip_policy, move_policy) values (1, 'n', '["10.0.0.0/16"]', 'dynamic', 'keep');
    insert into subnets (vnet_id, name, cidr, base, prefix) values (1, 's', '10.0.0.0/24', 167772160, 24);
    insert into hosts (name, rack) values ('h1', 'r1');
    insert into cloud_services (subscription_id, name, vnet_id) values (1, 'svc', 1);`);
  const vm = raw.prepare(
    `insert into vms (service_id, name, subnet_id, state, dip, host_id, ilpip_enabled, endpoints)
     values (1, ?, 1, ?, ?, ?, 0, '[]')`,
  );
  vm.run('v1', 'running', 167772164, 1);
  vm.run('v2', 'deallocated', null, null);
  return { path, raw, old, vm };
}

test('009 drops the index of VMs by host and keeps the VMs and their constraints', async (t) => {
  const { path, raw, old } = await vmsAt(t, '008-address-bindings-by-key');
  const before = raw.prepare('select * from vms order by id').all();
  const indexesOf = (db: BetterSqlite3.Database) =>
    (
      db.prepare(`select name from sqlite_master where type = 'index' and tbl_name = 'vms'`).all() as {
        name: string;
      }[]
    ).map((r) => r.name);
  assert.ok(indexesOf(raw).includes('vms_host'), 'the state before has the index');
  raw.close();
  await old.destroy();

  const store = await SqliteStore.open(path);
  try {
    const db = store.raw;
    assert.deepEqual(db.prepare('select * from vms order by id').all(), before);
    assert.ok(!indexesOf(db).includes('vms_host'), indexesOf(db).join(', '));
    // The constraints stay: one name per service, one VM per DIP of a subnet.
    assert.throws(
      () => db.prepare(`update vms set name = 'v1' where id = 2`).run(),
      /UNIQUE constraint failed: vms.service_id, vms.name/,
    );
    // (since 010 through the binding the DIP must have: v1's is bound to no one here)
    assert.throws(() => db.prepare(`update vms set dip = 167772164 where id = 2`).run(), /vms_dip_bound/);
  } finally {
    await store.close();
  }
});

test('010 makes the VMs again without their DIP index: same rows, same ids to come, the DIP checked by its binding', async (t) => {
  const { path, raw, old, vm } = await vmsAt(t, '009-vms-without-host-index');
  vm.run('v3', 'deallocated', null, null);
  raw.exec(`delete from vms where name = 'v3'`);
  raw
    .prepare(
      `insert into address_bindings (scope, address, owner, kind) values ('subnet:1', 167772164, 'vm:1', 'dip')`,
    )
    .run();
  const before = raw.prepare('select * from vms order by id').all();
  raw.close();
  await old.destroy();

  const store = await SqliteStore.open(path);
  try {
    const db = store.raw;
    assert.deepEqual(db.prepare('select * from vms order by id').all(), before);
    const indexes = db.prepare(`select name, sql from sqlite_master where tbl_name = 'vms'`).all() as {
      name: string;
      sql: string | null;
    }[];
    assert.ok(
      !indexes.some((i) => /vms_dip\b|\bdip\b.*unique|unique.*\bdip\)/.test(i.sql ?? '')),
      JSON.stringify(indexes),
    );
    // A deleted VM's id is not given again.
    db.prepare(
      `insert into vms (service_id, name, subnet_id, state, ilpip_enabled, endpoints) values (1, 'v4', 1, 'deallocated', 0, '[]')`,
    ).run();
    assert.equal((db.prepare(`select id from vms where name = 'v4'`).get() as { id: number }).id, 4);
    // One name per service still; a DIP only as its VM's binding says.
    assert.throws(
      () => db.prepare(`update vms set name = 'v1' where id = 2`).run(),
      /UNIQUE constraint failed: vms.service_id, vms.name/,
    );
    assert.throws(() => db.prepare(`update vms set dip = 167772164 where id = 2`).run(), /vms_dip_bound/);
    db.prepare(
      `insert into address_bindings (scope, address, owner, kind) values ('subnet:1', 167772165, 'vm:2', 'dip')`,
    ).run();
    db.prepare(`update vms set dip = 167772165, state = 'running' where id = 2`).run();
    // The foreign keys are kept: no VM of a service that does not exist.
    assert.throws(() => db.prepare(`update vms set service_id = 99 where id = 2`).run(), /FOREIGN KEY/);
  } finally {
    await store.close();
  }
});
