import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Event as ApiEvent } from '../../core/api-shapes.ts';
import { changeOf, describeChange, isAddressChange } from './describe.ts';

const ev = (type: string, old: ApiEvent['old'], now: ApiEvent['new']): ApiEvent => ({
  seq: 1,
  time: '2026-01-01T00:00:00.000Z',
  type,
  subscription: 'contoso',
  resource: 'vm/shop/web1',
  reason: 'start',
  old,
  new: now,
});

test('address events read as the address that changed, from and to', () => {
  assert.deepEqual(changeOf(ev('vm.dip', { dip: null }, { dip: '127.16.1.7' })), {
    what: 'DIP',
    from: '—',
    to: '127.16.1.7',
  });
  assert.equal(
    describeChange(ev('service.vip', { vip: '127.100.0.1' }, { vip: null })),
    'VIP 127.100.0.1 → —',
  );
  assert.ok(isAddressChange(ev('vm.ilpip', null, null)));
  assert.ok(!isAddressChange(ev('vm.started', null, null)));
});

test('other events read as their one changed field, or as their fields', () => {
  assert.equal(
    describeChange(ev('vm.started', { state: 'deallocated' }, { state: 'running' })),
    'state deallocated → running',
  );
  assert.equal(
    describeChange(ev('vm.created', null, { subnet: 'front', staticDip: null })),
    'created — → subnet front, staticDip —',
  );
  assert.equal(changeOf(ev('subscription.created', null, null)), null);
});
