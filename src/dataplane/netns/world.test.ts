import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VipdipError, parseCidr } from '../../core/index.ts';
import {
  agentWorldPrefix,
  EMPTY_WORLD,
  routablePublic,
  routableVnets,
  bridgeMac,
  checkNetnsPlan,
  bridgeName,
  dnsListeners,
  planWorld,
  routerLinkName,
  routerNamespace,
  vethName,
  vmNamespace,
  worldPrefix,
  worldSpec,
} from './world.ts';
import { P, vm, vnets } from './testdata/world-fixtures.ts';

const R1 = routerNamespace(P, 's1');
const pub = (...a: string[]) => a.map((address) => ({ address, subscription: 's1' }));

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

  test('from nothing: a router per subscription linked to the core, bridges and VM veths in it, VIPs on its lo and routed to it by the core', () => {
    const next = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, pub('198.18.0.10'));
    const plan = planWorld(EMPTY_WORLD, next);
    const br = bridgeName('s1/net');
    const r = next.routers.get('s1')!;
    assert.equal(r.ns, R1);
    assert.deepEqual([r.coreAddr, r.routerAddr], ['100.127.0.1', '100.127.0.2']);
    assert.deepEqual(plan.addNamespaces, [R1, vmNamespace(P, 'web/web1')]);
    assert.deepEqual(plan.newRouters, [R1]);
    assert.deepEqual(plan.core, [
      `link add ${routerLinkName('s1')} type veth peer name up0 netns ${R1}`,
      `link set ${routerLinkName('s1')} addrgenmode none`,
      'addr add 100.127.0.1/30 dev ' + routerLinkName('s1'),
      `link set ${routerLinkName('s1')} up`,
      `route replace 198.18.0.10/32 via 100.127.0.2 dev ${routerLinkName('s1')}`,
    ]);
    const router = plan.routers.get(R1)!;
    assert.ok(router.includes('route add default via 100.127.0.1'));
    assert.ok(router.includes(`link add ${br} address ${bridgeMac('s1/net')} type bridge`));
    assert.match(bridgeMac('s1/net'), /^02(:[0-9a-f]{2}){5}$/);
    assert.notEqual(bridgeMac('s1/net'), bridgeMac('s1/other'));
    assert.ok(router.includes(`addr add 10.1.0.1/24 dev ${br}`));
    assert.ok(router.includes(`addr add 10.2.0.1/16 dev ${bridgeName('s1/other')}`));
    assert.ok(router.includes(`link set ${vethName('web/web1')} master ${br}`));
    // The world is IPv4: no link-local addresses, so no DAD or MLD per link (a third of a 1,000-VM build).
    assert.ok(router.includes(`link set ${vethName('web/web1')} addrgenmode none`));
    assert.ok(router.includes('addr add 198.18.0.10/32 dev lo'));
    assert.deepEqual(plan.vms.get(vmNamespace(P, 'web/web1')), [
      'link set lo up',
      'link set eth0 addrgenmode none',
      'link set eth0 up',
      'addr add 10.1.0.4/24 dev eth0',
      'route add default via 10.1.0.1',
    ]);
  });

  test('the same world again is no work at all', () => {
    const s = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, pub('198.18.0.10'));
    const plan = planWorld(s, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, pub('198.18.0.10'), s));
    assert.deepEqual(plan, {
      deleteNamespaces: [],
      addNamespaces: [],
      newRouters: [],
      core: [],
      routers: new Map(),
      vms: new Map(),
      readdressed: [],
    });
  });

  test('a DIP change flushes the old address from eth0 and names the VM for a workload restart', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []);
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.1.0.9')], vnets, [], a));
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
    const plan = planWorld(
      a,
      worldSpec(P, [vm('web1', '10.2.0.4', 's1/other', '10.2.0.0/16')], vnets, [], a),
    );
    assert.deepEqual(plan.routers.get(R1), [
      `link set ${vethName('web/web1')} master ${bridgeName('s1/other')}`,
    ]);
    assert.deepEqual(plan.readdressed, ['s1/web/web1']);
  });

  test('a VM gone: its veth, then its namespace; a VIP gone leaves the router and the core', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4'), vm('web2', '10.1.0.5')], vnets, pub('198.18.0.10'));
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, [], a));
    assert.deepEqual(plan.deleteNamespaces, [vmNamespace(P, 'web/web2')]);
    assert.deepEqual(plan.routers.get(R1), [
      'addr del 198.18.0.10/32 dev lo',
      `link del ${vethName('web/web2')}`,
    ]);
    assert.deepEqual(plan.core, ['route del 198.18.0.10/32']);
  });

  test('a subscription gone: the core drops its link, its VMs and then its router namespace go', () => {
    const s2vm = { ...vm('x1', '10.1.0.4', 's2/net'), key: 's2/x/x1', subscription: 's2', service: 'x' };
    const s2net = { key: 's2/net', subscription: 's2', name: 'net', subnets: ['10.1.0.0/24'] };
    const a = worldSpec(P, [vm('web1', '10.1.0.4'), s2vm], [...vnets, s2net], pub('198.18.0.10'));
    assert.equal(a.routers.get('s2')!.coreAddr, '100.127.0.5');
    const plan = planWorld(a, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, pub('198.18.0.10'), a));
    assert.deepEqual(plan.core, [`link del ${routerLinkName('s2')}`]);
    assert.deepEqual(plan.routers, new Map());
    assert.deepEqual(plan.deleteNamespaces, [vmNamespace(P, 'x/x1'), routerNamespace(P, 's2')]);
  });

  test('a router keeps its link while others come and go', () => {
    const s2net = { key: 's2/net', subscription: 's2', name: 'net', subnets: ['10.1.0.0/24'] };
    const a = worldSpec(P, [], [...vnets, s2net], []);
    const b = worldSpec(P, [], [s2net], [], a);
    assert.equal(b.routers.get('s2')!.link, 1);
    const c = worldSpec(P, [], [{ ...s2net, key: 's0/net', subscription: 's0' }, s2net], [], b);
    assert.equal(c.routers.get('s2')!.link, 1);
    assert.equal(c.routers.get('s0')!.link, 0);
  });

  test('VNets of two subscriptions may overlap; one overlapping an earlier one of its own subscription (or a block the world cannot carry) is left out with its VMs, and said why', () => {
    const r = routableVnets(
      [vm('web1', '10.1.0.4'), { ...vm('x1', '10.1.0.4', 's2/net'), subscription: 's2', service: 'x' }],
      [
        { key: 's2/net', subscription: 's2', name: 'net', subnets: ['10.1.0.0/25'] },
        { key: 's1/net', subscription: 's1', name: 'net', subnets: ['10.1.0.0/24'] },
        { key: 's1/two', subscription: 's1', name: 'two', subnets: ['10.1.0.128/25'] },
        { key: 's3/net', subscription: 's3', name: 'net', subnets: ['100.127.3.0/24'] },
        { key: 's4/net', subscription: 's4', name: 'net', subnets: ['10.9.0.0/24', '198.18.255.0/24'] },
        { key: 's5/net', subscription: 's5', name: 'net', subnets: ['127.16.0.0/16'] },
      ],
    );
    assert.deepEqual(
      r.vnets.map((v) => v.key),
      ['s1/net', 's2/net'],
    );
    assert.deepEqual(
      r.vms.map((v) => v.key),
      ['s1/web/web1', 's1/web/x1'],
    );
    assert.deepEqual(
      r.refused.map((x) => x.key),
      ['vnet/s1/two', 'vnet/s3/net', 'vnet/s4/net', 'vnet/s5/net'],
    );
    assert.match(r.refused[0]!.error, /overlaps 10\.1\.0\.0\/24 of s1\/net/);
    assert.match(
      r.refused[1]!.error,
      /100\.127\.0\.0\/16, the netns world's links between its core and its routers/,
    );
    assert.match(
      r.refused[2]!.error,
      /198\.18\.255\.0\/30, the netns world's link to its internet namespace/,
    );
    assert.match(r.refused[3]!.error, /127\.0\.0\.0\/8, loopback/);
  });

  test('a VIP or a SNAT source in the router links, the internet link or loopback is left out, with the reason; the rest stay', () => {
    const r = routablePublic(
      [
        { key: 'tcp/198.18.0.10:80', address: '198.18.0.10' },
        { key: 'tcp/100.127.0.9:80', address: '100.127.0.9' },
        { key: 'tcp/198.18.255.2:80', address: '198.18.255.2' },
        { key: 'tcp/127.0.0.1:80', address: '127.0.0.1' },
      ],
      [
        { dip: '10.1.0.4', source: '198.18.0.10' },
        { dip: '10.1.0.5', source: '100.127.255.254' },
        { dip: '10.1.0.6', source: '198.18.255.1' },
      ],
    );
    assert.deepEqual(
      r.endpoints.map((e) => e.key),
      ['tcp/198.18.0.10:80'],
    );
    assert.deepEqual(
      r.snat.map((x) => x.dip),
      ['10.1.0.4'],
    );
    assert.deepEqual(
      r.refused.map((x) => x.key),
      ['tcp/100.127.0.9:80', 'tcp/198.18.255.2:80', 'tcp/127.0.0.1:80', 'snat/10.1.0.5', 'snat/10.1.0.6'],
    );
    assert.match(r.refused[1]!.error, /internet namespace/);
    assert.match(r.refused[2]!.error, /loopback/);
    assert.match(r.refused[0]!.error, /100\.127\.0\.9 is inside 100\.127\.0\.0\/16/);
    // Just outside the range on both sides: kept.
    const edge = routablePublic(
      [
        { key: 'a', address: '100.126.255.255' },
        { key: 'b', address: '100.128.0.0' },
      ],
      [],
    );
    assert.equal(edge.refused.length, 0);
  });

  test('DNS listeners: by namespace, each gateway answers for its VNet in its router, the internet link in the core', () => {
    const w = worldSpec(
      P,
      [vm('web1', '10.1.0.4'), { ...vm('db1', '10.2.0.4', 's1/other', '10.2.0.0/16'), key: 's1/web/db1' }],
      [
        ...vnets,
        { key: 's2/blog', subscription: 's2', name: 'blog', subnets: ['10.1.0.0/24', '10.3.2.0/24'] },
      ],
      [],
    );
    const l = dnsListeners(w, 'core');
    assert.deepEqual(
      [...l].map(([ns, m]) => [ns, Object.fromEntries(m)]),
      [
        ['core', { '198.18.255.1': { kind: 'internet' } }],
        [
          R1,
          { '10.1.0.1': { kind: 'vnet', vnet: 's1/net' }, '10.2.0.1': { kind: 'vnet', vnet: 's1/other' } },
        ],
        [
          routerNamespace(P, 's2'),
          // The same gateway address as s1/net's, in another router: another scope.
          { '10.1.0.1': { kind: 'vnet', vnet: 's2/blog' }, '10.3.2.1': { kind: 'vnet', vnet: 's2/blog' } },
        ],
      ],
    );
    assert.deepEqual(
      [...dnsListeners(EMPTY_WORLD, 'core')].map(([ns, m]) => [ns, Object.fromEntries(m)]),
      [['core', { '198.18.255.1': { kind: 'internet' } }]],
    );
  });
});

describe('checkNetnsPlan', () => {
  test('refuses a block that overlaps the router links or loopback, naming it; takes the others', () => {
    const refused = (cidr: string) => {
      try {
        checkNetnsPlan(parseCidr(cidr), 'public pool');
        return undefined;
      } catch (e) {
        assert.ok(e instanceof VipdipError);
        assert.equal(e.code, 'DRIVER_UNSUPPORTED');
        return e.detail;
      }
    };
    assert.match(
      refused('100.127.4.0/24') ?? '',
      /^public pool uses 100\.127\.4\.0\/24, which overlaps 100\.127\.0\.0\/16/,
    );
    assert.match(refused('100.64.0.0/10') ?? '', /overlaps 100\.127\.0\.0\/16/, 'a block around the links');
    assert.match(refused('127.100.0.0/16') ?? '', /overlaps 127\.0\.0\.0\/8, loopback/);
    assert.match(
      refused('198.18.0.0/16') ?? '',
      /overlaps 198\.18\.255\.0\/30, the netns world's link to its internet/,
    );
    for (const ok of [
      '198.18.0.0/24',
      '198.18.254.0/24',
      '10.1.0.0/16',
      '100.126.0.0/16',
      '100.128.0.0/16',
      '128.0.0.0/8',
    ])
      assert.equal(refused(ok), undefined, ok);
  });
});
