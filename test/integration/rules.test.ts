/**
 * One test per address rule of SPEC.md §2 (R1–R8), through the public operations only, on a real
 * SQLite store.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { isVipdipError } from '../../src/core/index.ts';
import type { Cloud } from '../../src/lifecycle/index.ts';
import { makeCloud, withShop, type TestCloud } from '../support/cloud.ts';

let t: TestCloud;
let cloud: Cloud;
const vm = (name: string) => ({ service: 'shop', vm: name });
const vip = async (service = 'shop') => (await cloud.getService(service)).vip;
const dip = async (name: string) => (await cloud.getVm(vm(name))).dip;

beforeEach(async () => {
  t = await makeCloud();
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
    await cloud.vmOperation(vm('web1'), 'start');
    const history = (await cloud.events({ limit: 1000 })).filter(
      (e) => e.resource === 'vm/shop/web1' && e.type === 'vm.dip',
    );
    assert.equal(history.length, 3);
    assert.deepEqual(
      history.map((e) => e.reason),
      ['create', 'deallocate', 'start'],
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
    const dir = t.dir;
    await t.store.close();
    const again = await makeCloud({ dir, seed: 42 });
    try {
      assert.deepEqual(await again.cloud.listVms(), before);
      const front = (await again.cloud.getVnet('contoso', 'shop-net')).subnets.find(
        (s) => s.name === 'front',
      )!;
      assert.equal(front.bound, 2);
      await again.cloud.createVm('shop', { name: 'web3', subnet: 'front' });
      const dips = (await again.cloud.listVms()).map((v) => v.dip);
      assert.equal(new Set(dips).size, 3);
    } finally {
      await again.close();
      rmSync(dir, { recursive: true, force: true });
    }
    t = await makeCloud();
  });
});
