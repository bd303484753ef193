/**
 * The agent's in-process source keeps its snapshot per change: after any sequence of operations it
 * equals a full read of the cloud, and a snapshot after one change reads the store as often at 400
 * VMs as at 16 (issue 14: consumers of the event stream cost per change, not per cloud).
 */
import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';
import { systemClock } from '../../src/core/index.ts';
import { InProcessSource } from '../../src/agent/source.ts';
import { StatusRegistry } from '../../src/agent/registry.ts';
import type { Cloud } from '../../src/lifecycle/index.ts';
import { makeCloud, withShop, type TestCloud } from '../support/cloud.ts';

const open: TestCloud[] = [];
afterEach(async () => {
  for (const t of open.splice(0)) await t.close();
});

const full = async (cloud: Cloud) => {
  const [services, vms, images, vnets] = await Promise.all([
    cloud.listServices(),
    cloud.listVms(),
    cloud.listImages(),
    cloud.listVnets(),
  ]);
  return canonical({ services, vms, images, vnets });
};
/** The snapshot as the data plane reads it: VNets by their subnets' CIDRs (not their usage counts). */
const canonical = (s: {
  services: readonly { name: string }[];
  vms: readonly { service: string; name: string }[];
  images?: readonly { name: string }[];
  vnets?: readonly {
    subscription: string;
    name: string;
    subnets: readonly { name: string; cidr: string }[];
  }[];
}) =>
  JSON.stringify({
    services: [...s.services].sort((a, b) => a.name.localeCompare(b.name)),
    vms: [...s.vms].sort((a, b) => `${a.service}/${a.name}`.localeCompare(`${b.service}/${b.name}`)),
    images: [...(s.images ?? [])].sort((a, b) => a.name.localeCompare(b.name)),
    vnets: [...(s.vnets ?? [])]
      .map((v) => ({
        vnet: `${v.subscription}/${v.name}`,
        subnets: v.subnets.map((n) => `${n.name}=${n.cidr}`).sort(),
      }))
      .sort((a, b) => a.vnet.localeCompare(b.vnet)),
  });

test('the in-process source’s snapshot, kept per change, always equals a full read of the cloud', async () => {
  const t = await makeCloud();
  open.push(t);
  const { cloud } = t;
  await withShop(cloud);
  const registry = new StatusRegistry(systemClock);
  const source = new InProcessSource(cloud, registry);
  try {
    const steps: (() => Promise<unknown>)[] = [
      () => cloud.createVm('shop', { name: 'a', subnet: 'front' }),
      () => cloud.createVm('shop', { name: 'b', subnet: 'front', ilpip: true }),
      () => cloud.createService('contoso', { name: 'blog', vnet: 'shop-net' }),
      () => cloud.createVm('blog', { name: 'a', subnet: 'back', staticDip: '127.16.2.9' }),
      () => cloud.vmOperation({ service: 'shop', vm: 'a' }, 'deallocate'),
      () => cloud.createReservedIp('contoso', 'ip1'),
      () => cloud.associateReservedIp('contoso', 'ip1', 'blog'),
      () => cloud.vmOperation({ service: 'shop', vm: 'b' }, 'redeploy'),
      () => cloud.maintenance({ rack: 'rack1' }),
      () => cloud.updateVm({ service: 'shop', vm: 'b' }, { ilpip: false }),
      () => cloud.disassociateReservedIp('contoso', 'ip1'),
      () => cloud.vmOperation({ service: 'shop', vm: 'a' }, 'start'),
      () => cloud.vmOperation({ service: 'blog', vm: 'a' }, 'delete'),
      () => cloud.deleteService('blog'),
      // Images and VNets are kept between changes too, and read again only when one of theirs comes.
      () => cloud.createImage('web', { command: 'exec true', env: { A: '1' } }),
      () => cloud.updateImage('web', { command: 'exec false' }),
      () => cloud.addSubnet('contoso', 'shop-net', { name: 'extra', cidr: '127.16.9.0/24' }),
      () => cloud.createVm('shop', { name: 'c', subnet: 'extra' }),
      () => cloud.deleteImage('web'),
    ];
    assert.equal(canonical(await source.snapshot()), await full(cloud));
    for (const [i, s] of steps.entries()) {
      await s();
      assert.equal(canonical(await source.snapshot()), await full(cloud), `after step ${i}`);
    }
  } finally {
    await source.close();
    registry.close();
  }
});

/** Statements one snapshot sends after one VM is deallocated, in a cloud of `vms` VMs. */
async function statementsPerChange(vms: number): Promise<number> {
  const t = await makeCloud();
  open.push(t);
  const { cloud } = t;
  await withShop(cloud);
  await cloud.batch(async () => {
    for (let s = 0; s < vms / 4; s++) {
      await cloud.createService('contoso', { name: `s${s}`, vnet: 'shop-net' });
      for (let v = 0; v < 4; v++) await cloud.createVm(`s${s}`, { name: `v${v}`, subnet: 'front' });
    }
  });
  const registry = new StatusRegistry(systemClock);
  const source = new InProcessSource(cloud, registry);
  try {
    await source.snapshot();
    await cloud.vmOperation({ service: 's0', vm: 'v0' }, 'deallocate');
    const before = t.store.statements;
    await source.snapshot();
    return t.store.statements - before;
  } finally {
    await source.close();
    registry.close();
  }
}

test('a snapshot after one change reads the store as often at 200 VMs as at 16', async () => {
  const small = await statementsPerChange(16);
  const large = await statementsPerChange(200);
  assert.ok(small > 0, 'the changed VM is read again');
  assert.equal(large, small);
});
