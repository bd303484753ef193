import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TRANSITIONS, VM_OPERATIONS, VM_STATES } from '../../lifecycle/index.ts';
import type { Vm } from '../../core/api-shapes.ts';
import { ACTION_STATES, VM_ACTIONS, consequence } from './vm-actions.ts';

const vm = (over: Partial<Vm> = {}): Vm => ({
  subscription: 'contoso',
  service: 'shop',
  name: 'web1',
  state: 'running',
  dip: '127.16.1.9',
  host: 'rack1-host1',
  rack: 'rack1',
  subnet: 'front',
  vnet: 'shop-net',
  staticDip: null,
  ilpip: null,
  ilpipEnabled: false,
  workload: null,
  endpoints: [],
  fqdns: { internal: 'web1.shop.internal.vipdip.test', public: null },
  ...over,
});

describe("the dashboard's VM actions", () => {
  test("are offered in exactly the states the lifecycle's transition table accepts", () => {
    assert.deepEqual([...VM_ACTIONS].sort(), [...VM_OPERATIONS].sort());
    for (const op of VM_OPERATIONS) {
      const accepted = VM_STATES.filter((s) => s in TRANSITIONS[op]);
      assert.deepEqual([...ACTION_STATES[op]].sort(), [...accepted].sort(), op);
    }
  });

  test('the confirmation of deallocating the last allocated VM says the VIP goes', () => {
    const text = consequence('deallocate', vm(), { vip: '127.100.0.7', reservedIp: null }, 1);
    assert.match(text, /releases its DIP 127\.16\.1\.9/);
    assert.match(text, /the VIP 127\.100\.0\.7 goes back to the pool/);
  });

  test('but not when another VM holds it, or a reserved IP keeps it', () => {
    assert.doesNotMatch(consequence('deallocate', vm(), { vip: '127.100.0.7', reservedIp: null }, 2), /VIP/);
    assert.doesNotMatch(consequence('deallocate', vm(), { vip: '127.100.0.7', reservedIp: 'ip' }, 1), /VIP/);
  });

  test('starting a deallocated VM says where its DIP comes from', () => {
    const d = vm({ state: 'deallocated', dip: null, host: null });
    assert.match(consequence('start', d, { vip: null, reservedIp: null }, 0), /drawn at random.*gets a VIP/);
    assert.match(
      consequence('start', { ...d, staticDip: '127.16.1.50' }, { vip: 'x', reservedIp: null }, 1),
      /static 127\.16\.1\.50/,
    );
  });
});
