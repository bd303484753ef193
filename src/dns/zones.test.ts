import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isVipdipError } from '../core/errors.ts';
import { SCOPE_INTERNET, vnetScope } from './scope.ts';
import { buildZoneTable, checkZoneConfig, lookup, vmFqdns, type VmInput, type ZoneConfig } from './zones.ts';

const CONFIG: ZoneConfig = {
  publicZone: 'cloudapp.vipdip.test',
  internalZone: 'internal.vipdip.test',
  ttlSeconds: 5,
  nsAddress: '127.0.0.1',
};
const NOW = Date.UTC(2026, 0, 1);
const vm = (name: string, dip: string | null, ilpip: string | null = null): VmInput => ({
  subscription: 'contoso',
  vnet: 'shop-net',
  service: 'shop',
  name,
  dip,
  ilpip,
  ilpipEnabled: ilpip !== null,
});
const table = (vms: VmInput[], vip: string | null = '127.100.0.7') =>
  buildZoneTable({ services: [{ name: 'shop', vip }], vms }, CONFIG, undefined, NOW);
const found = (t: ReturnType<typeof table>, name: string) => {
  const r = lookup(t, name);
  return r.kind === 'found' ? r.record.a : r.kind;
};

describe('zone table', () => {
  test('a service resolves to its VIP and a VM to its DIP, in their zones', () => {
    const t = table([vm('web1', '127.16.1.9')]);
    assert.equal(found(t, 'shop.cloudapp.vipdip.test'), '127.100.0.7');
    assert.equal(found(t, 'web1.shop.internal.vipdip.test'), '127.16.1.9');
  });

  test('a service without a VIP and a deallocated VM exist without an address', () => {
    const t = table([vm('web1', null)], null);
    assert.equal(found(t, 'shop.cloudapp.vipdip.test'), null);
    assert.equal(found(t, 'web1.shop.internal.vipdip.test'), null);
  });

  test('a VM has a public name only with an instance-level public IP enabled', () => {
    const t = table([vm('web1', '127.16.1.9', '127.100.0.8'), vm('web2', '127.16.1.10')]);
    assert.equal(found(t, 'web1.shop.cloudapp.vipdip.test'), '127.100.0.8');
    assert.equal(found(t, 'web2.shop.cloudapp.vipdip.test'), 'nxdomain');
  });

  test('ancestors of a name inside its zone exist as empty non-terminals, and other names do not', () => {
    const t = table([vm('web1', '127.16.1.9')]);
    assert.equal(found(t, 'shop.internal.vipdip.test'), null);
    assert.equal(found(t, 'db1.shop.internal.vipdip.test'), 'nxdomain');
    assert.equal(found(t, 'x.web1.shop.internal.vipdip.test'), 'nxdomain');
    assert.equal(found(t, 'vipdip.test'), 'outside');
    assert.equal(found(t, 'example.com'), 'outside');
  });

  test('each zone apex exists and the name server host has the listening address', () => {
    const t = table([]);
    for (const z of ['cloudapp.vipdip.test', 'internal.vipdip.test']) {
      const r = lookup(t, z);
      assert.ok(r.kind === 'found' && r.record.apex);
    }
    assert.equal(found(t, 'ns.internal.vipdip.test'), '127.0.0.1');
  });

  test('the serial of a zone grows when its content changes, and only then', () => {
    const t1 = buildZoneTable(
      { services: [{ name: 'shop', vip: '127.100.0.7' }], vms: [vm('web1', '127.16.1.9')] },
      CONFIG,
      undefined,
      NOW,
    );
    const [pub1, int1] = t1.zones;
    assert.ok(pub1!.serial >= Math.floor(NOW / 1000));
    const t2 = buildZoneTable(
      { services: [{ name: 'shop', vip: '127.100.0.7' }], vms: [vm('web1', '127.16.1.10')] },
      CONFIG,
      t1,
      NOW,
    );
    assert.equal(t2.zones[0]!.serial, pub1!.serial, 'the public zone did not change');
    assert.equal(t2.zones[1]!.serial, int1!.serial + 1, 'the internal zone did');
    assert.equal(t2.zones[1]!.soa.serial, t2.zones[1]!.serial);
    const t3 = buildZoneTable(
      { services: [{ name: 'shop', vip: '127.100.0.7' }], vms: [vm('web1', '127.16.1.10')] },
      CONFIG,
      t2,
      NOW + 3_600_000,
    );
    assert.equal(t3.zones[1]!.serial, t2.zones[1]!.serial, 'time alone changes no serial');
  });

  test('zones that are equal or nested are refused, and zone names are normalized', () => {
    for (const [publicZone, internalZone] of [
      ['a.test', 'a.test'],
      ['a.test', 'b.a.test'],
      ['b.a.test', 'a.test'],
      ['bad_name.test', 'a.test'],
    ] as const) {
      assert.throws(
        () => checkZoneConfig({ ...CONFIG, publicZone, internalZone }),
        (e) => isVipdipError(e, 'INVALID_ARGUMENT'),
      );
    }
    assert.equal(
      checkZoneConfig({ ...CONFIG, publicZone: 'CloudApp.Example.' }).publicZone,
      'cloudapp.example',
    );
  });

  test('the names of a VM are its internal name, and its public one with an ILPIP', () => {
    assert.deepEqual(vmFqdns({ service: 'shop', name: 'web1', ilpipEnabled: true }), {
      internal: 'web1.shop.internal.vipdip.test',
      public: 'web1.shop.cloudapp.vipdip.test',
    });
    assert.equal(vmFqdns({ service: 'shop', name: 'web1', ilpipEnabled: false }).public, null);
  });

  describe('scoped by who asks', () => {
    // contoso/shop-net holds shop (web1, with an ILPIP); fabrikam/blog-net holds blog (www1); the
    // VNet front-net of contoso holds nothing yet.
    const t = buildZoneTable(
      {
        services: [
          { name: 'shop', vip: '127.100.0.7' },
          { name: 'blog', vip: '127.100.0.9' },
        ],
        vms: [
          vm('web1', '127.16.1.9', '127.100.0.8'),
          { ...vm('www1', '127.32.1.4'), subscription: 'fabrikam', vnet: 'blog-net', service: 'blog' },
        ],
      },
      CONFIG,
      undefined,
      NOW,
    );
    const seen = (name: string, scope: Parameters<typeof lookup>[2]) => {
      const r = lookup(t, name, scope);
      return r.kind === 'found' ? r.record.a : r.kind;
    };
    const shopNet = vnetScope('contoso', 'shop-net');
    const blogNet = vnetScope('fabrikam', 'blog-net');

    test("a VNet sees its own VMs' internal names, and another VNet's are NXDOMAIN like unknown ones", () => {
      assert.equal(seen('web1.shop.internal.vipdip.test', shopNet), '127.16.1.9');
      assert.equal(seen('shop.internal.vipdip.test', shopNet), null, 'its ancestors too');
      assert.equal(seen('www1.blog.internal.vipdip.test', shopNet), 'nxdomain');
      assert.equal(seen('blog.internal.vipdip.test', shopNet), 'nxdomain');
      assert.equal(seen('www1.blog.internal.vipdip.test', blogNet), '127.32.1.4');
      assert.equal(seen('web1.shop.internal.vipdip.test', blogNet), 'nxdomain');
      const unknown = lookup(t, 'db9.blog.internal.vipdip.test', shopNet);
      const hidden = lookup(t, 'www1.blog.internal.vipdip.test', shopNet);
      assert.deepEqual(hidden, unknown, 'the same zone, the same SOA: no hint that the name exists');
    });

    test('a VNet of the same subscription, or one without VMs, sees no internal name of another', () => {
      assert.equal(seen('web1.shop.internal.vipdip.test', vnetScope('contoso', 'front-net')), 'nxdomain');
      assert.equal(seen('web1.shop.internal.vipdip.test', vnetScope('contoso', 'nope')), 'nxdomain');
    });

    test('the public zone, the apexes and the name server host are everyone’s', () => {
      for (const scope of [shopNet, blogNet, SCOPE_INTERNET]) {
        assert.equal(seen('shop.cloudapp.vipdip.test', scope), '127.100.0.7');
        assert.equal(seen('blog.cloudapp.vipdip.test', scope), '127.100.0.9');
        assert.equal(seen('web1.shop.cloudapp.vipdip.test', scope), '127.100.0.8', 'an ILPIP is public');
        assert.equal(seen('ns.internal.vipdip.test', scope), '127.0.0.1');
        assert.equal(seen('internal.vipdip.test', scope), null);
        assert.equal(seen('example.com', scope), 'outside');
      }
    });

    test('the internet sees no internal name; no scope sees them all, as before', () => {
      assert.equal(seen('web1.shop.internal.vipdip.test', SCOPE_INTERNET), 'nxdomain');
      assert.equal(seen('www1.blog.internal.vipdip.test', SCOPE_INTERNET), 'nxdomain');
      assert.equal(seen('web1.shop.internal.vipdip.test', undefined), '127.16.1.9');
      assert.equal(seen('www1.blog.internal.vipdip.test', undefined), '127.32.1.4');
    });

    test('each VNet is indexed with its own names only', () => {
      assert.deepEqual([...t.vnetNames.keys()].sort(), ['contoso/shop-net', 'fabrikam/blog-net']);
      assert.deepEqual([...t.vnetNames.get('fabrikam/blog-net')!].sort(), [
        'blog.internal.vipdip.test',
        'www1.blog.internal.vipdip.test',
      ]);
    });
  });
});
