import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TcpConnectionLimiter } from './tcp-limits.ts';

describe('DNS over TCP connection limits', () => {
  test('one client address holds at most its share; others are not affected', () => {
    const l = new TcpConnectionLimiter<number>({ perClient: 8, total: 128 });
    for (let i = 0; i < 8; i++)
      assert.deepEqual(l.admit(i, '127.0.0.9', i), { admitted: true, evict: undefined });
    assert.deepEqual(l.admit(8, '127.0.0.9', 8), { admitted: false, reason: 'per-client limit' });
    assert.equal(l.heldBy('127.0.0.9'), 8);
    assert.equal(l.admit(100, '127.0.0.10', 9).admitted, true);
    l.remove(3);
    l.remove(3);
    assert.equal(l.admit(9, '127.0.0.9', 10).admitted, true, 'a closed connection gives its slot back');
  });

  test('at the total, a newcomer evicts the connection idle the longest', () => {
    const l = new TcpConnectionLimiter<string>({ perClient: 8, total: 4 });
    l.admit('a', '127.0.0.1', 0);
    l.admit('b', '127.0.0.2', 1);
    l.admit('c', '127.0.0.3', 2);
    l.admit('d', '127.0.0.4', 3);
    l.touch('a', 10);
    l.touch('c', 11);
    l.touch('d', 12);
    assert.deepEqual(l.admit('e', '127.0.0.5', 13), { admitted: true, evict: 'b' });
    assert.equal(l.size, 4);
    assert.equal(l.heldBy('127.0.0.2'), 0);
    assert.deepEqual(l.admit('f', '127.0.0.6', 14), { admitted: true, evict: 'a' });
  });

  test('limits below one are refused', () => {
    assert.throws(() => new TcpConnectionLimiter({ perClient: 0, total: 4 }), RangeError);
  });
});
