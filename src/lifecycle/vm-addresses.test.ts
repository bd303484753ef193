import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Ipv4 } from '../core/ip.ts';
import { dipSource, redrawsOnMove, releasePlan } from './vm-addresses.ts';

const A = 2130706433 as Ipv4; // 127.0.0.1
const B = 2130706434 as Ipv4;
const running = { dip: A, static_dip: null, host_id: 1, ilpip: null, ilpip_enabled: false };

test('a start binds the static DIP when the VM has one, and draws otherwise', () => {
  assert.deepEqual(dipSource({ static_dip: B }), { kind: 'static', ip: B });
  assert.deepEqual(dipSource({ static_dip: null }), { kind: 'draw' });
});

test('deallocating gives a drawn DIP back, leaves its host, and says both', () => {
  assert.deepEqual(releasePlan(running), { free: A, dipEvent: true, hostEvent: true, mayHoldIlpip: false });
});

test('deallocating keeps a static DIP reserved for the VM, but still says the VM no longer holds it', () => {
  const plan = releasePlan({ ...running, dip: B, static_dip: B });
  assert.equal(plan.free, null);
  assert.ok(plan.dipEvent);
});

test('a VM without DIP or host (never placed) gives back and says nothing of them', () => {
  assert.deepEqual(releasePlan({ ...running, dip: null, host_id: null }), {
    free: null,
    dipEvent: false,
    hostEvent: false,
    mayHoldIlpip: false,
  });
});

test('only a VM with an ILPIP enabled, or still holding one, is looked at for it', () => {
  assert.ok(releasePlan({ ...running, ilpip_enabled: true }).mayHoldIlpip);
  assert.ok(releasePlan({ ...running, ilpip: B }).mayHoldIlpip);
});

test('a move redraws a dynamic DIP unless the network keeps DIPs on moves; a static one never', () => {
  assert.ok(redrawsOnMove({ dip: A, static_dip: null }, 'redraw'));
  assert.ok(!redrawsOnMove({ dip: A, static_dip: null }, 'keep'));
  assert.ok(!redrawsOnMove({ dip: A, static_dip: A }, 'redraw'));
  assert.ok(!redrawsOnMove({ dip: null, static_dip: null }, 'redraw'));
});
