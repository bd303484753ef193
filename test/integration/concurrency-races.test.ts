/**
 * The three races issue 14 found under load, each run on SQLite and on a real PostgreSQL (there with
 * three replicas on one database, as `vipdip serve` runs them):
 *
 * * a /29 whose VMs `a` and `b` are redeployed in a loop while `c` is started and deallocated: a
 *   start of `c` is never refused while the subnet has a free address (a redeploy holds a second
 *   address only inside its transaction);
 * * restart and stop answer with the VM's host, built from rows read under the operation's locks,
 *   and that answer is the VM as the next read sees it (its ETag is right);
 * * associations and disassociations of two reserved IPs with one service, side by side, never
 *   deadlock (one lock order: the service, then the reserved IP).
 *
 * Every loop is bounded in count; nothing leaves loopback.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { isVipdipError } from '../../src/core/index.ts';
import { formatFinding, fsck, type Cloud, type VmView } from '../../src/lifecycle/index.ts';
import type { Store } from '../../src/store/index.ts';
import { DIALECTS, makeDialectCloud, withShop, type DialectCloud } from '../support/cloud.ts';
import { usePostgres } from '../support/postgres.ts';

const postgres = usePostgres();
/** Replicas on one database where the dialect has several writers; SQLite has one. */
const REPLICAS = { sqlite: 1, postgres: 3 } as const;
const ROUNDS = 30;

interface Replicas {
  t: DialectCloud;
  clouds: Cloud[];
  stores: Store[];
}

async function replicas(dialect: (typeof DIALECTS)[number]): Promise<Replicas> {
  const t = await makeDialectCloud(dialect, dialect === 'postgres' ? { cluster: await postgres() } : {});
  await withShop(t.cloud);
  const clouds = [t.cloud];
  const stores = [t.store];
  for (let i = 1; i < REPLICAS[dialect]; i++) {
    const r = await t.open({ seed: 100 + i });
    clouds.push(r.cloud);
    stores.push(r.store);
  }
  return { t, clouds, stores };
}

const clean = async (r: Replicas) =>
  assert.deepEqual((await r.t.store.read((x) => fsck(x))).map(formatFinding), []);

for (const dialect of DIALECTS) {
  describe(`races under concurrency (${dialect})`, () => {
    let r: Replicas | undefined;
    afterEach(async () => {
      await r?.t.close();
      r = undefined;
    });

    test('a /29 with concurrent redeploys and starts never refuses a start while an address is free', async () => {
      r = await replicas(dialect);
      const { clouds } = r;
      const cloud = clouds[0]!;
      await cloud.addSubnet('contoso', 'shop-net', { name: 'tiny', cidr: '127.16.9.0/29' });
      for (const n of ['a', 'b']) await cloud.createVm('shop', { name: n, subnet: 'tiny' });
      await cloud.createVm('shop', { name: 'c', subnet: 'tiny' }, { start: false });
      const on = (i: number) => clouds[i % clouds.length]!;
      const refused: string[] = [];
      const redeploys = (vm: string, k: number) => async () => {
        for (let i = 0; i < ROUNDS; i++) await on(k + i).vmOperation({ service: 'shop', vm }, 'redeploy');
      };
      const cycles = async () => {
        for (let i = 0; i < ROUNDS; i++) {
          try {
            await on(i + 2).vmOperation({ service: 'shop', vm: 'c' }, 'start');
          } catch (e) {
            // a and b hold two of the three addresses at every commit: a refusal is the defect.
            if (isVipdipError(e, 'POOL_EXHAUSTED')) {
              refused.push(e.message);
              continue;
            }
            throw e;
          }
          await on(i).vmOperation({ service: 'shop', vm: 'c' }, 'deallocate');
        }
      };
      await Promise.all([redeploys('a', 0)(), redeploys('b', 1)(), cycles()]);
      assert.deepEqual(refused, [], `${refused.length} of ${ROUNDS} starts of c refused`);
      await clean(r);
    });

    test('restart and stop answer with the host of the running VM, as the next read sees it', async () => {
      r = await replicas(dialect);
      const { clouds } = r;
      const cloud = clouds[0]!;
      // Another running VM keeps the service's VIP, so that every operation on `v` shares the service.
      await cloud.createVm('shop', { name: 'keep', subnet: 'front' });
      await cloud.createVm('shop', { name: 'v', subnet: 'front' }, { start: false });
      const ref = { service: 'shop', vm: 'v' };
      const answers: VmView[] = [];
      const tolerate = (e: unknown) => {
        // Operations racing on one VM may find it in a state that refuses them: that is the rule.
        if (!isVipdipError(e, 'INVALID_TRANSITION')) throw e;
      };
      const starter = async () => {
        for (let i = 0; i < ROUNDS; i++) {
          await clouds[i % clouds.length]!.vmOperation(ref, 'start').catch(tolerate);
          await clouds[(i + 1) % clouds.length]!.vmOperation(ref, 'deallocate').catch(tolerate);
        }
      };
      const restarter = async (k: number) => {
        for (let i = 0; i < ROUNDS; i++) {
          const op = i % 3 === 2 ? 'stop' : 'restart';
          const got = await clouds[(i + k) % clouds.length]!.vmOperation(ref, op).catch(tolerate);
          if (got) answers.push(got);
        }
      };
      await Promise.all([starter(), restarter(1), restarter(2)]);
      assert.ok(answers.length > 0, 'no restart or stop found the VM allocated');
      for (const a of answers) {
        assert.equal(a.state === 'running' || a.state === 'stopped', true, `${a.state}`);
        assert.notEqual(a.host, null, `a ${a.state} VM answered with host null`);
        assert.notEqual(a.dip, null, `a ${a.state} VM answered with no DIP`);
      }
      await clean(r);
    });

    if (dialect === 'postgres') {
      test('a restart that waited for a start on the VM row answers with the host that start chose', async () => {
        r = await replicas(dialect);
        const { clouds, t } = r;
        const cluster = await postgres();
        const cloud = clouds[0]!;
        await cloud.createVm('shop', { name: 'keep', subnet: 'front' });
        await cloud.createVm('shop', { name: 'v', subnet: 'front' }, { start: false });
        const ref = { service: 'shop', vm: 'v' };
        const database = await t.store.read(
          async (x) =>
            (
              await x.db
                .selectNoFrom((eb) => eb.fn<string>('current_database', []).as('d'))
                .executeTakeFirstOrThrow()
            ).d,
        );
        const waiting = async (n: number) => {
          // Until n sessions of this database wait for a row lock (bounded: 10 s).
          for (let i = 0; i < 1000; i++) {
            const q = await cluster.query(
              `select count(*)::int as n from pg_stat_activity where datname = $1 and wait_event_type = 'Lock'`,
              [database],
            );
            if ((q.rows[0] as { n: number }).n >= n) return;
            await new Promise((res) => setTimeout(res, 10));
          }
          throw new Error(`${n} sessions never waited for the VM row`);
        };
        let seen = 0;
        for (let round = 0; round < 3; round++) {
          // Hold the VM's row as another writer would, queue a start and then a restart behind it.
          const holder = (await import('pg')).default;
          const client = new holder.Client({ connectionString: cluster.urlOf(database) });
          await client.connect();
          try {
            await client.query('begin');
            await client.query(`select id from vms where name = 'v' for update`);
            const started = clouds[1]!.vmOperation(ref, 'start');
            await waiting(1);
            const restarted = clouds[2]!.vmOperation(ref, 'restart').catch((e: unknown) => e);
            await waiting(2);
            await client.query('commit');
            const s = await started;
            const answer = await restarted;
            if (isVipdipError(answer, 'INVALID_TRANSITION')) continue; // the restart went first
            if (answer instanceof Error) throw answer;
            const a = answer as VmView;
            seen++;
            assert.equal(a.host, s!.host, 'the restart answered with the host the start chose');
            assert.deepEqual(a, await cloud.getVm(ref), 'the answer is the VM as it is (its ETag)');
          } finally {
            await client.end();
          }
          await cloud.vmOperation(ref, 'deallocate');
        }
        assert.ok(seen > 0, 'no restart ran after the start');
        await clean(r);
      });
    }

    test('associating and disassociating two reserved IPs with one service side by side never deadlocks', async () => {
      r = await replicas(dialect);
      const { clouds, stores } = r;
      const cloud = clouds[0]!;
      // A running VM: a disassociation then draws the service a fresh VIP.
      await cloud.createVm('shop', { name: 'web', subnet: 'front' });
      for (const n of ['r1', 'r2']) await cloud.createReservedIp('contoso', n);
      const expectedRefusals = new Set(['IN_USE', 'CONFLICT']);
      let done = 0;
      const churn = (rip: string, k: number) => async () => {
        for (let i = 0; i < ROUNDS; i++) {
          const c = clouds[(i + k) % clouds.length]!;
          for (const op of [
            () => c.associateReservedIp('contoso', rip, 'shop'),
            () => c.disassociateReservedIp('contoso', rip),
          ]) {
            try {
              await op();
              done++;
            } catch (e) {
              // The other reserved IP holds the service, or this one is not associated: the rules.
              if (!(isVipdipError(e) && expectedRefusals.has(e.code))) throw e;
            }
          }
        }
      };
      await Promise.all([churn('r1', 0)(), churn('r2', 1)(), churn('r1', 2)()]);
      assert.ok(done > 0, 'no association or disassociation succeeded');
      const deadlocks = stores.reduce((n, s) => n + (s.deadlocks ?? 0), 0);
      assert.equal(deadlocks, 0, `${deadlocks} transactions were chosen as deadlock victims`);
      await clean(r);
    });
  });
}
