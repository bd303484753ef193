import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Ipv4 } from '../core/ip.ts';
import {
  decodeChanges,
  encodeChanges,
  formatScope,
  parseScope,
  poolScope,
  subnetScope,
} from './address-book.ts';

test('a scope formats as the store names it and parses back', () => {
  assert.equal(formatScope(poolScope(7)), 'pool:7');
  assert.equal(formatScope(subnetScope(12)), 'subnet:12');
  assert.deepEqual(parseScope('pool:7'), { kind: 'pool', id: 7 });
  assert.deepEqual(parseScope('subnet:12'), { kind: 'subnet', id: 12 });
  for (const bad of ['pool:', 'pool:x', 'vnet:1', 'subnet:1:2', ''])
    assert.throws(() => parseScope(bad), /no address range/);
});

test('index changes are stored as the short tuples stored logs already hold, and read back', () => {
  const ip = 2130706433 as Ipv4;
  const changes = [
    { op: 'bind', scope: poolScope(1), address: ip },
    { op: 'unbind', scope: subnetScope(2), address: ip },
    { op: 'add-pool', id: 3, cidr: '127.0.0.0/24' },
    { op: 'add-subnet', id: 4, label: 'subnet net/front', cidr: '127.1.0.0/24' },
    { op: 'drop', scope: subnetScope(2) },
  ] as const;
  const text = encodeChanges(changes);
  assert.equal(
    text,
    '[["b","pool:1",2130706433],["u","subnet:2",2130706433],["p",3,"127.0.0.0/24"],' +
      '["s",4,"subnet net/front","127.1.0.0/24"],["x","subnet:2"]]',
  );
  assert.deepEqual(decodeChanges(text), changes);
});
