/**
 * Migrations 007 and 008 on SQLite: the events table rebuilt without AUTOINCREMENT keeps every
 * event (its sequence number, its columns), its two indexes, and hands out the next number after
 * the last; the address bindings rebuilt WITHOUT ROWID keep every binding and both constraints.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
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
