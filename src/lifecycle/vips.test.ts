import assert from 'node:assert/strict';
import { test } from 'node:test';
import { vipAction } from './vips.ts';

test('R3: the first allocated VM draws the VIP, the last one gone gives it back', () => {
  assert.equal(vipAction({ reservedIp: false, hasVip: false, allocatedVms: 1 }), 'draw');
  assert.equal(vipAction({ reservedIp: false, hasVip: true, allocatedVms: 0 }), 'free');
});

test('R3: a VIP stays while any VM is allocated, and none is drawn for a service without one', () => {
  assert.equal(vipAction({ reservedIp: false, hasVip: true, allocatedVms: 3 }), 'keep');
  assert.equal(vipAction({ reservedIp: false, hasVip: false, allocatedVms: 0 }), 'keep');
});

test('R1: a service with a reserved IP keeps it whatever its VMs do', () => {
  assert.equal(vipAction({ reservedIp: true, hasVip: true, allocatedVms: 0 }), 'keep');
  assert.equal(vipAction({ reservedIp: true, hasVip: true, allocatedVms: 2 }), 'keep');
});
