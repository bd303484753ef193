/**
 * `vipdip up --driver netns --demo` end to end (root only): every VIP the banner names answers from
 * the internet namespace through `vipdip client`; kill -9 of `up` with traffic flowing, then `up`
 * again on the same state converges with no stale namespace, traffic through every VIP again and
 * `fsck` clean; SIGTERM then leaves no namespace of the prefix. Everything lives in namespaces named
 * after this test's state directory, removed by prefix when the test ends, pass or fail.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { namespacesWithPrefix, removeWorld, worldPrefix } from '../../src/dataplane/netns/world.ts';
import { requireNetns } from '../support/netns.ts';

const BIN = 'bin/vipdip.js';

function up(state: string): { child: ChildProcess; banner: Promise<string> } {
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
      'off',
      '--time-scale',
      '0.1',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const banner = new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('Ctrl-C stops it')) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`up exited with ${code}: ${out}`)));
  });
  child.stderr.resume();
  return { child, banner };
}

/** `vipdip client --state S -- curl …` for each VIP, retried until all answer (probes must pass first). */
async function everyVipAnswers(state: string, urls: string[]): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (const url of urls) {
    for (;;) {
      const r = spawnSync(
        process.execPath,
        [BIN, 'client', '--state', state, '--', 'curl', '-s', '-m', '2', url],
        {
          encoding: 'utf8',
        },
      );
      if (r.status === 0 && r.stdout.includes('"vm"')) break;
      if (Date.now() > deadline) assert.fail(`${url} does not answer: ${r.stdout}${r.stderr}`);
      await new Promise((res) => setTimeout(res, 300));
    }
  }
}

test('up --driver netns --demo: VIPs answer, kill -9 and up again converge, fsck clean, nothing left', async (t) => {
  if (!requireNetns(t)) return;
  const state = mkdtempSync(join(tmpdir(), 'vipdip-netns-e2e-'));
  const prefix = worldPrefix(state);
  const children: ChildProcess[] = [];
  t.after(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    await removeWorld(prefix);
    rmSync(state, { recursive: true, force: true });
  });

  const first = up(state);
  children.push(first.child);
  const banner = await first.banner;
  const urls = [...banner.matchAll(/curl (http:\/\/198\.18\.[0-9.]+:\d+\/)/g)].map((m) => m[1]!);
  assert.equal(urls.length, 3, banner);
  await everyVipAnswers(state, urls);

  // Traffic flowing while up dies: a bounded loop of curls in the internet namespace.
  const load = spawn('ip', [
    'netns',
    'exec',
    `${prefix}-inet`,
    'sh',
    '-c',
    `for i in $(seq 1 200); do curl -s -m 1 -o /dev/null ${urls[0]}; done`,
  ]);
  children.push(load);
  await new Promise((res) => setTimeout(res, 500));
  first.child.kill('SIGKILL');
  await new Promise((res) => first.child.once('exit', res));
  load.kill('SIGKILL');

  const second = up(state);
  children.push(second.child);
  await second.banner;
  await everyVipAnswers(state, urls);
  const names = await namespacesWithPrefix(prefix);
  // The demo has 7 VMs, each with a DIP: their namespaces, the world's core, the routers of its two
  // subscriptions and the internet, nothing else.
  assert.equal(names.length, 11, names.join(' '));
  assert.equal(new Set(names).size, names.length);

  // A network inside the world's router links is refused when it is applied (no subscription made),
  // rather than accepted and then left out of the world at every reconcile.
  const links = spawnSync(process.execPath, [BIN, 'apply', '--state', state, '-f', '-'], {
    encoding: 'utf8',
    input: `subscriptions:
  - name: links
    virtualNetworks:
      - { name: lan, addressSpace: [100.127.8.0/24], subnets: [{ name: s, cidr: 100.127.8.0/24 }] }
`,
  });
  assert.notEqual(links.status, 0, links.stdout);
  assert.match(links.stderr, /^vipdip: .*100\.127\.8\.0\/24, which overlaps 100\.127\.0\.0\/16/);
  assert.equal(links.stderr.trim().split('\n').length, 1, links.stderr);

  second.child.kill('SIGTERM');
  await new Promise((res) => second.child.once('exit', res));
  assert.deepEqual(await namespacesWithPrefix(prefix), []);
  const fsck = spawnSync(process.execPath, [BIN, 'fsck', '--state', state], { encoding: 'utf8' });
  assert.equal(fsck.status, 0, fsck.stdout + fsck.stderr);
  assert.match(fsck.stdout, /clean/);
});
