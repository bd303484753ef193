/**
 * The hot path's statements are the SQL Kysely generates for the same `Repo` methods: the shared
 * methods run against a connection that records what it is sent, and each text must match. A query
 * changed in store.ts and not here fails this test instead of the stores drifting apart.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Kysely, PostgresDialect, SqliteDialect } from 'kysely';
import {
  ALLOCATED_VM_COUNT,
  BIND,
  HOSTS,
  LOCK_VM_AND_SERVICE,
  LOCK_VM_SHARE_SERVICE,
  UNBIND,
  UNBIND_OWNED,
  VM_CONTEXT_BY_ID,
  VM_CONTEXT_BY_NAMES,
  numbered,
  updateVmStatement,
} from './hot-statements.ts';
import type { Database } from './schema.ts';
import { Repo } from './store.ts';

const flat = (text: string) => text.replace(/\s+/g, ' ').trim();

/** A row every statement can take its answer from. */
const ROW = { id: 1, n: 0, ilpip_enabled: 0 };

/** Runs `fn` against Kysely for PostgreSQL, and returns each statement it sent, with its parameters. */
async function sentToPostgres(
  fn: (repo: Repo) => Promise<unknown>,
  lock: boolean,
): Promise<{ text: string; params: readonly unknown[] }[]> {
  const sent: { text: string; params: readonly unknown[] }[] = [];
  const client = {
    query: (text: string, params: readonly unknown[]) => {
      sent.push({ text, params });
      return Promise.resolve({ command: 'SELECT' as const, rowCount: 1, rows: [ROW] });
    },
    release: () => {},
  };
  const db = new Kysely<Database>({
    dialect: new PostgresDialect({
      pool: { connect: () => Promise.resolve(client as never), end: () => Promise.resolve() },
    }),
  });
  await fn(new Repo(db, { lock }));
  await db.destroy();
  return sent;
}

/** The same on SQLite (placeholders `?`, as the hot texts are written). */
async function sentToSqlite(fn: (repo: Repo) => Promise<unknown>): Promise<string[]> {
  const sent: string[] = [];
  const statement = {
    reader: true,
    all: () => [ROW],
    run: () => ({ changes: 1, lastInsertRowid: 1 }),
    iterate: () => [ROW][Symbol.iterator](),
  };
  const db = new Kysely<Database>({
    dialect: new SqliteDialect({
      database: {
        prepare: (text: string) => {
          sent.push(text);
          return statement;
        },
        close: () => {},
      },
    }),
  });
  await fn(new Repo(db));
  await db.destroy();
  return sent;
}

const cases: { name: string; fn: (r: Repo) => Promise<unknown>; lock?: boolean; want: string[] }[] = [
  { name: 'the context by names', fn: (r) => r.vmContext('svc', 'vm'), want: [VM_CONTEXT_BY_NAMES] },
  {
    name: 'the VM and its service locked, then its context',
    fn: (r) => r.vmContext('svc', 'vm'),
    lock: true,
    want: [LOCK_VM_AND_SERVICE, VM_CONTEXT_BY_ID],
  },
  {
    name: 'the VM locked and its service shared, then its context',
    fn: (r) => r.vmContext('svc', 'vm', { service: 'share' }),
    lock: true,
    want: [LOCK_VM_SHARE_SERVICE, VM_CONTEXT_BY_ID],
  },
  { name: 'the allocated VMs of a service', fn: (r) => r.allocatedVmCount(3), want: [ALLOCATED_VM_COUNT] },
  { name: 'the hosts', fn: (r) => r.hosts(), want: [HOSTS] },
  {
    name: 'a bind',
    fn: (r) => r.bind({ scope: 'subnet:1', address: 5 as never, owner: 'vm:1', kind: 'dip' }),
    want: [BIND],
  },
  { name: 'an unbind', fn: (r) => r.unbind('subnet:1', 5 as never), want: [UNBIND] },
  {
    name: 'an unbind by owner',
    fn: (r) => r.unbindOwned('subnet:1', 5 as never, 'vm:1'),
    want: [UNBIND_OWNED],
  },
  {
    name: 'an update of a VM',
    fn: (r) => r.updateVm(7, { dip: 5 as never, host_id: 2, state: 'running' }),
    want: [updateVmStatement(7, { dip: 5 as never, host_id: 2, state: 'running' })!.text],
  },
];

for (const c of cases) {
  test(`the hot text of ${c.name} is what Kysely sends (PostgreSQL and SQLite)`, async () => {
    const pg = await sentToPostgres(c.fn, c.lock === true);
    // Kysely binds the state's literal where the hot text writes it: the same statement.
    const normalize = (t: string) => flat(t).replace(`"state" != $2`, `"state" != 'deallocated'`);
    assert.deepEqual(
      pg.map((s) => normalize(s.text)),
      c.want.map((t) => flat(numbered(t))),
    );
    if (c.lock !== true) {
      const lite = await sentToSqlite(c.fn);
      assert.deepEqual(
        lite.map((t) => flat(t).replace(`"state" != ?`, `"state" != 'deallocated'`)),
        c.want.map(flat),
      );
    }
  });
}

test('an update names its columns in the patch order, flags as 0/1, and nothing for an empty patch', () => {
  assert.deepEqual(updateVmStatement(7, { state: 'running', ilpip_enabled: true, dip: undefined }), {
    text: `update "vms" set "state" = ?, "ilpip_enabled" = ? where "id" = ?`,
    params: ['running', 1, 7],
  });
  assert.equal(updateVmStatement(7, { dip: undefined }), undefined);
  assert.throws(() => updateVmStatement(7, { 'x" = 1; --': 1 } as never), /not a column of vms/);
});

test('numbered gives each ? its number, in order', () => {
  assert.equal(numbered('select ? where a = ? and b = ?'), 'select $1 where a = $2 and b = $3');
});
