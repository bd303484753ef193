import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isLoopbackAddress, listenAddresses } from './control-plane.ts';

test('loopback addresses, and only those', () => {
  for (const a of ['127.0.0.1', '127.255.0.9', '::1', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
    assert.equal(isLoopbackAddress(a), true, a);
  for (const a of ['10.0.0.1', '0.0.0.0', '::', '::ffff:10.0.0.1', '128.0.0.1', 'localhost'])
    assert.equal(isLoopbackAddress(a), false, a);
});

test('a name is loopback only when every address it resolves to is', async () => {
  const resolver = (table: Record<string, string[]>) => (h: string) =>
    table[h] === undefined
      ? Promise.reject(Object.assign(new Error('nx'), { code: 'ENOTFOUND' }))
      : Promise.resolve(table[h]);
  const r = resolver({
    'loop.test': ['127.0.0.1', '::1'],
    '127.evil.test': ['203.0.113.7'],
    'mixed.test': ['127.0.0.1', '198.51.100.1'],
  });
  assert.deepEqual(await listenAddresses('loop.test', r), {
    addresses: ['127.0.0.1', '::1'],
    loopback: true,
  });
  assert.equal((await listenAddresses('127.evil.test', r)).loopback, false);
  assert.equal((await listenAddresses('mixed.test', r)).loopback, false);
  assert.equal((await listenAddresses('127.0.0.1', r)).loopback, true);
  await assert.rejects(listenAddresses('nowhere.test', r), /does not resolve \(ENOTFOUND\)/);
});
