import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DesiredVm } from '../driver.ts';
import {
  agentWorldPrefix,
  EMPTY_WORLD,
  routableVnets,
  bridgeName,
  dnsListeners,
  planWorld,
  vethName,
  vmNamespace,
  worldPrefix,
  worldSpec,
} from './world.ts';

const vm = (name: string, dip: string, vnet = 's1/net', cidr = '10.1.0.0/24'): DesiredVm => ({
  key: `s1/web/${name}`,
  subscription: 's1',
  service: 'web',
  vm: name,
  vnet,
  cidr,
  dip,
});
const vnets = [
  { key: 's1/net', subscription: 's1', name: 'net', subnets: ['10.1.0.0/24'] },
  { key: 's1/other', subscription: 's1', name: 'other', subnets: ['10.2.0.0/16'] },
];
const P = 'vdabc123';

describe('the netns world plan', () => {
  test('names: one prefix per state directory, device names within IFNAMSIZ', () => {
    assert.match(worldPrefix('/var/lib/vipdip'), /^vd[0-9a-z]{6}$/);
    assert.notEqual(worldPrefix('/a'), worldPrefix('/b'));
    assert.ok(vmNamespace(P, 'web/web1').startsWith(`${P}-`));
    assert.ok(vmNamespace(P, 'web/web1').endsWith('-web1'));
    for (const n of [bridgeName('s1/net'), vethName('web/web1')]) assert.ok(n.length <= 15, n);
  });

  test("names: a standalone agent's prefix is its control URL and name, the same however the URL is spelled", () => {
    const p = agentWorldPrefix('http://127.0.0.1:7480', 'edge1');
    assert.match(p, /^vd[0-9a-z]{6}$/);
    assert.equal(agentWorldPrefix('http://127.0.0.1:7480/', 'edge1'), p);
    assert.equal(agentWorldPrefix('HTTP://LOCALHOST:80/', 'a'), agentWorldPrefix('http://localhost', 'a'));
    assert.notEqual(agentWorldPrefix('http://127.0.0.1:7480', 'edge2'), p);
    assert.notEqual(agentWorldPrefix('http://127.0.0.1:7481', 'edge1'), p);
    assert.notEqual(worldPrefix('http://127.0.0.1:7480'), p);
    assert.throws(() => agentWorldPrefix('not a url', 'edge1'));
  });

  test('from nothing: bridges with their gateways, a namespace and veth per VM, VIPs on lo', () => {
    const next = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, ['198.18.0.10']);
    const plan = planWorld(EMPTY_WORLD, next);
    const br = bridgeName('s1/net');
    assert.deepEqual(plan.addNamespaces, [vmNamespace(P, 'web/web1')]);
    assert.ok(plan.world.includes(`link add ${br} type bridge`));
    assert.ok(plan.world.includes(`addr add 10.1.0.1/24 dev ${br}`));
    assert.ok(plan.world.includes(`addr add 10.2.0.1/16 dev ${bridgeName('s1/other')}`));
    assert.ok(plan.world.includes(`link set ${vethName('web/web1')} master ${br}`));
    // The world is IPv4: no link-local addresses, so no DAD or MLD per link (a third of a 1,000-VM build).
    assert.ok(plan.world.includes(`link set ${vethName('web/web1')} addrgenmode none`));
    assert.ok(plan.world.includes('addr add 198.18.0.10/32 dev lo'));
    assert.deepEqual(plan.vms.get(vmNamespace(P, 'web/web1')), [
      'link set lo up',
      'link set eth0 addrgenmode none',
      'link set eth0 up',
      'addr add 10.1.0.4/24 dev eth0',
      'route add default via 10.1.0.1',
    ]);
  });

  test('the same world again is no work at all', () => {
    const s = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, ['198.18.0.10']);
    const plan = planWorld(s, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, ['198.18.0.10']));
    assert.deepEqual(plan, {
      deleteNamespaces: [],
      addNamespaces: [],
      world: [],
      vms: new Map(),
      readdressed: [],
    });
  });

  test('a DIP change flushes the old address from eth0 and names the VM for a workload restart', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []);
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.1.0.9')], vnets, []));
    assert.deepEqual(plan.readdressed, ['s1/web/web1']);
    assert.deepEqual(plan.vms.get(vmNamespace(P, 'web/web1')), [
      'addr flush dev eth0',
      'addr add 10.1.0.9/24 dev eth0',
      'route replace default via 10.1.0.1',
    ]);
    assert.deepEqual(plan.addNamespaces, []);
  });

  test('a VM moved to another VNet keeps its namespace and changes bridge and address', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []);
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.2.0.4', 's1/other', '10.2.0.0/16')], vnets, []));
    assert.ok(plan.world.includes(`link set ${vethName('web/web1')} master ${bridgeName('s1/other')}`));
    assert.deepEqual(plan.readdressed, ['s1/web/web1']);
  });

  test('a VM gone: its veth, then its namespace; a VIP gone leaves lo', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4'), vm('web2', '10.1.0.5')], vnets, ['198.18.0.10']);
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []));
    assert.deepEqual(plan.deleteNamespaces, [vmNamespace(P, 'web/web2')]);
    assert.deepEqual(plan.world, [`link del ${vethName('web/web2')}`, 'addr del 198.18.0.10/32 dev lo']);
  });

  test('a VNet overlapping an earlier one (or the internet link) is left out with its VMs, and said why', () => {
    const r = routableVnets(
      [vm('web1', '10.1.0.4'), { ...vm('x1', '10.1.0.4', 's2/net'), subscription: 's2', service: 'x' }],
      [
        { key: 's2/net', subscription: 's2', name: 'net', subnets: ['10.1.0.0/25'] },
        { key: 's1/net', subscription: 's1', name: 'net', subnets: ['10.1.0.0/24'] },
        { key: 's3/net', subscription: 's3', name: 'net', subnets: ['198.18.255.0/24'] },
      ],
    );
    assert.deepEqual(
      r.vnets.map((v) => v.key),
      ['s1/net'],
    );
    assert.deepEqual(
      r.vms.map((v) => v.key),
      ['s1/web/web1'],
    );
    assert.deepEqual(
      r.refused.map((x) => x.key),
      ['vnet/s2/net', 'vnet/s3/net'],
    );
    assert.match(r.refused[0]!.error, /overlaps 10\.1\.0\.0\/24 of s1\/net/);
    assert.match(r.refused[1]!.error, /the internet link/);
  });

  test('DNS listeners: each gateway answers for its VNet, the internet link for the internet', () => {
    const w = worldSpec(
      P,
      [vm('web1', '10.1.0.4'), { ...vm('db1', '10.2.0.4', 's1/other', '10.2.0.0/16'), key: 's1/web/db1' }],
      [
        ...vnets,
        { key: 's2/blog', subscription: 's2', name: 'blog', subnets: ['10.3.1.0/24', '10.3.2.0/24'] },
      ],
      [],
    );
    assert.deepEqual(Object.fromEntries(dnsListeners(w)), {
      '198.18.255.1': { kind: 'internet' },
      '10.1.0.1': { kind: 'vnet', vnet: 's1/net' },
      '10.2.0.1': { kind: 'vnet', vnet: 's1/other' },
      '10.3.1.1': { kind: 'vnet', vnet: 's2/blog' },
      '10.3.2.1': { kind: 'vnet', vnet: 's2/blog' },
    });
    assert.deepEqual(Object.fromEntries(dnsListeners(EMPTY_WORLD)), { '198.18.255.1': { kind: 'internet' } });
  });
});
