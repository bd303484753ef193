/**
 * `vipdip up` as the whole cloud: the README's main job (the demo with whoami workloads) carries
 * traffic, and deallocating a VM with the CLI moves it; the local driver refuses address plans it
 * cannot carry, at apply and at start, naming the netns driver; netns itself says it is not in this
 * build. Addresses: the demo's own (127.16.0.0/16, 127.32.0.0/16, pool 127.100.0.0/16); the refused
 * plans never reach a socket.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { whoami } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const run = promisify(execFile);

/** Runs `vipdip up ARGS` expecting it to refuse to start: its exit code and what it said. */
function refusedUp(
  args: string[],
  unprivileged = false,
): Promise<{ code: number | null; stderr: string; stdout: string }> {
  return new Promise((resolve) => {
    const argv = [BIN, 'up', '--listen', '127.0.0.1:0', '--dns', 'off', ...args];
    // setpriv (util-linux) drops to nobody for the one case that must run unprivileged.
    const p = unprivileged
      ? spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, ...argv])
      : spawn(process.execPath, argv);
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.on('exit', (code) => {
      clearTimeout(kill);
      resolve({ code, stderr, stdout });
    });
  });
}

describe('vipdip up with the demo', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ args: ['--driver', 'local', '--demo'] });
  });
  after(() => srv?.stop());

  test('curl to a demo VIP answers from one of its VMs, and deallocating that VM moves traffic', async () => {
    const m = /try: curl http:\/\/(127\.100\.\d+\.\d+):8080\/\s+\(shop: web1, web2, web3\)/.exec(
      srv.output(),
    );
    assert.ok(m, `the URLs to try are printed:\n${srv.output()}`);
    const vip = m[1]!;
    const first = await eventually('the shop VIP answers', () => whoami(vip, 8080), 60_000, 200);
    assert.ok(['web1', 'web2', 'web3'].includes(first.vm));
    assert.equal(first.service, 'shop');
    assert.equal(first.vip, vip);
    const env = { ...process.env, VIPDIP_URL: srv.url, VIPDIP_TOKEN: srv.operatorToken };
    const { stdout } = await run(process.execPath, [BIN, 'vm', 'deallocate', `shop/${first.vm}`], { env });
    assert.match(stdout, new RegExp(`shop/${first.vm} deallocated dip - vip ${vip.replaceAll('.', '\\.')}`));
    let clear = 0;
    await eventually(
      `traffic leaves ${first.vm}`,
      async () => {
        clear = (await whoami(vip, 8080)).vm === first.vm ? 0 : clear + 1;
        return clear >= 20;
      },
      10_000,
      0,
    );
  });

  test('an address plan outside 127.0.0.0/8 is refused at apply, naming the netns driver, and nothing is created', async () => {
    const r = await call(srv, srv.operatorToken, 'POST', '/v1/apply', {
      subscriptions: [
        {
          name: 'tenlan',
          virtualNetworks: [
            { name: 'lan', addressSpace: ['10.20.0.0/16'], subnets: [{ name: 's', cidr: '10.20.1.0/24' }] },
          ],
        },
      ],
    });
    assert.equal(r.status, 422, r.text);
    const p = r.body as { code: string; detail: string };
    assert.equal(p.code, 'DRIVER_UNSUPPORTED');
    assert.match(p.detail, /10\.20\.0\.0\/16/);
    assert.match(p.detail, /netns/);
    assert.equal((await call(srv, srv.operatorToken, 'GET', '/v1/subscriptions/tenlan')).status, 404);
    const pool = await call(srv, srv.operatorToken, 'POST', '/v1/pools', { cidr: '192.168.50.0/24' });
    assert.equal(pool.status, 422, pool.text);
    assert.match((pool.body as { detail: string }).detail, /netns/);
  });
});

describe('vipdip up refusing what the local driver cannot carry', () => {
  test('a stored plan outside 127.0.0.0/8 stops the local driver from starting, in one line', async () => {
    const planner = await startServer({ args: ['--driver', 'none'] });
    try {
      const r = await call(planner, planner.operatorToken, 'POST', '/v1/apply', {
        subscriptions: [{ name: 'corp', virtualNetworks: [{ name: 'lan', addressSpace: ['10.30.0.0/16'] }] }],
      });
      assert.equal(r.status, 200, r.text);
    } finally {
      await planner.stop({ keep: true });
    }
    const res = await refusedUp(['--state', planner.stateDir, '--driver', 'local']);
    assert.equal(res.code, 1);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1, res.stderr);
    assert.match(
      lines[0]!,
      /^vipdip: .*virtual network lan of subscription corp uses 10\.30\.0\.0\/16.*netns/,
    );
    rmSync(planner.dir, { recursive: true, force: true });
  });

  test('where it cannot run (not root) the netns driver refuses in one line with the reason', async () => {
    // As root (CI), the refusal is checked as an unprivileged user; the driver itself is tested on
    // the kernel by netns-up.test.ts and test/integration/netns-*.test.ts.
    const asRoot = process.getuid?.() === 0;
    const dir = mkdtempSync(join(tmpdir(), 'vipdip-netns-'));
    try {
      const res = await refusedUp(['--state', join(dir, 's'), '--driver', 'netns'], asRoot);
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^vipdip: .*netns driver cannot run here: it needs root/);
      assert.equal(res.stderr.trim().split('\n').length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
