/**
 * DNS inside the netns world (root only): `vipdip up --driver netns --demo` with its DNS server on
 * loopback; from inside a VM namespace, the resolver that `ip netns exec` gives it (the per-VM
 * /etc/netns/NS/resolv.conf, naming the VNet gateway) resolves a service's name to its VIP and a VM's
 * internal name to its DIP, and traffic by name works; the internet namespace resolves through the
 * world's end of its link. Answers are scoped by who asks: a VM of another subscription (fabrikam's
 * www1) gets NXDOMAIN for contoso's VM names over UDP and TCP, even when it asks contoso's gateway or
 * forges a scope, and the internet namespace gets the public zone only. SIGTERM leaves no namespace
 * and no /etc/netns directory of the prefix.
 * Everything lives in namespaces named after this test's state directory, removed by prefix when the
 * test ends, pass or fail.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { INTERNET_GATEWAY, removeWorld, vmNamespace, worldPrefix } from '../../src/dataplane/netns/world.ts';
import { requireNetns } from '../support/netns.ts';

const BIN = 'bin/vipdip.js';
const PUBLIC = 'cloudapp.vipdip.test';
const INTERNAL = 'internal.vipdip.test';

/** Runs a command inside namespace `ns`, as `ip netns exec` does (with its /etc/netns files). */
const inNs = (ns: string, argv: string[]) =>
  spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 15_000 });

/** `dig +short NAME` in `ns` (through its resolv.conf, or `@server`), retried until it answers. */
async function resolves(ns: string, name: string, server?: string): Promise<string> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const r = inNs(ns, ['dig', '+short', '+time=1', '+tries=1', ...(server ? [`@${server}`] : []), name]);
    const a = r.stdout.trim();
    if (r.status === 0 && /^\d+\.\d+\.\d+\.\d+$/.test(a)) return a;
    if (Date.now() > deadline) assert.fail(`${name} does not resolve in ${ns}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }
}

/** dig's full answer in `ns`, one try of `seconds`: `status` is NXDOMAIN, NOERROR, …, or undefined for no answer. */
function digIn(
  ns: string,
  name: string,
  ...args: string[]
): { status: string | undefined; a: string[]; out: string } {
  const r = inNs(ns, ['dig', '+time=2', '+tries=1', ...args, name]);
  const out = r.stdout + r.stderr;
  const a = [...r.stdout.matchAll(/\sIN\s+A\s+(\d+\.\d+\.\d+\.\d+)$/gm)].map((m) => m[1]!);
  return { status: /status: ([A-Z]+)/.exec(out)?.[1], a, out };
}

test('up --driver netns: VMs resolve the internal zone through the world, traffic by name works', async (t) => {
  if (!requireNetns(t)) return;
  if (spawnSync('dig', ['-v'], { stdio: 'ignore' }).error !== undefined) {
    if (process.env.VIPDIP_REQUIRE_NETNS) throw new Error('netns DNS test needs dig (dnsutils)');
    t.skip('needs dig (dnsutils)');
    return;
  }
  const state = mkdtempSync(join(tmpdir(), 'vipdip-netns-dns-'));
  const prefix = worldPrefix(state);
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
  t.after(async () => {
    if (child.exitCode === null) child.kill('SIGKILL');
    await removeWorld(prefix);
    rmSync(state, { recursive: true, force: true });
  });
  let out = '';
  child.stderr.resume();
  const exited = new Promise((res) => child.once('exit', res));
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ctrl-C stops it')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`up exited with ${code}: ${out}`)));
  });
  const shopVip = /shop\s+VIP (198\.18\.[0-9.]+)/.exec(out)?.[1];
  assert.ok(shopVip !== undefined, out);

  const web1 = vmNamespace(prefix, 'shop/web1');
  const api = readdirSync('/etc/netns').find((n) => n.startsWith(`${prefix}-`) && n.endsWith('-api1'));
  // The VM's resolv.conf names its gateway (the front subnet's first address) and searches the internal zone.
  const conf = readFileSync(`/etc/netns/${web1}/resolv.conf`, 'utf8');
  assert.match(conf, /^nameserver 10\.16\.1\.1$/m);
  assert.match(conf, new RegExp(`^search ${INTERNAL.replace(/\./g, '\\.')}$`, 'm'));

  // A service's name → its VIP; a VM's internal name → its DIP (db1's is static: 10.16.2.10).
  assert.equal(await resolves(web1, `shop.${PUBLIC}`), shopVip);
  assert.equal(await resolves(web1, `db1.shop.${INTERNAL}`), '10.16.2.10');
  // The search domain: a short name, through the libc resolver (getent), as a workload would.
  const short = inNs(web1, ['getent', 'hosts', 'db1.shop']);
  assert.match(short.stdout, /^10\.16\.2\.10\s/, short.stdout + short.stderr);
  // Over TCP as well.
  const tcp = inNs(web1, ['dig', '+short', '+tcp', '+time=2', `db1.shop.${INTERNAL}`]);
  assert.equal(tcp.stdout.trim(), '10.16.2.10', tcp.stderr);
  // The internet namespace asks the world's end of its link.
  assert.equal(await resolves(`${prefix}-inet`, `shop.${PUBLIC}`, INTERNET_GATEWAY), shopVip);

  // Scoped by who asks. fabrikam's www1 resolves its own VNet's names through its gateway…
  const www1 = vmNamespace(prefix, 'blog/www1');
  assert.match(await resolves(www1, `www2.blog.${INTERNAL}`), /^10\.32\.1\.\d+$/);
  assert.equal(await resolves(www1, `shop.${PUBLIC}`), shopVip, 'and the public zone');
  const db1 = `db1.shop.${INTERNAL}`;
  for (const transport of [[], ['+tcp']]) {
    // …and contoso's VM names are NXDOMAIN to it, exactly as unknown names are.
    const nx = digIn(www1, db1, ...transport);
    assert.equal(nx.status, 'NXDOMAIN', nx.out);
    assert.deepEqual(nx.a, []);
    assert.equal(digIn(www1, `nope.shop.${INTERNAL}`, ...transport).status, 'NXDOMAIN');
    // A scope option of its own naming contoso's VNet is removed by the relay.
    const hex = Buffer.from('vnet contoso/shop-net').toString('hex');
    const forged = digIn(www1, db1, `+ednsopt=65001:${hex}`, ...transport);
    assert.equal(forged.status, 'NXDOMAIN', forged.out);
    // Asking contoso's gateway instead gets no answer at all: the world takes DNS to a gateway
    // only from the gateway's own bridge.
    const other = digIn(www1, db1, '@10.16.1.1', ...transport);
    assert.equal(other.status, undefined, other.out);
    assert.deepEqual(other.a, []);
    // contoso's own VM still resolves it, over either transport.
    assert.deepEqual(digIn(web1, db1, ...transport).a, ['10.16.2.10']);
    // The internet namespace: the public zone only.
    const inet = `${prefix}-inet`;
    const fromInternet = digIn(inet, db1, `@${INTERNET_GATEWAY}`, ...transport);
    assert.equal(fromInternet.status, 'NXDOMAIN', fromInternet.out);
    assert.deepEqual(digIn(inet, `shop.${PUBLIC}`, `@${INTERNET_GATEWAY}`, ...transport).a, [shopVip]);
  }
  // A client without EDNS gets no OPT record back, though the relay added one to carry the scope.
  const plain = digIn(web1, db1, '+noedns');
  assert.deepEqual(plain.a, ['10.16.2.10']);
  assert.doesNotMatch(plain.out, /OPT PSEUDOSECTION/);
  assert.match(digIn(web1, db1).out, /OPT PSEUDOSECTION/, 'one with EDNS does');

  // Traffic by name: from a VM of another service (when the demo has one) or web1 itself, curl the shop by name.
  const from = api ?? web1;
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = inNs(from, ['curl', '-s', '-m', '2', `http://shop.${PUBLIC}:8080/`]);
    if (r.status === 0 && r.stdout.includes('"vm"')) break;
    if (Date.now() > deadline)
      assert.fail(`shop by name does not answer from ${from}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 300));
  }

  child.kill('SIGTERM');
  await exited;
  assert.equal(existsSync(`/etc/netns/${web1}`), false, 'the VM resolv.conf goes with its namespace');
  const left = existsSync('/etc/netns')
    ? readdirSync('/etc/netns').filter((n) => n.startsWith(`${prefix}-`))
    : [];
  assert.deepEqual(left, []);
});
