/**
 * The store contract: one suite, run against every store (SQLite, and a real PostgreSQL started
 * for the purpose), as Kysely runs its tests over its dialects. The address rules of SPEC.md §2
 * (R1–R8) through the public operations; what the store itself promises (transactions all or
 * nothing, the database refusing a double bind, gap-free events in commit order, migrations run
 * once however many processes open an empty state together); and state surviving a restart.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { sql } from 'kysely';
import { SeededRandom, isVipdipError, parseIpv4, steppingClock } from '../../src/core/index.ts';
import { Cloud, formatFinding, fsck } from '../../src/lifecycle/index.ts';
import { PostgresStore, SqliteStore, type Repo, type Store } from '../../src/store/index.ts';
import { applyTopology, parseTopology } from '../../src/topology/index.ts';
import { buildCleanState } from '../support/states.ts';
import { DIALECTS, makeDialectCloud, withShop, type DialectCloud } from '../support/cloud.ts';
import { usePostgres } from '../support/postgres.ts';
import { migrations } from '../../src/store/migrations/index.ts';

const postgres = usePostgres();

for (const dialect of DIALECTS) {
  describe(`store contract on ${dialect}`, () => {
    let t: DialectCloud;
    let cloud: Cloud;
    const vm = (name: string) => ({ service: 'shop', vm: name });
    const vip = async (service = 'shop') => (await cloud.getService(service)).vip;
    const dip = async (name: string) => (await cloud.getVm(vm(name))).dip;
    const fresh = async (seed?: number) =>
      makeDialectCloud(dialect, {
        ...(seed !== undefined ? { seed } : {}),
        ...(dialect === 'postgres' ? { cluster: await postgres() } : {}),
      });

    beforeEach(async () => {
      t = await fresh();
      cloud = t.cloud;
      await withShop(cloud);
    });
    afterEach(() => t.close());

    describe('R1: a cloud service gets its VIP with its first allocated VM', () => {
      test('a service with no VM has no VIP, and its first started VM gives it one from the public pool', async () => {
        assert.equal(await vip(), null);
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' }, { start: false });
        assert.equal(await vip(), null, 'a deallocated VM does not allocate the VIP');
        await cloud.vmOperation(vm('web1'), 'start');
        const v = await vip();
        assert.match(v ?? '', /^127\.100\./);
      });

      test('a service that uses a reserved IP has its VIP at once, before any VM', async () => {
        const rip = await cloud.createReservedIp('contoso', 'shop-ip');
        await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net', reservedIp: 'shop-ip' });
        assert.equal(await vip('blog'), rip.address);
      });
    });

    describe('R2: the VIP stays while at least one VM is allocated', () => {
      test('deallocating all but one VM, and stopping the last, leaves the VIP unchanged', async () => {
        for (const n of ['web1', 'web2', 'web3']) await cloud.createVm('shop', { name: n, subnet: 'front' });
        const before = await vip();
        assert.notEqual(before, null);
        await cloud.vmOperation(vm('web1'), 'deallocate');
        assert.equal(await vip(), before);
        await cloud.vmOperation(vm('web2'), 'delete');
        assert.equal(await vip(), before);
        await cloud.vmOperation(vm('web3'), 'stop');
        assert.equal(await vip(), before, 'a stopped VM is still allocated');
        await cloud.vmOperation(vm('web3'), 'redeploy');
        assert.equal(await vip(), before);
      });
    });

    describe('R3: deallocating or deleting the last allocated VM gives the VIP back', () => {
      test('the VIP returns to the pool and the next allocation draws a new one', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        await cloud.createVm('shop', { name: 'web2', subnet: 'front' });
        const first = await vip();
        const pool = async () => (await cloud.listPools())[0]!;
        assert.equal((await pool()).bound, 1);
        await cloud.vmOperation(vm('web1'), 'deallocate');
        await cloud.vmOperation(vm('web2'), 'delete');
        assert.equal(await vip(), null);
        assert.equal((await pool()).bound, 0, 'the VIP is back in the pool');
        await cloud.vmOperation(vm('web1'), 'start');
        const second = await vip();
        assert.notEqual(second, null);
        assert.notEqual(second, first, 'a random draw from a /16 lands elsewhere (seeded)');
        const events = await cloud.events({ limit: 1000 });
        const vipEvents = events.filter((e) => e.type === 'service.vip');
        assert.deepEqual(
          vipEvents.map((e) => [e.old?.vip, e.new?.vip]),
          [
            [null, first],
            [first, null],
            [null, second],
          ],
        );
      });

      test('a reserved IP survives deallocation of every VM and deletion of the service', async () => {
        const rip = await cloud.createReservedIp('contoso', 'shop-ip');
        await cloud.associateReservedIp('contoso', 'shop-ip', 'shop');
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        await cloud.vmOperation(vm('web1'), 'deallocate');
        assert.equal(await vip(), rip.address);
        await cloud.deleteService('shop');
        const [after] = await cloud.listReservedIps('contoso');
        assert.deepEqual(after, {
          subscription: 'contoso',
          name: 'shop-ip',
          address: rip.address,
          service: null,
        });
        assert.equal((await cloud.listPools())[0]!.bound, 1, 'the reserved address stays bound');
      });
    });

    describe('R4: deallocation releases the DIP; start draws a random free one', () => {
      test('a deallocated VM holds no DIP and its address is free again', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const d = await dip('web1');
        assert.notEqual(d, null);
        await cloud.vmOperation(vm('web1'), 'deallocate');
        assert.equal(await dip('web1'), null);
        const front = (await cloud.getVnet('contoso', 'shop-net')).subnets.find((s) => s.name === 'front')!;
        assert.equal(front.bound, 0);
      });

      test('DIPs after restarts are drawn at random, not lowest-free', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const seen = new Set<string>();
        for (let i = 0; i < 20; i++) {
          await cloud.vmOperation(vm('web1'), 'deallocate');
          await cloud.vmOperation(vm('web1'), 'start');
          seen.add((await dip('web1'))!);
        }
        // Lowest-free would give 127.16.1.4 every time; 20 uniform draws from 251 give ≥ 15 distinct
        // values with overwhelming probability, and the seed makes it certain here.
        assert.ok(seen.size >= 15, `only ${seen.size} distinct DIPs`);
        assert.ok(!seen.has('127.16.1.0') && !seen.has('127.16.1.255'));
      });

      test('the sequential policy gives the lowest free address', async () => {
        await cloud.createVnet('contoso', {
          name: 'seq-net',
          addressSpace: ['127.17.0.0/24'],
          subnets: [{ name: 's', cidr: '127.17.0.0/24' }],
          dipPolicy: 'sequential',
        });
        await cloud.createService('contoso', { name: 'seq', vnet: 'seq-net' });
        for (const n of ['a', 'b', 'c']) await cloud.createVm('seq', { name: n, subnet: 's' });
        const dips = await Promise.all(
          ['a', 'b', 'c'].map(async (n) => (await cloud.getVm({ service: 'seq', vm: n })).dip),
        );
        assert.deepEqual(dips, ['127.17.0.4', '127.17.0.5', '127.17.0.6']);
        await cloud.vmOperation({ service: 'seq', vm: 'a' }, 'deallocate');
        await cloud.vmOperation({ service: 'seq', vm: 'a' }, 'start');
        assert.equal((await cloud.getVm({ service: 'seq', vm: 'a' })).dip, '127.17.0.4');
      });

      test('a static DIP is honoured on every start', async () => {
        await cloud.createVm('shop', { name: 'db1', subnet: 'back', staticDip: '127.16.2.10' });
        for (let i = 0; i < 3; i++) {
          assert.equal(await dip('db1'), '127.16.2.10');
          await cloud.vmOperation(vm('db1'), 'deallocate');
          assert.equal(await dip('db1'), null);
          await cloud.vmOperation(vm('db1'), 'start');
        }
      });

      test('a deallocated VM keeps its static DIP: no dynamic start takes it, and the VM starts on it again', async () => {
        // A /29 has three usable addresses: the static VM's and two for the dynamic ones.
        await cloud.addSubnet('contoso', 'shop-net', { name: 'tiny', cidr: '127.16.9.0/29' });
        await cloud.createVm('shop', { name: 'db', subnet: 'tiny', staticDip: '127.16.9.5' });
        await cloud.vmOperation(vm('db'), 'deallocate');
        for (const n of ['a', 'b']) await cloud.createVm('shop', { name: n, subnet: 'tiny' });
        await cloud.createVm('shop', { name: 'c', subnet: 'tiny' }, { start: false });
        for (let i = 0; i < 12; i++) {
          const n = i % 2 === 0 ? 'a' : 'b';
          await cloud.vmOperation(vm(n), 'deallocate');
          await cloud.vmOperation(vm(n), 'start');
          assert.notEqual(await dip(n), '127.16.9.5', 'a draw took the static DIP of a deallocated VM');
        }
        await assert.rejects(cloud.vmOperation(vm('c'), 'start'), (e) => isVipdipError(e, 'POOL_EXHAUSTED'));
        await cloud.vmOperation(vm('db'), 'start');
        assert.equal(await dip('db'), '127.16.9.5');
        assert.deepEqual((await t.store.read((r) => fsck(r))).map(formatFinding), []);
      });

      test('a static DIP is claimed when its VM is created and given back only when the VM is deleted', async () => {
        await cloud.createVm(
          'shop',
          { name: 'db', subnet: 'back', staticDip: '127.16.2.10' },
          { start: false },
        );
        await assert.rejects(
          cloud.createVm('shop', { name: 'db2', subnet: 'back', staticDip: '127.16.2.10' }),
          (e) => isVipdipError(e, 'ADDRESS_TAKEN'),
        );
        await cloud.createVm('shop', { name: 'other', subnet: 'back' }, { start: false });
        await assert.rejects(cloud.updateVm(vm('other'), { staticDip: '127.16.2.10' }), (e) =>
          isVipdipError(e, 'ADDRESS_TAKEN'),
        );
        // Moving the reservation gives the old address back at once.
        await cloud.updateVm(vm('db'), { staticDip: '127.16.2.11' });
        await cloud.updateVm(vm('other'), { staticDip: '127.16.2.10' });
        await cloud.vmOperation(vm('db'), 'delete');
        await cloud.createVm('shop', { name: 'db3', subnet: 'back', staticDip: '127.16.2.11' });
        assert.equal(await dip('db3'), '127.16.2.11');
        const statics = (await t.store.read((r) => r.bindings())).filter((b) => b.kind === 'static');
        assert.equal(statics.length, 2);
        assert.deepEqual((await t.store.read((r) => fsck(r))).map(formatFinding), []);
      });

      test('apply places static DIPs before it draws dynamic ones, whatever the draws', async () => {
        const doc = (service: string, cidr: string) =>
          parseTopology({
            subscriptions: [
              {
                name: 'contoso',
                virtualNetworks: [
                  { name: 'shop-net', addressSpace: ['127.16.0.0/16'], subnets: [{ name: service, cidr }] },
                ],
                cloudServices: [
                  {
                    name: service,
                    vnet: 'shop-net',
                    vms: [
                      { name: 'a', subnet: service },
                      { name: 'b', subnet: service },
                      { name: 's', subnet: service, staticDip: cidr.replace(/\.0\/29$/, '.6') },
                    ],
                  },
                ],
              },
            ],
          });
        // The topology failed about two times in three: each round draws afresh.
        for (let i = 0; i < 6; i++) {
          const cidr = `127.16.${20 + i}.0/29`;
          await applyTopology(cloud, doc(`apply${i}`, cidr));
          assert.equal(
            (await cloud.getVm({ service: `apply${i}`, vm: 's' })).dip,
            cidr.replace(/\.0\/29$/, '.6'),
          );
        }
        assert.deepEqual((await t.store.read((r) => fsck(r))).map(formatFinding), []);
      });
    });

    describe('R5: maintenance and redeploy move the VM and redraw its DIP', () => {
      test('host maintenance moves every VM off the host and redraws non-static DIPs', async () => {
        for (const n of ['web1', 'web2', 'web3', 'web4'])
          await cloud.createVm('shop', { name: n, subnet: 'front' });
        await cloud.createVm('shop', { name: 'db1', subnet: 'back', staticDip: '127.16.2.10' });
        const before = await cloud.listVms({ service: 'shop' });
        const host = before.find((v) => v.name === 'db1')!.host!;
        const onHost = before.filter((v) => v.host === host);
        const moved = await cloud.maintenance({ host });
        assert.deepEqual(moved.map((v) => v.name).sort(), onHost.map((v) => v.name).sort());
        for (const v of moved) {
          assert.notEqual(v.host, host);
          const old = onHost.find((o) => o.name === v.name)!;
          if (v.staticDip !== null) assert.equal(v.dip, old.dip, 'a static DIP never changes');
          else assert.notEqual(v.dip, old.dip, 'a non-static DIP is redrawn');
        }
        const untouched = before.filter((v) => v.host !== host);
        for (const v of untouched) assert.equal(await dip(v.name), v.dip);
        const reasons = (await cloud.events({ limit: 1000 }))
          .filter((e) => e.type === 'vm.dip')
          .map((e) => e.reason);
        assert.ok(reasons.includes(`maintenance of host ${host}`));
      });

      test('rack maintenance moves VMs to the other rack', async () => {
        for (const n of ['web1', 'web2', 'web3', 'web4'])
          await cloud.createVm('shop', { name: n, subnet: 'front' });
        await cloud.maintenance({ rack: 'rack1' });
        for (const v of await cloud.listVms()) assert.equal(v.rack, 'rack2');
      });

      test('redeploy moves to another host; a network with movePolicy keep keeps the DIP', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const a = await cloud.getVm(vm('web1'));
        const b = (await cloud.vmOperation(vm('web1'), 'redeploy'))!;
        assert.notEqual(b.host, a.host);
        assert.notEqual(b.dip, a.dip);
        await cloud.setVnetPolicy('contoso', 'shop-net', { movePolicy: 'keep' });
        const c = (await cloud.vmOperation(vm('web1'), 'redeploy'))!;
        assert.notEqual(c.host, b.host);
        assert.equal(c.dip, b.dip);
      });
    });

    describe('R6: VM-to-VM traffic goes through VIPs', () => {
      test('every allocated VM can be reached through its service VIP and sources from it', async () => {
        // The data plane carries R6; the control plane's part is that every allocated VM has a VIP to
        // be reached at and to be source-NATed to, distinct across services.
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net' });
        await cloud.createVm('blog', { name: 'web1', subnet: 'front' });
        const [a, b] = [await vip('shop'), await vip('blog')];
        assert.ok(a !== null && b !== null && a !== b);
        assert.ok((await cloud.listVms()).every((v) => v.dip !== null));
      });
    });

    describe('R7: both addresses and their history are visible', () => {
      test('a VM view shows its DIP and service, the service its VIP, and the events every change', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const v = await cloud.getVm(vm('web1'));
        assert.equal(v.service, 'shop');
        assert.notEqual(v.dip, null);
        await cloud.vmOperation(vm('web1'), 'deallocate');
        const started = await cloud.vmOperation(vm('web1'), 'start');
        const history = (await cloud.events({ limit: 1000 })).filter(
          (e) => e.resource === 'vm/shop/web1' && e.type === 'vm.dip',
        );
        assert.equal(history.length, 3);
        assert.deepEqual(
          history.map((e) => e.reason),
          ['create', 'deallocate', 'start'],
        );
        // Each change names the address it replaced as well as the new one.
        assert.deepEqual(
          history.map((e) => [e.old?.dip ?? null, e.new?.dip ?? null]),
          [
            [null, v.dip],
            [v.dip, null],
            [null, started!.dip],
          ],
        );
      });
    });

    describe('R8: stop keeps both addresses; restart keeps both', () => {
      test('stop, start and restart change neither the DIP nor the VIP', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const [d, v] = [await dip('web1'), await vip()];
        await cloud.vmOperation(vm('web1'), 'stop');
        assert.equal((await cloud.getVm(vm('web1'))).state, 'stopped');
        assert.deepEqual([await dip('web1'), await vip()], [d, v]);
        await cloud.vmOperation(vm('web1'), 'start');
        assert.deepEqual([await dip('web1'), await vip()], [d, v]);
        await cloud.vmOperation(vm('web1'), 'restart');
        assert.deepEqual([await dip('web1'), await vip()], [d, v]);
      });

      test('an illegal transition is a coded error, never a silent no-op', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        await assert.rejects(cloud.vmOperation(vm('web1'), 'start'), (e) =>
          isVipdipError(e, 'INVALID_TRANSITION'),
        );
        await cloud.vmOperation(vm('web1'), 'stop');
        await assert.rejects(cloud.vmOperation(vm('web1'), 'restart'), (e) =>
          isVipdipError(e, 'INVALID_TRANSITION'),
        );
      });
    });

    describe('state survives a restart', () => {
      test('reopening the store rebuilds the allocation index from it', async () => {
        for (const n of ['web1', 'web2']) await cloud.createVm('shop', { name: n, subnet: 'front' });
        const before = await cloud.listVms();
        const again = await t.open({ seed: 42 });
        assert.deepEqual(await again.cloud.listVms(), before);
        const front = (await again.cloud.getVnet('contoso', 'shop-net')).subnets.find(
          (s) => s.name === 'front',
        )!;
        assert.equal(front.bound, 2);
        await again.cloud.createVm('shop', { name: 'web3', subnet: 'front' });
        const dips = (await again.cloud.listVms()).map((v) => v.dip);
        assert.equal(new Set(dips).size, 3);
      });
    });

    describe('what the store promises', () => {
      test('a state built through every kind of operation is clean under fsck', async () => {
        const other = await fresh();
        try {
          await buildCleanState(other.cloud);
          const findings = await other.store.snapshot((r) => fsck(r));
          assert.deepEqual(findings.map(formatFinding), []);
        } finally {
          await other.close();
        }
      });

      test('a transaction that fails writes nothing', async () => {
        const before = await t.store.read((r) => r.subscriptions());
        await assert.rejects(
          t.store.write(async (r) => {
            await r.insertSubscription({ name: 'ghost', created_at: new Date().toISOString() });
            throw new Error('boom');
          }),
          /boom/,
        );
        assert.deepEqual(await t.store.read((r) => r.subscriptions()), before);
      });

      test('the database refuses to bind one address of a range twice', async () => {
        const b = { scope: 'subnet:999', address: parseIpv4('127.0.0.10'), owner: 'vm:1', kind: 'dip' };
        assert.equal(await t.store.write((r) => r.bind(b)), true);
        assert.equal(await t.store.write((r) => r.bind({ ...b, owner: 'vm:2' })), false);
        const rows = (await t.store.read((r) => r.bindings())).filter((x) => x.scope === 'subnet:999');
        assert.deepEqual(rows, [b]);
      });

      test('a VM ILPIP flag reads as a boolean everywhere and is stored as 0 or 1, as it always was', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front', ilpip: true });
        await cloud.createVm('shop', { name: 'web2', subnet: 'front' }, { start: false });
        const stored = () =>
          t.store.read(async (r) => {
            const rows = await sql<{ name: string; ilpip_enabled: unknown }>`
              select name, ilpip_enabled from vms order by name`.execute(r.db);
            return rows.rows.map((x) => [x.name, x.ilpip_enabled]);
          });
        assert.deepEqual(await stored(), [
          ['web1', 1],
          ['web2', 0],
        ]);
        const flags = async (r: Repo) => {
          const all = await r.vms();
          return {
            vm: [
              (await r.vm(all[0]!.service_id, 'web1'))?.ilpip_enabled,
              (await r.vmById(all[1]!.id))?.ilpip_enabled,
            ],
            vms: all.map((v) => v.ilpip_enabled),
            details: (await r.vmDetails()).map((v) => v.ilpip_enabled),
            context: [
              (await r.vmContext('shop', 'web1'))?.ilpip_enabled,
              (await r.vmContext('shop', 'web2'))?.ilpip_enabled,
            ],
          };
        };
        const want = {
          vm: [true, false],
          vms: [true, false],
          details: [true, false],
          context: [true, false],
        };
        // Every way in: a repo may read by other statements inside a transaction than outside one.
        assert.deepEqual(await t.store.read(flags), want);
        assert.deepEqual(await t.store.snapshot(flags), want);
        assert.deepEqual(await t.store.write(flags), want);
        assert.equal((await cloud.getVm(vm('web1'))).ilpipEnabled, true);
        await cloud.updateVm(vm('web1'), { ilpip: false });
        await cloud.updateVm(vm('web2'), { ilpip: true });
        assert.deepEqual(await stored(), [
          ['web1', 0],
          ['web2', 1],
        ]);
        assert.equal((await cloud.getVm(vm('web1'))).ilpip, null, 'disabling the flag gave the ILPIP back');
      });

      test('the database refuses two VMs of one subnet holding the same DIP', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        await cloud.createVm('shop', { name: 'web2', subnet: 'front' }, { start: false });
        const [a, b] = await t.store.read((r) => r.vms());
        await assert.rejects(t.store.write((r) => r.updateVm(b!.id, { dip: a!.dip })));
      });

      test('event sequence numbers are gap-free, a rolled-back operation leaves no hole', async () => {
        // A /29 holds three VMs: the fourth VM is created (an event), then fails to draw its DIP,
        // and everything it did goes with its rollback.
        await cloud.addSubnet('contoso', 'shop-net', { name: 'tiny', cidr: '127.16.3.0/29' });
        for (const n of ['t1', 't2', 't3']) await cloud.createVm('shop', { name: n, subnet: 'tiny' });
        await assert.rejects(cloud.createVm('shop', { name: 't4', subnet: 'tiny' }), (e) =>
          isVipdipError(e, 'POOL_EXHAUSTED'),
        );
        await cloud.createVm('shop', { name: 'plain', subnet: 'back' });
        const events = await cloud.events({ since: 0, limit: 10_000 });
        assert.deepEqual(
          events.map((e) => e.seq),
          events.map((_, i) => i + 1),
          'sequence numbers 1…N',
        );
        assert.ok(!events.some((e) => e.resource === 'vm/shop/t4'), 'nothing of the failed operation');
        const findings = await t.store.snapshot((r) => fsck(r));
        assert.deepEqual(findings.map(formatFinding), []);
      });

      test('events are read back in the order they committed, with times that never go back', async () => {
        const seen: number[] = [];
        const off = cloud.onEvents((es) => seen.push(...es.map((e) => e.seq)));
        for (let i = 0; i < 5; i++) await cloud.createVm('shop', { name: `w${i}`, subnet: 'front' });
        await Promise.all([0, 1, 2, 3, 4].map((i) => cloud.vmOperation(vm(`w${i}`), 'deallocate')));
        off();
        const stored = await cloud.events({ since: seen[0]! - 1, limit: 1000 });
        assert.deepEqual(
          seen,
          stored.map((e) => e.seq),
          'listeners saw each committed event once, in order',
        );
        for (let i = 1; i < stored.length; i++) assert.ok(stored[i]!.time >= stored[i - 1]!.time);
      });

      test("an event's text comes back exactly as written: quotes, backslashes, semicolons and all", async () => {
        // On PostgreSQL the statement that appends a transaction's events and commits it carries
        // the values in its text (the simple query protocol binds no parameters).
        const odd = `it's a \\ back\\slash; "quoted" $1 E'\\x41' ünïcødé 🌐\ncommit`;
        const last = await t.store.read((r) => r.lastSeq());
        const appended = await t.store.write((r) =>
          r.appendEvents([
            {
              time: new Date().toISOString(),
              type: 'vm.updated',
              subscription: odd,
              resource: `vm/${odd}`,
              reason: odd,
              old: JSON.stringify({ workload: odd }),
              new: null,
              changes: null,
            },
          ]),
        );
        assert.equal(appended[0]!.seq, last + 1);
        const [row] = await t.store.read((r) => r.events({ since: last }));
        assert.equal(row?.reason, odd);
        assert.equal(row?.subscription, odd);
        assert.equal(row?.resource, `vm/${odd}`);
        assert.deepEqual(JSON.parse(row?.old ?? 'null'), { workload: odd });
        assert.equal(row?.new, null);
      });

      test('nothing is written after the events: on PostgreSQL they commit the transaction', async (c) => {
        if (dialect !== 'postgres') return c.skip('SQLite commits on its own');
        const last = await t.store.read((r) => r.lastSeq());
        const event = {
          time: new Date().toISOString(),
          type: 'vm.updated',
          subscription: null,
          resource: 'vm/shop/late',
          reason: 'test',
          old: null,
          new: null,
          changes: null,
        };
        await assert.rejects(
          t.store.write(async (r) => {
            await r.appendEvents([event]);
            await r.insertSubscription({ name: 'late', created_at: new Date().toISOString() });
          }),
          /after its transaction committed/,
        );
        // The events were committed with their statement; the insert after them never ran.
        assert.equal(await t.store.read((r) => r.lastSeq()), last + 1);
        assert.ok(!(await t.store.read((r) => r.subscriptions())).some((x) => x.name === 'late'));
        // The connection goes back to the pool in a usable state.
        await cloud.createVm('shop', { name: 'after', subnet: 'front' });
      });

      test('a snapshot reads one consistent state', async () => {
        await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
        const [vms, bindings] = await t.store.snapshot(
          async (r) => [await r.vms(), await r.bindings()] as const,
        );
        assert.equal(bindings.filter((b) => b.owner === `vm:${vms[0]!.id}`).length, 1);
      });

      test('stores opening one empty state together run its migrations and its set-up once', async () => {
        // Replicas started together: on PostgreSQL at the same moment; SQLite has one process per
        // file, so there it is one after the other.
        const stores: Store[] = [];
        const clouds: Cloud[] = [];
        const cluster = dialect === 'postgres' ? await postgres() : undefined;
        const name = `m_${process.pid}_${Date.now()}`;
        const dir = dialect === 'sqlite' ? mkdtempSync(join(tmpdir(), 'vipdip-mig-')) : undefined;
        const url = cluster !== undefined ? await cluster.createDatabase(name) : join(dir!, 'state.db');
        const openOne = async (seed: number) => {
          const store = dialect === 'postgres' ? await PostgresStore.open(url) : await SqliteStore.open(url);
          stores.push(store);
          const c = await Cloud.open(store, {
            random: new SeededRandom(seed),
            clock: steppingClock(),
            defaultPublicPools: ['127.100.0.0/16'],
          });
          clouds.push(c);
        };
        try {
          if (dialect === 'postgres') await Promise.all([1, 2, 3, 4].map(openOne));
          else for (const seed of [1, 2, 3, 4]) await openOne(seed);
          const names = await stores[0]!.read(async (r) =>
            (
              await sql<{ name: string }>`select name from kysely_migration order by name`.execute(r.db)
            ).rows.map((x) => x.name),
          );
          // Every migration of the history, each once (the list grows with every schema change).
          const history = Object.keys(await migrations(dialect).getMigrations()).sort();
          assert.ok(history.includes('004-events-by-resource'), 'the history is the real one');
          assert.deepEqual(names, history);
          if (dialect === 'sqlite') {
            // A resource's history is read through its index, not by scanning the whole log.
            const plan = await stores[0]!.read(async (r) =>
              (
                await sql<{
                  detail: string;
                }>`explain query plan select * from events where resource in ('a', 'b') order by seq desc limit 100`.execute(
                  r.db,
                )
              ).rows.map((x) => x.detail),
            );
            assert.ok(
              plan.some((d) => d.includes('USING INDEX events_resource')),
              plan.join('; '),
            );
          }
          assert.equal((await clouds[0]!.listHosts()).length, 4, 'one default fabric');
          assert.equal((await clouds[0]!.listPools()).length, 1, 'one default pool');
        } finally {
          for (const c of clouds) c.close();
          for (const s of stores) await s.close();
          if (cluster !== undefined) await cluster.dropDatabase(name);
          if (dir !== undefined) rmSync(dir, { recursive: true, force: true });
        }
      });
    });
  });
}
