import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { helperInput, setnsSyscall, vmLinkOps } from './vm-links.ts';
import { EMPTY_WORLD, planWorld, vmNamespace, worldSpec } from './world.ts';
import { P, vm, vnets } from './testdata/world-fixtures.ts';

describe('the VM-links helper', () => {
  // If planWorld ever writes a VM line the helper cannot send, that VM would quietly fall back to a
  // process per namespace: these tests fail instead.
  test('every line planWorld writes for a new VM is one of its operations', () => {
    const plan = planWorld(EMPTY_WORLD, worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []));
    assert.deepEqual(vmLinkOps(plan.vms.get(vmNamespace(P, 'web/web1'))!), [
      { op: 'up', dev: 'lo' },
      { op: 'addrgen-none', dev: 'eth0' },
      { op: 'up', dev: 'eth0' },
      { op: 'addr-add', dev: 'eth0', address: '10.1.0.4', prefix: 24 },
      { op: 'route-add', gateway: '10.1.0.1' },
    ]);
  });

  test('so is every line of a DIP change and of a move to another VNet', () => {
    const a = worldSpec(P, [vm('web1', '10.1.0.4')], vnets, []);
    const moved = planWorld(
      a,
      worldSpec(P, [vm('web1', '10.2.0.4', 's1/other', '10.2.0.0/16')], vnets, [], a),
    );
    assert.deepEqual(vmLinkOps(moved.vms.get(vmNamespace(P, 'web/web1'))!), [
      { op: 'addr-flush', dev: 'eth0' },
      { op: 'addr-add', dev: 'eth0', address: '10.2.0.4', prefix: 16 },
      { op: 'route-replace', gateway: '10.2.0.1' },
    ]);
  });

  test('any other line, or a malformed one, leaves the job to ip', () => {
    for (const line of [
      'link add d0 type bridge',
      'link set eth0 down',
      'addr add 10.1.0.4 dev eth0',
      'addr add 10.1.0.256/24 dev eth0',
      'addr add 10.1.0.4/33 dev eth0',
      'addr add 10.1.0.4/24 dev eth0 label x',
      'route add 10.0.0.0/8 via 10.1.0.1',
      'route add default via 10.1.0.01',
      'link set a-very-long-device-name up',
      'link set eth0 up; reboot',
    ])
      assert.equal(vmLinkOps(['link set lo up', line]), undefined, line);
  });

  test('its input: a job per namespace, an operation per line, an empty line after each', () => {
    assert.equal(
      helperInput([
        [
          'ns1',
          [
            { op: 'up', dev: 'lo' },
            { op: 'addr-add', dev: 'eth0', address: '10.1.0.4', prefix: 24 },
          ],
        ],
        ['ns2', [{ op: 'route-replace', gateway: '10.1.0.1' }]],
      ]),
      'ns ns1\nup lo\naddr-add eth0 10.1.0.4 24\n\nns ns2\nroute-replace 10.1.0.1\n\n',
    );
  });

  test('setns has its number on the architectures Linux runs on', () => {
    if (process.platform !== 'linux') return;
    assert.equal(setnsSyscall('x64'), 308);
    assert.equal(setnsSyscall('arm64'), 268);
    assert.equal(setnsSyscall('mips'), undefined);
  });
});
