import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Event as ApiEvent } from '../../core/api-shapes.ts';
import { paths } from './paths.ts';
import { mergeRefresh, refreshFor, refreshForHealth, touches } from './refresh.ts';

const ev = (
  type: string,
  resource: string,
  old: ApiEvent['old'] = null,
  now: ApiEvent['new'] = null,
): ApiEvent => ({
  seq: 1,
  time: '2026-01-01T00:00:00.000Z',
  type,
  subscription: 'contoso',
  resource,
  reason: 'test',
  old,
  new: now,
});

/** Every path the dashboard reads, for the demo's names. */
const KEYS = [
  paths.whoami,
  paths.subscriptions,
  paths.services,
  paths.vms,
  paths.vnets,
  paths.pools,
  paths.hosts,
  paths.service('shop'),
  paths.serviceVms('shop'),
  paths.health('shop'),
  paths.vm('shop', 'web1'),
  paths.logs('shop', 'web1'),
  paths.vm('shop', 'web2'),
  paths.service('api'),
  paths.serviceVms('api'),
  paths.health('api'),
  paths.vnet('contoso', 'shop-net'),
  paths.vnet('fabrikam', 'blog-net'),
  paths.subscriptionReservedIps('contoso'),
];

const touched = (e: ApiEvent) => KEYS.filter((k) => touches(refreshFor(e), k));

describe('what an event refreshes', () => {
  test("a DIP change refetches the VM, the VM lists, its service's health and the subnets; not the pools or another service", () => {
    assert.deepEqual(
      touched(ev('vm.dip', 'vm/shop/web1', { dip: '127.16.1.5' }, { dip: null })).sort(),
      [
        paths.vms,
        paths.vnets,
        paths.serviceVms('shop'),
        paths.health('shop'),
        paths.vm('shop', 'web1'),
        paths.vnet('contoso', 'shop-net'),
      ].sort(),
    );
  });

  test('a VIP change refetches the service and the listing, the pools and its health, and no VM', () => {
    assert.deepEqual(
      touched(ev('service.vip', 'service/shop', { vip: '127.100.0.9' }, { vip: null })).sort(),
      [paths.services, paths.service('shop'), paths.pools, paths.health('shop')].sort(),
    );
  });

  test('a state change refetches the VM and its logs but not the subnets', () => {
    const t = touched(ev('vm.stopped', 'vm/shop/web1', { state: 'running' }, { state: 'stopped' }));
    assert.ok(t.includes(paths.logs('shop', 'web1')));
    assert.ok(!t.includes(paths.vnets));
    assert.ok(!t.includes(paths.vm('shop', 'web2')));
  });

  test('a VM created or deleted refetches its service, whose VM list changed, and the hosts', () => {
    const t = touched(ev('vm.deleted', 'vm/shop/web2', { state: 'running' }));
    for (const k of [paths.service('shop'), paths.services, paths.hosts, paths.vm('shop', 'web2')])
      assert.ok(t.includes(k), k);
  });

  test('a host move refetches the hosts; an ILPIP change the pools', () => {
    assert.ok(touched(ev('vm.host', 'vm/shop/web1')).includes(paths.hosts));
    assert.ok(!touched(ev('vm.host', 'vm/shop/web1')).includes(paths.pools));
    assert.ok(touched(ev('vm.ilpip', 'vm/shop/web1')).includes(paths.pools));
  });

  test('associating a reserved IP refetches both services it moves between', () => {
    const t = touched(
      ev('reserved-ip.associated', 'reserved-ip/contoso/shop-ip', { service: 'api' }, { service: 'shop' }),
    );
    assert.ok(t.includes(paths.service('shop')));
    assert.ok(t.includes(paths.service('api')));
    assert.ok(t.includes(paths.subscriptionReservedIps('contoso')));
  });

  test("a subnet change refetches that subscription's networks only", () => {
    const t = touched(ev('subnet.created', 'vnet/contoso/shop-net/spare'));
    assert.ok(t.includes(paths.vnet('contoso', 'shop-net')));
    assert.ok(!t.includes(paths.vnet('fabrikam', 'blog-net')));
  });

  test('an event of a kind the dashboard does not know refetches everything, rather than leave a page stale', () => {
    assert.deepEqual(touched(ev('vm.teleported', 'widget/x')), KEYS);
    assert.deepEqual(touched(ev('subscription.deleted', 'subscription/contoso')), KEYS);
  });

  test("a health change refetches only that service's health", () => {
    const r = refreshForHealth({
      service: 'shop',
      endpoint: 'http',
      vm: 'web1',
      dip: null,
      state: 'down',
      since: null,
      detail: null,
    });
    assert.deepEqual(
      KEYS.filter((k) => touches(r, k)),
      [paths.health('shop')],
    );
  });

  test('a burst of events merges into one refresh naming each path once', () => {
    const m = mergeRefresh(
      refreshFor(ev('vm.dip', 'vm/shop/web1')),
      refreshFor(ev('vm.host', 'vm/shop/web1')),
      refreshFor(ev('vm.deallocated', 'vm/shop/web1')),
    );
    assert.equal(new Set(m.exact).size, m.exact.length);
    assert.ok(m.exact.includes(paths.hosts) && m.exact.includes(paths.vnets));
  });
});
