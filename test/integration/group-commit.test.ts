/**
 * SQLite group commit (src/store/sqlite/sqlite-store.ts): writes that arrive while another runs share
 * one commit, each in a savepoint of its own. Concurrency is real here (many operations in flight on
 * one store), and what is checked is what the callers were told against what the store holds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SeededRandom, steppingClock } from '../../src/core/index.ts';
import { Cloud, type EventView } from '../../src/lifecycle/index.ts';
import { RunAgain, SqliteStore } from '../../src/store/index.ts';
import { join } from 'node:path';
import { makeCloud, type TestCloud } from '../support/cloud.ts';

const VMS = 24;

async function cloudWithVms(): Promise<TestCloud> {
  const t = await makeCloud({ seed: 7 });
  await t.cloud.createSubscription('gc');
  await t.cloud.createVnet('gc', {
    name: 'net',
    addressSpace: ['127.60.0.0/16'],
    subnets: [{ name: 's', cidr: '127.60.0.0/20' }],
  });
  await t.cloud.createService('gc', { name: 'svc', vnet: 'net' });
  for (let i = 0; i < VMS; i++) await t.cloud.createVm('svc', { name: `vm${i}`, subnet: 's' });
  return t;
}

const counters = (s: SqliteStore) => ({ commits: s.commits, writes: s.writes });

test('concurrent operations share commits; each is acknowledged with its own result', async () => {
  const t = await cloudWithVms();
  try {
    const before = counters(t.store);
    const views = await Promise.all(
      Array.from({ length: VMS }, (_, i) =>
        t.cloud.vmOperation({ service: 'svc', vm: `vm${i}` }, 'deallocate'),
      ),
    );
    const after = counters(t.store);
    assert.equal(after.writes - before.writes, VMS, 'one write per operation');
    assert.ok(
      after.commits - before.commits < VMS,
      `grouped: ${after.commits - before.commits} commits for ${VMS} writes`,
    );
    views.forEach((v, i) => {
      assert.ok(v !== null);
      assert.equal(v.name, `vm${i}`);
      assert.equal(v.state, 'deallocated');
    });
    // A write alone still commits (and is counted) by itself.
    await t.cloud.vmOperation({ service: 'svc', vm: 'vm0' }, 'start');
    assert.equal(t.store.commits, after.commits + 1);
  } finally {
    await t.close();
  }
});

test('a write that fails inside a group rolls back alone: the others commit, its caller gets its error', async () => {
  const t = await makeCloud();
  try {
    const undone: string[] = [];
    const put = (key: string, fail: boolean) =>
      t.store.write(async (repo) => {
        await repo.setMeta(key, 'v');
        repo.onRollback(() => undone.push(key));
        if (fail) throw new Error(`${key} fails`);
        return key;
      });
    const before = counters(t.store);
    const results = await Promise.allSettled([put('g.a', false), put('g.b', true), put('g.c', false)]);
    assert.deepEqual(
      results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
      ['g.a', 'g.b fails', 'g.c'],
    );
    assert.equal(t.store.commits - before.commits, 1, 'the three ran in one group');
    assert.equal(t.store.writes - before.writes, 2, 'the failed write is not counted as committed');
    assert.deepEqual(undone, ['g.b'], "only the failed write's memory is undone");
    const stored = await t.store.read(async (r) => [
      await r.meta('g.a'),
      await r.meta('g.b'),
      await r.meta('g.c'),
    ]);
    assert.deepEqual(stored, ['v', undefined, 'v']);

    // The first write of a group runs without a savepoint: when it fails, the transaction begins
    // again, and the writes after it still commit in that group.
    const c0 = t.store.commits;
    const firstFails = await Promise.allSettled([put('g.x', true), put('g.y', false), put('g.z', false)]);
    assert.deepEqual(
      firstFails.map((r) => r.status),
      ['rejected', 'fulfilled', 'fulfilled'],
    );
    assert.equal(t.store.commits - c0, 1);
    // A group whose writes all fail wrote nothing, and is not counted as a commit.
    const c1 = counters(t.store);
    const allFail = await Promise.allSettled([put('g.f1', true), put('g.f2', true)]);
    assert.deepEqual(
      allFail.map((r) => r.status),
      ['rejected', 'rejected'],
    );
    assert.deepEqual(counters(t.store), c1);
    assert.deepEqual(
      await t.store.read(async (r) => [await r.meta('g.x'), await r.meta('g.y'), await r.meta('g.z')]),
      [undefined, 'v', 'v'],
    );

    // A write that asks to run again does so inside the group, after its first run rolled back.
    let runs = 0;
    const again = t.store.write(async (repo) => {
      runs++;
      await repo.setMeta('g.again', String(runs));
      if (runs === 1) throw new RunAgain();
      return runs;
    });
    const [n] = await Promise.all([again, put('g.d', false)]);
    assert.equal(n, 2);
    assert.equal(await t.store.read((r) => r.meta('g.again')), '2');

    // A write after close fails, as before group commit, instead of waiting forever.
    await t.store.close();
    await assert.rejects(put('g.late', false));
  } finally {
    await t.close();
  }
});

test('lifecycle failures in a group: the others commit, events stay in order and gap-free, and survive a reopen', async () => {
  const t = await cloudWithVms();
  const seen: EventView[] = [];
  const off = t.cloud.onEvents((evs) => seen.push(...evs));
  let closed = false;
  try {
    const first = await t.store.read((r) => r.lastSeq());
    const acked = new Map<string, string>();
    for (let round = 0; round < 4; round++) {
      const ops = Array.from({ length: VMS }, async (_, i) => {
        const op = round % 2 === 0 ? 'deallocate' : 'start';
        const v = await t.cloud.vmOperation({ service: 'svc', vm: `vm${i}` }, op);
        assert.ok(v !== null);
        acked.set(v.name, v.state);
      });
      // Failures in the middle of the groups: a VM that does not exist, a service that does not.
      const failures = [
        t.cloud.vmOperation({ service: 'svc', vm: 'nope' }, 'start'),
        t.cloud.createVm('no-such-service', { name: 'x', subnet: 's' }),
      ];
      const settled = await Promise.allSettled([
        ...ops.slice(0, VMS / 2),
        ...failures,
        ...ops.slice(VMS / 2),
      ]);
      const rejected = settled.filter((s) => s.status === 'rejected');
      assert.equal(rejected.length, 2, 'exactly the two bad operations fail');
    }
    assert.ok(t.store.commits < t.store.writes);
    off();

    const last = await t.store.read((r) => r.lastSeq());
    assert.ok(last - first >= VMS * 4, 'every acknowledged transition logged');
    // Published after commit, in sequence order, each once, no gap.
    const seqs = seen.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: last - first }, (_, i) => first + 1 + i),
    );
    const logged = await t.cloud.events({ since: first, limit: 10_000 });
    assert.deepEqual(
      logged.map((e) => e.seq),
      seqs,
    );

    // Closed and opened again: everything acknowledged is there.
    t.cloud.close();
    await t.store.close();
    closed = true;
    const store = await SqliteStore.open(join(t.dir, 'state.db'));
    const cloud = await Cloud.open(store, { random: new SeededRandom(1), clock: steppingClock() });
    try {
      const vms = await cloud.listVms();
      for (const [name, state] of acked) assert.equal(vms.find((v) => v.name === name)?.state, state, name);
      assert.equal(await store.read((r) => r.lastSeq()), last);
    } finally {
      cloud.close();
      await store.close();
    }
  } finally {
    off();
    if (!closed) await t.close();
    else await import('node:fs').then((fs) => fs.rmSync(t.dir, { recursive: true, force: true }));
  }
});
