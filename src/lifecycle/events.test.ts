import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  EVENT_CATALOG,
  EVENT_TYPES,
  VM_OPERATION_EVENTS,
  addressField,
  affectsDataPlane,
  affectsDns,
  eventKind,
  events,
  isEventType,
  parseResource,
  resources,
} from './events.ts';

const at = { subscription: 'contoso', service: 'shop', vm: 'web1' };
/** As the log stores a payload. */
const stored = (o: unknown) => (o === null ? null : JSON.stringify(o));

test('constructors build the stored shapes, key order included', () => {
  const created = events.vmCreated(at, { subnet: 'front', staticDip: null, ilpip: true });
  assert.equal(created.type, 'vm.created');
  assert.equal(created.resource, 'vm/shop/web1');
  assert.equal(created.reason, 'create');
  assert.equal(stored(created.old), null);
  assert.equal(stored(created.new), '{"subnet":"front","staticDip":null,"ilpip":true}');

  const vnet = events.vnetCreated('contoso', 'net', {
    addressSpace: ['10.0.0.0/16'],
    dipPolicy: 'random',
    movePolicy: 'redraw',
  });
  assert.equal(vnet.resource, 'vnet/contoso/net');
  assert.equal(
    stored(vnet.new),
    '{"addressSpace":["10.0.0.0/16"],"dipPolicy":"random","movePolicy":"redraw"}',
  );

  const assoc = events.reservedIpAssociated('contoso', 'fixed', 'shop');
  assert.deepEqual(
    { resource: assoc.resource, reason: assoc.reason, new: assoc.new },
    { resource: 'reserved-ip/contoso/fixed', reason: 'associate with shop', new: { service: 'shop' } },
  );
  const vip = events.serviceVip('contoso', 'shop', 'first VM allocated (start)', null, '127.0.0.9');
  assert.deepEqual([vip.old, vip.new, vip.subscription], [{ vip: null }, { vip: '127.0.0.9' }, 'contoso']);
  assert.equal(events.poolCreated('127.0.0.0/24').subscription, null);
});

test('each operation that keeps its VM appends its own event, with the states it went between', () => {
  assert.deepEqual(VM_OPERATION_EVENTS, {
    start: 'vm.started',
    stop: 'vm.stopped',
    deallocate: 'vm.deallocated',
    restart: 'vm.restarted',
    redeploy: 'vm.redeployed',
  });
  const e = events.vmState('deallocate', at, 'deallocate', 'running', 'deallocated');
  assert.equal(e.type, 'vm.deallocated');
  assert.deepEqual([e.old, e.new], [{ state: 'running' }, { state: 'deallocated' }]);
});

test('every type is listed once, its kind the first part of its name', () => {
  assert.equal(new Set(EVENT_TYPES).size, EVENT_TYPES.length);
  for (const t of EVENT_TYPES) {
    const prefix = t.split('.')[0];
    const kind = EVENT_CATALOG[t].kind;
    assert.ok(prefix === kind || (prefix === 'subnet' && kind === 'vnet'), `${t} is of kind ${kind}`);
  }
  assert.ok(isEventType('vm.dip'));
  assert.ok(!isEventType('vm.teleported'));
  assert.ok(!isEventType('toString'));
  assert.equal(eventKind('subnet.created'), 'vnet');
  assert.equal(eventKind('vm.teleported'), undefined);
});

test('the address events are the four that fsck replays', () => {
  const withAddress = EVENT_TYPES.filter((t) => addressField(t) !== undefined);
  assert.deepEqual(withAddress.sort(), ['reserved-ip.address', 'service.vip', 'vm.dip', 'vm.ilpip']);
  assert.equal(addressField('vm.ilpip'), 'ilpip');
  assert.equal(addressField('reserved-ip.address'), 'address');
});

test('the data plane follows VMs, services, reserved IPs, images and maintenance; an unknown type counts', () => {
  const before = (type: string) =>
    type.startsWith('vm.') ||
    type.startsWith('service.') ||
    type.startsWith('reserved-ip.') ||
    type === 'host.maintenance' ||
    type.startsWith('image.');
  for (const t of EVENT_TYPES) assert.equal(affectsDataPlane(t), before(t), t);
  assert.ok(affectsDataPlane('vm.teleported'));
});

test('DNS follows names and addresses of services and VMs, not their states or hosts', () => {
  assert.ok(affectsDns('vm.dip'));
  assert.ok(affectsDns('vm.ilpip'));
  assert.ok(affectsDns('vm.updated'), 'enabling an ILPIP adds a public name');
  assert.ok(affectsDns('service.vip'));
  assert.ok(affectsDns('vm.created') && affectsDns('vm.deleted'));
  assert.ok(!affectsDns('vm.host'));
  assert.ok(!affectsDns('vm.stopped'));
  assert.ok(!affectsDns('pool.created'));
  assert.ok(affectsDns('something.new'));
});

test('a resource parses back into what its constructor was given', () => {
  assert.deepEqual(parseResource(resources.vm('shop', 'web1')), { kind: 'vm', service: 'shop', vm: 'web1' });
  assert.deepEqual(parseResource(resources.service('shop')), { kind: 'service', service: 'shop' });
  assert.deepEqual(parseResource(resources.pool('127.0.0.0/24')), { kind: 'pool', cidr: '127.0.0.0/24' });
  assert.deepEqual(parseResource(resources.subnet('c', 'net', 'front')), {
    kind: 'vnet',
    subscription: 'c',
    vnet: 'net',
    subnet: 'front',
  });
  assert.deepEqual(parseResource(resources.vnet('c', 'net')), {
    kind: 'vnet',
    subscription: 'c',
    vnet: 'net',
    subnet: null,
  });
  assert.deepEqual(parseResource(resources.reservedIp('c', 'fixed')), {
    kind: 'reserved-ip',
    subscription: 'c',
    name: 'fixed',
  });
  assert.deepEqual(parseResource(resources.rack('r1')), { kind: 'rack', name: 'r1' });
  assert.equal(parseResource('vm/only-one'), undefined);
  assert.equal(parseResource('planet/earth'), undefined);
});
