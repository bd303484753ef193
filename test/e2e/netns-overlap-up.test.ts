/**
 * Overlapping address spaces through `vipdip up --driver netns --demo` (root only): a second
 * subscription, northwind, is applied with the same VNet address space as the demo's contoso
 * (10.16.0.0/16, the same subnets, and a VM with db1's static DIP 10.16.2.10, so even their
 * gateways are equal). Its VIP answers from the internet with its own VM; its VM calling contoso's
 * VIP is seen with its own VIP (R6, from a DIP equal to db1's); DNS is scoped by the router a query
 * arrives in, though both ask a gateway of the same address; SIGTERM leaves no namespace (routers
 * included). Everything lives in namespaces named after this test's state directory, removed by
 * prefix when the test ends, pass or fail.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  namespacesWithPrefix,
  removeWorld,
  routerNamespace,
  vmNamespace,
  worldPrefix,
} from '../../src/dataplane/netns/world.ts';
import { requireNetns } from '../support/netns.ts';

const BIN = 'bin/vipdip.js';
const INTERNAL = 'internal.vipdip.test';

const TOPOLOGY = `
subscriptions:
  - name: northwind
    virtualNetworks:
      - name: shop-net
        addressSpace: [10.16.0.0/16]
        subnets:
          - { name: front, cidr: 10.16.1.0/24 }
          - { name: back, cidr: 10.16.2.0/24 }
    cloudServices:
      - name: store
        vnet: shop-net
        vms:
          - name: st1
            subnet: back
            staticDip: 10.16.2.10
            workload: whoami
            endpoints:
              - { name: http, protocol: tcp, publicPort: 8080, localPort: 8000 }
`;

const cli = (state: string, args: string[], input?: string) =>
  spawnSync(process.execPath, [BIN, ...args, '--state', state], {
    encoding: 'utf8',
    timeout: 30_000,
    ...(input !== undefined ? { input } : {}),
  });

const inNs = (ns: string, argv: string[]) =>
  spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 15_000 });

interface Whoami {
  vm: string;
  subscription: string;
  dip: string;
  remoteAddress: string;
}

/** `curl URL` in `ns` until a whoami answers (probes must pass first). */
async function whoami(ns: string, url: string): Promise<Whoami> {
  const deadline = Date.now() + 40_000;
  for (;;) {
    const r = inNs(ns, ['curl', '-s', '-m', '2', url]);
    if (r.status === 0 && r.stdout.includes('"vm"')) return JSON.parse(r.stdout) as Whoami;
    if (Date.now() > deadline) assert.fail(`${url} does not answer in ${ns}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** `dig +short NAME` in `ns`, retried until it gives an address or says NXDOMAIN: the address, or 'NXDOMAIN'. */
async function lookup(ns: string, name: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = inNs(ns, ['dig', '+time=1', '+tries=1', name]);
    const a = /\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)$/m.exec(r.stdout)?.[1];
    if (a !== undefined) return a;
    if (/status: NXDOMAIN/.test(r.stdout)) return 'NXDOMAIN';
    if (Date.now() > deadline) assert.fail(`${name} gets no answer in ${ns}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

test('up --driver netns: a subscription with the same address space as another works beside it', async (t) => {
  if (!requireNetns(t)) return;
  if (spawnSync('dig', ['-v'], { stdio: 'ignore' }).error !== undefined) {
    if (process.env.VIPDIP_REQUIRE_NETNS) throw new Error('netns overlap test needs dig (dnsutils)');
    t.skip('needs dig (dnsutils)');
    return;
  }
  const state = mkdtempSync(join(tmpdir(), 'vipdip-netns-overlap-'));
  const prefix = worldPrefix(state);
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await removeWorld(prefix);
    rmSync(state, { recursive: true, force: true });
  });
  const child = spawn(
    process.execPath,
    [
      BIN,
      'up',
      '--driver',
      'netns',
      '--demo',
      '--state',
      state,
      '--listen',
      '127.0.0.1:0',
      '--dns',
      '127.0.0.1:0',
      '--time-scale',
      '0.1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(child);
  child.stderr.resume();
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ctrl-C stops it')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`up exited with ${code}: ${out}`)));
  });
  const shopVip = /shop\s+VIP (198\.18\.[0-9.]+)/.exec(out)?.[1];
  assert.ok(shopVip !== undefined, out);

  const applied = cli(state, ['apply', '-f', '-'], TOPOLOGY);
  assert.equal(applied.status, 0, applied.stdout + applied.stderr);
  const svc = cli(state, ['get', 'services', 'store', '-o', 'json']);
  assert.equal(svc.status, 0, svc.stderr);
  const storeVip = (JSON.parse(svc.stdout) as { vip: string }).vip;
  assert.match(storeVip, /^198\.18\./);

  // The internet reaches each subscription's VM through its own VIP: st1 and db1 share 10.16.2.10.
  const inet = `${prefix}-inet`;
  const store = await whoami(inet, `http://${storeVip}:8080/`);
  assert.equal(store.vm, 'st1');
  assert.equal(store.subscription, 'northwind');
  assert.equal(store.dip, '10.16.2.10');
  assert.equal((await whoami(inet, `http://${shopVip}:8080/`)).subscription, 'contoso');

  // R6 across subscriptions from a DIP contoso also holds (db1's): contoso's shop sees northwind's VIP.
  const st1 = vmNamespace(prefix, 'store/st1');
  const called = await whoami(st1, `http://${shopVip}:8080/`);
  assert.equal(called.subscription, 'contoso');
  assert.equal(called.remoteAddress, storeVip);

  // DNS: st1 asks its gateway 10.16.2.1 — the same address as contoso's back-subnet gateway — and
  // gets northwind's scope: its own name, not contoso's db1; contoso's web1 the other way round.
  const web1 = vmNamespace(prefix, 'shop/web1');
  assert.equal(await lookup(st1, `st1.store.${INTERNAL}`), '10.16.2.10');
  assert.equal(await lookup(st1, `db1.shop.${INTERNAL}`), 'NXDOMAIN');
  assert.equal(await lookup(web1, `db1.shop.${INTERNAL}`), '10.16.2.10');
  assert.equal(await lookup(web1, `st1.store.${INTERNAL}`), 'NXDOMAIN');

  // A router per subscription; SIGTERM takes everything, routers included.
  const names = await namespacesWithPrefix(prefix);
  for (const sub of ['contoso', 'fabrikam', 'northwind'])
    assert.ok(names.includes(routerNamespace(prefix, sub)), names.join(' '));
  const exited = new Promise((res) => child.once('exit', res));
  child.kill('SIGTERM');
  await exited;
  assert.deepEqual(await namespacesWithPrefix(prefix), []);
});
