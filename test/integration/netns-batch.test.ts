/**
 * ipBatchEach against the kernel: the VM side of many links goes in through a few shells, or through
 * the VM-links helper (perl, rtnetlink) with the same result as ip's; each namespace gets its own
 * lines and no other's, and a failing line rejects with the kernel's message and its namespace.
 * Root only; the namespaces are this test's and are deleted when it ends, pass or fail. Addresses:
 * 10.77.0.0/16, on bridge devices inside those namespaces only.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
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

for (const helper of [true, false])
  test(`a failing line rejects with the kernel's message and its namespace, not with the script (${helper ? 'helper' : 'ip'})`, async (t) => {
    if (!requireNetns(t)) return;
    const ns = makeNamespace(t, testPrefix(helper ? 'bfh' : 'bfi'));
    await assert.rejects(
      ipBatchEach(new Map([[ns, ['link set nosuchdev up']]]), 2, { helper }),
      (e: Error) => {
        if (helper) assert.match(e.message, /^rtnetlink in VM namespaces: .*up nosuchdev: No such device/);
        else assert.match(e.message, /^ip -batch in VM namespaces: .*(nosuchdev|Cannot find device)/);
        assert.doesNotMatch(e.message, /while IFS|use strict/);
        assert.ok(e.message.includes(`in ${ns}`), `the message names the namespace: ${e.message}`);
        return true;
      },
    );
    // An address taken already: the kernel's EEXIST, as ip reports it.
    await ipBatchEach(new Map([[ns, ['addr add 10.77.1.1/24 dev lo']]]), 2, { helper: false });
    await assert.rejects(
      ipBatchEach(new Map([[ns, ['addr add 10.77.1.1/24 dev lo']]]), 2, { helper }),
      /File exists|already assigned/,
    );
    await assert.rejects(
      ipBatchEach(new Map([[ns, ['link set lo up', '']]]), 2, { helper }),
      /cannot be passed/,
    );
  });

/** A router namespace with a bridge (gateway 10.77.0.1/24) and VM namespaces with a veth into it. */
function smallWorld(t: TestContext, tag: string, vms: number): string[] {
  const router = makeNamespace(t, testPrefix(`${tag}r`));
  const names = Array.from({ length: vms }, (_, i) => makeNamespace(t, testPrefix(`${tag}${i}`)));
  ip('-n', router, 'link', 'add', 'br0', 'type', 'bridge');
  ip('-n', router, 'addr', 'add', '10.77.0.1/24', 'dev', 'br0');
  ip('-n', router, 'link', 'set', 'br0', 'up');
  names.forEach((ns, i) => {
    ip('-n', router, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
    ip('-n', router, 'link', 'set', `v${i}`, 'master', 'br0', 'up');
  });
  return names;
}

/** What a VM namespace holds, without what differs between two equal setups (indexes, MACs). */
function vmLinks(ns: string) {
  const links = (JSON.parse(ip('-n', ns, '-j', 'link', 'show')) as { ifname: string; flags: string[] }[]).map(
    (l) => ({ ifname: l.ifname, up: l.flags.includes('UP') }),
  );
  const addrs = (
    JSON.parse(ip('-n', ns, '-j', 'addr', 'show')) as {
      ifname: string;
      addr_info: { family: string; local: string; prefixlen: number; scope: string }[];
    }[]
  ).map((a) => ({
    ifname: a.ifname,
    addrs: a.addr_info.map((i) => `${i.family} ${i.local}/${i.prefixlen} ${i.scope}`),
  }));
  const routes = ip('-n', ns, 'route', 'show', 'table', 'all')
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .sort();
  return { links, addrs, routes };
}

test('the helper leaves the same links, addresses and routes as ip, new and readdressed', async (t) => {
  if (!requireNetns(t)) return;
  const [viaHelper, viaIp] = [smallWorld(t, 'wh', 3), smallWorld(t, 'wi', 3)];
  const fresh = (i: number) => [
    'link set lo up',
    'link set eth0 addrgenmode none',
    'link set eth0 up',
    `addr add 10.77.0.${i + 10}/24 dev eth0`,
    'route add default via 10.77.0.1',
  ];
  await ipBatchEach(new Map(viaHelper.map((ns, i) => [ns, fresh(i)])), 2);
  await ipBatchEach(new Map(viaIp.map((ns, i) => [ns, fresh(i)])), 2, { helper: false });
  viaHelper.forEach((ns, i) => {
    const got = vmLinks(ns);
    assert.deepEqual(got, vmLinks(viaIp[i]!), ns);
    assert.ok(got.addrs.find((a) => a.ifname === 'eth0')!.addrs.includes(`inet 10.77.0.${i + 10}/24 global`));
    // No IPv6 link-local address: addrgenmode none went in before the link came up.
    assert.ok(!got.addrs.some((a) => a.ifname === 'eth0' && a.addrs.some((x) => x.startsWith('inet6'))));
    assert.ok(got.routes.includes('default via 10.77.0.1 dev eth0'), got.routes.join(' | '));
  });
  const readdress = [
    'addr flush dev eth0',
    'addr add 10.77.0.99/24 dev eth0',
    'route replace default via 10.77.0.1',
  ];
  // A second address on eth0 (as a VM moved twice between changes could not have, but flush must take it).
  ip('-n', viaHelper[0]!, 'addr', 'add', '10.77.0.50/24', 'dev', 'eth0');
  ip('-n', viaIp[0]!, 'addr', 'add', '10.77.0.50/24', 'dev', 'eth0');
  await ipBatchEach(new Map([[viaHelper[0]!, readdress]]), 2);
  await ipBatchEach(new Map([[viaIp[0]!, readdress]]), 2, { helper: false });
  const after = vmLinks(viaHelper[0]!);
  assert.deepEqual(after, vmLinks(viaIp[0]!));
  assert.deepEqual(after.addrs.find((a) => a.ifname === 'eth0')!.addrs, ['inet 10.77.0.99/24 global']);
});
