/**
 * Overlapping address spaces in the netns driver (root only): two subscriptions with the same VNet
 * address space (10.1.0.0/16) and the same DIPs, each behind its own router namespace. Each VIP
 * answers with its own subscription's VM; a VM reaches its own subscription's DIPs and never the
 * other's; R6 holds across and within subscriptions (the callee sees the caller's VIP, though both
 * callers have the same DIP); a VM calling its own service's VIP lands on itself; probes run in the
 * router of the subscription they name. Every namespace carries this test's prefix and is removed
 * when it ends, pass or fail; all addresses live inside those namespaces.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { inNamespace } from '../../src/agent/sandbox.ts';
import { VIPDIP_BIN } from '../../src/cli/up-options.ts';
import { NetnsDriver } from '../../src/dataplane/index.ts';
import { namespacesWithPrefix, removeWorld, vmNamespace } from '../../src/dataplane/netns/world.ts';
import {
  BACKEND_PORT,
  VIP_PORT,
  clientIn,
  requireNetns,
  sampleDesired,
  testPrefix,
  type SampleVm,
} from '../support/netns.ts';

const CLIENT = '198.18.255.2';
/** The same DIPs in both subscriptions; s2 has one more, at an address s1 leaves unused. */
const VMS: SampleVm[] = [
  { subscription: 's1', service: 'web', vm: 'web1', dip: '10.1.0.4' },
  { subscription: 's1', service: 'app', vm: 'app1', dip: '10.1.0.5' },
  { subscription: 's2', service: 'blog', vm: 'blog1', dip: '10.1.0.4' },
  { subscription: 's2', service: 'shop', vm: 'shop1', dip: '10.1.0.5' },
  { subscription: 's2', service: 'extra', vm: 'extra1', dip: '10.1.5.4' },
];
const VIPS: Record<string, string> = {
  web: '198.18.0.10',
  app: '198.18.0.11',
  blog: '198.18.0.20',
  shop: '198.18.0.21',
  extra: '198.18.0.22',
};
const CIDRS = { s1: '10.1.0.0/16', s2: '10.1.0.0/16' };
const desired = () => sampleDesired(VMS, () => true, VIPS, CIDRS);

async function startBackends(t: TestContext, driver: NetnsDriver): Promise<void> {
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });
  await Promise.all(
    VMS.map(async (v) => {
      const wrapped = driver.wrapWorkload(v, {
        command: process.execPath,
        args: ['test/fixtures/netns-backend.mjs', v.vm, v.dip, String(BACKEND_PORT)],
      });
      const cmd = inNamespace(wrapped.netns!, wrapped, undefined);
      const c = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(c);
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: c.stdout }).once('line', () => resolve());
        c.once('exit', (code) => reject(new Error(`backend ${v.vm} exited with ${code}`)));
      });
    }),
  );
}

test('two subscriptions with the same address space and the same DIPs', async (t) => {
  if (!requireNetns(t)) return;
  const prefix = testPrefix('o');
  t.after(async () => {
    await removeWorld(prefix);
  });
  const driver = new NetnsDriver({
    prefix,
    proberCommand: { command: process.execPath, args: [VIPDIP_BIN, 'workload', 'netns-prober'] },
  });
  t.after(() => driver.close());
  const r = await driver.reconcile(desired());
  assert.deepEqual(r.failed, [], 'overlapping VNets of two subscriptions are not refused');
  const s1 = driver.router('s1')!;
  const s2 = driver.router('s2')!;
  assert.notEqual(s1.ns, s2.ns);
  await startBackends(t, driver);
  const ns = (service: string, vm: string) => vmNamespace(prefix, `${service}/${vm}`);

  await t.test('each VIP answers from the internet with its own subscription VM, equal DIPs or not', () => {
    const answers = clientIn(
      driver.names.internet,
      ['web', 'app', 'blog', 'shop', 'extra'].map((s) => `${VIPS[s]} ${VIP_PORT}`),
    );
    assert.deepEqual(answers, [
      `web1 ${CLIENT}`,
      `app1 ${CLIENT}`,
      `blog1 ${CLIENT}`,
      `shop1 ${CLIENT}`,
      `extra1 ${CLIENT}`,
    ]);
  });

  await t.test("a VM reaches its own subscription's DIPs, never the other's", () => {
    // The same DIP is its own subscription's VM from either side.
    assert.equal(clientIn(ns('app', 'app1'), [`10.1.0.4 ${BACKEND_PORT}`])[0], 'web1 10.1.0.5');
    assert.equal(clientIn(ns('shop', 'shop1'), [`10.1.0.4 ${BACKEND_PORT}`])[0], 'blog1 10.1.0.5');
    // s2's extra DIP answers inside s2 (the control: the check below can fail)...
    assert.equal(clientIn(ns('shop', 'shop1'), [`10.1.5.4 ${BACKEND_PORT}`])[0], 'extra1 10.1.0.5');
    // ...and is no host at all for s1, whose VNet has the same space.
    assert.match(clientIn(ns('app', 'app1'), [`10.1.5.4 ${BACKEND_PORT}`])[0]!, /^error /);
  });

  await t.test(
    "R6: the callee sees the caller's VIP, across subscriptions and within one, from equal DIPs",
    () => {
      // app1 (s1) and shop1 (s2) both have DIP 10.1.0.5: SNAT is keyed by subscription.
      assert.equal(clientIn(ns('app', 'app1'), [`${VIPS.blog} ${VIP_PORT}`])[0], `blog1 ${VIPS.app}`);
      assert.equal(clientIn(ns('shop', 'shop1'), [`${VIPS.web} ${VIP_PORT}`])[0], `web1 ${VIPS.shop}`);
      assert.equal(clientIn(ns('app', 'app1'), [`${VIPS.web} ${VIP_PORT}`])[0], `web1 ${VIPS.app}`);
      assert.equal(clientIn(ns('shop', 'shop1'), [`${VIPS.blog} ${VIP_PORT}`])[0], `blog1 ${VIPS.shop}`);
    },
  );

  await t.test('a VM calling its own service VIP lands on itself, seen as its VIP', () => {
    assert.equal(clientIn(ns('web', 'web1'), [`${VIPS.web} ${VIP_PORT}`])[0], `web1 ${VIPS.web}`);
    assert.equal(clientIn(ns('blog', 'blog1'), [`${VIPS.blog} ${VIP_PORT}`])[0], `blog1 ${VIPS.blog}`);
  });

  await t.test('probes run in the router of the subscription they name', async () => {
    const probe = (network: string, address: string) =>
      driver.prober!(
        { protocol: 'tcp', network, address, port: BACKEND_PORT, intervalMs: 1000, timeoutMs: 2000 },
        2000,
      );
    assert.equal((await probe('s2', '10.1.5.4')).ok, true);
    assert.equal((await probe('s1', '10.1.5.4')).ok, false);
    assert.equal((await probe('s1', '10.1.0.4')).ok, true);
  });

  await t.test(
    'a subscription gone takes its router and VMs with it; the other keeps answering',
    async () => {
      const r2 = await driver.reconcile(
        sampleDesired(
          VMS.filter((v) => v.subscription === 's1'),
          () => true,
          VIPS,
          CIDRS,
        ),
      );
      assert.deepEqual(r2.failed, []);
      const left = await namespacesWithPrefix(prefix);
      assert.ok(!left.includes(s2.ns), left.join(' '));
      assert.ok(!left.includes(ns('blog', 'blog1')), left.join(' '));
      assert.ok(left.includes(s1.ns), left.join(' '));
      const [web, blog] = clientIn(driver.names.internet, [
        `${VIPS.web} ${VIP_PORT}`,
        `${VIPS.blog} ${VIP_PORT}`,
      ]);
      assert.equal(web, `web1 ${CLIENT}`);
      // The core no longer routes s2's VIP: the internet gets no answer.
      assert.match(blog!, /^error /);
    },
  );
});
