/**
 * ipBatchEach against the kernel: the VM side of many links goes in through a few shells, each
 * namespace gets its own lines and no other's, and a failing line rejects with ip's own message.
 * Root only; the namespaces are this test's and are deleted when it ends, pass or fail. Addresses:
 * 10.77.0.0/16, on bridge devices inside those namespaces only.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ipBatchEach } from '../../src/dataplane/netns/world.ts';
import { ip, makeNamespace, requireNetns, testPrefix } from '../support/netns.ts';

test('ipBatchEach runs each namespace its own lines, through a few shells', async (t) => {
  if (!requireNetns(t)) return;
  const names = Array.from({ length: 7 }, (_, i) => makeNamespace(t, testPrefix(`b${i}`)));
  const jobs = new Map(
    names.map((ns, i) => [
      ns,
      ['link set lo up', 'link add d0 type bridge', 'link set d0 up', `addr add 10.77.0.${i + 1}/24 dev d0`],
    ]),
  );
  await ipBatchEach(jobs, 3);
  names.forEach((ns, i) => {
    const addrs = ip('-n', ns, '-4', '-o', 'addr', 'show', 'dev', 'd0');
    assert.match(addrs, new RegExp(`inet 10\\.77\\.0\\.${i + 1}/24 `), ns);
    assert.equal(addrs.trim().split('\n').length, 1, `${ns} holds only its own address`);
  });
});

test('a failing line rejects with the message of ip and its namespace, not with the script', async (t) => {
  if (!requireNetns(t)) return;
  const ns = makeNamespace(t, testPrefix('bf'));
  await assert.rejects(ipBatchEach(new Map([[ns, ['link set nosuchdev up']]]), 2), (e: Error) => {
    assert.match(e.message, /^ip -batch in VM namespaces: .*(nosuchdev|Cannot find device)/);
    assert.doesNotMatch(e.message, /while IFS/);
    assert.ok(e.message.includes(`in ${ns}`), `the message names the namespace: ${e.message}`);
    return true;
  });
  await assert.rejects(ipBatchEach(new Map([[ns, ['link set lo up', '']]]), 2), /cannot be passed/);
});
