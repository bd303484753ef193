import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isVipdipError, parseCidr } from '../core/index.ts';
import { checkLoopbackPlan } from './local.ts';
import { createDriver } from './create.ts';
import { netnsUnsupported } from './netns/driver.ts';

describe('the local driver address plan', () => {
  test('blocks inside 127.0.0.0/8 are accepted, up to the whole of it', () => {
    for (const c of ['127.0.0.0/8', '127.16.0.0/16', '127.100.0.0/16', '127.255.255.252/30']) {
      assert.doesNotThrow(() => checkLoopbackPlan(parseCidr(c), 'x'));
    }
  });

  test('a block outside it, or wider than it, is refused with a message that names the netns driver', () => {
    for (const c of ['10.0.0.0/16', '126.0.0.0/8', '128.0.0.0/16', '0.0.0.0/0', '64.0.0.0/2']) {
      assert.throws(
        () => checkLoopbackPlan(parseCidr(c), 'virtual network shop-net'),
        (e: unknown) =>
          isVipdipError(e, 'DRIVER_UNSUPPORTED') &&
          e.message.includes(c) &&
          e.message.includes('virtual network shop-net') &&
          e.message.includes('netns'),
      );
    }
  });

  test('the netns driver is refused with its reason where it cannot run (not Linux, not root), an unknown one as invalid', () => {
    const why = netnsUnsupported();
    if (why === undefined)
      assert.equal(createDriver('netns', { stateDir: '/nonexistent-test-dir' }).name, 'netns');
    else {
      assert.throws(
        () => createDriver('netns'),
        (e: unknown) => isVipdipError(e, 'DRIVER_UNSUPPORTED') && e.message.includes(why),
      );
    }
    assert.throws(
      () => createDriver('ebpf'),
      (e: unknown) => isVipdipError(e, 'INVALID_ARGUMENT'),
    );
    assert.equal(createDriver('none').carriesTraffic, false);
  });
});
