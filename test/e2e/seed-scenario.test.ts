/**
 * The seed scenario of SPEC.md, end to end through the CLI only: a cloud service of three VMs keeps
 * its VIP while any VM is allocated and loses it with the last one (R1–R3); DIPs are drawn at random
 * on start (R4); maintenance moves VMs and redraws DIPs, never a static one (R5); a reserved IP
 * outlives deallocation of everything and deletion of the service; and the state is clean for fsck
 * once the server is stopped.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { BIN, startServer, type TestServer } from '../support/server.ts';

const CLI_TIMEOUT_MS = 30_000;
/** Deallocate+start rounds; each draws two DIPs. */
const ROUNDS = 5;
const STATIC_DIP = '127.16.2.10';
const LOWEST_USABLE = '127.16.1.4';

interface Vm {
  name: string;
  state: string;
  dip: string | null;
  host: string | null;
  rack: string | null;
  staticDip: string | null;
}
interface Service {
  vip: string | null;
  reservedIp: string | null;
}
interface Pool {
  bound: number;
}

const TOPOLOGY = `
subscriptions:
  - name: contoso
    virtualNetworks:
      - name: shop-net
        addressSpace: [127.16.0.0/16]
        subnets:
          - { name: front, cidr: 127.16.1.0/24 }
          - { name: back, cidr: 127.16.2.0/24 }
    cloudServices:
      - name: shop
        vnet: shop-net
        vms:
          - { name: web1, subnet: front }
          - { name: web2, subnet: front }
          - { name: db1, subnet: back, staticDip: ${STATIC_DIP} }
`;

let server: TestServer;
let stopped = false;

function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: tmpdir(),
      env: { ...process.env, VIPDIP_URL: server.url, VIPDIP_TOKEN: server.operatorToken },
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: CLI_TIMEOUT_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

async function ok(...args: string[]): Promise<string> {
  const r = await run(args);
  assert.equal(r.code, 0, `vipdip ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

const json = async <T>(...args: string[]) => JSON.parse(await ok(...args, '-o', 'json')) as T;
const shop = () => json<Service>('get', 'services', 'shop');
const vms = async () => new Map((await json<Vm[]>('get', 'vms', 'shop')).map((v) => [v.name, v]));
const bound = async () => (await json<Pool[]>('get', 'pools'))[0]!.bound;

/** Every VM that moved changed host; a non-static one got a new DIP, a static one kept it. */
function checkMoved(before: Map<string, Vm>, after: Map<string, Vm>, moved: readonly string[]): void {
  assert.ok(moved.length > 0, 'maintenance moved something');
  for (const name of moved) {
    const was = before.get(name)!;
    const now = after.get(name)!;
    assert.notEqual(now.host, was.host, `${name} left its host`);
    if (now.staticDip !== null) assert.equal(now.dip, was.dip, `${name} keeps its static DIP`);
    else assert.notEqual(now.dip, was.dip, `${name} has a redrawn DIP`);
  }
}

before(async () => {
  server = await startServer({ args: ['--seed', '1729'] });
});

after(async () => {
  if (!stopped) await server.stop();
  else rmSync(server.dir, { recursive: true, force: true });
});

/** Values the steps hand on to the next ones. */
let vipWithThree: string;
let boundWithVip: number;
let vipAgain: string;

test('apply creates a cloud service of three VMs, which get a VIP', async () => {
  const file = join(server.dir, 'shop.yaml');
  writeFileSync(file, TOPOLOGY);
  assert.match(await ok('apply', '-f', file), /^6 changes applied$/m);
  const [svc, n] = await Promise.all([shop(), bound()]);
  assert.ok(svc.vip !== null, 'the service has a VIP once its VMs run');
  vipWithThree = svc.vip;
  boundWithVip = n;
});

test('deallocating two of the three VMs leaves the VIP unchanged', async () => {
  await ok('vm', 'deallocate', 'shop/web1', 'shop/web2');
  assert.equal((await shop()).vip, vipWithThree);
});

test('deallocating the last VM releases the VIP back to the pool', async () => {
  assert.equal(await ok('vm', 'deallocate', 'shop/db1'), 'shop/db1 deallocated dip - vip - host -\n');
  const [svc, n] = await Promise.all([shop(), bound()]);
  assert.equal(svc.vip, null);
  assert.equal(n, boundWithVip - 1, 'the pool has one bound address fewer');
});

test('starting one VM brings a VIP back, and a static DIP comes back the same', async () => {
  assert.match(
    await ok('vm', 'start', 'shop/web1'),
    /^shop\/web1 running dip 127\.16\.1\.\d+ vip 127\.100\.\d+\.\d+ host rack\d-host\d\n$/,
  );
  const svc = await shop();
  assert.ok(svc.vip !== null, 'a VIP is present again');
  vipAgain = svc.vip;
  assert.equal((await json<Vm>('vm', 'start', 'shop/db1')).dip, STATIC_DIP);
});

test('DIPs drawn by repeated deallocate and start are random, not the lowest free', async () => {
  await ok('vm', 'start', 'shop/web2');
  const draws: string[] = [];
  const firstDraws: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    await ok('vm', 'deallocate', 'shop/web1', 'shop/web2');
    const started = await json<Vm[]>('vm', 'start', 'shop/web1', 'shop/web2');
    for (const v of started) draws.push(v.dip!);
    firstDraws.push(started[0]!.dip!);
  }
  assert.ok(draws.length >= 10);
  assert.ok(new Set(draws).size >= 5, `DIP draws vary: ${draws.join(' ')}`);
  // With the front subnet empty, the lowest-free policy would hand out .4 every time.
  assert.ok(
    firstDraws.some((d) => d !== LOWEST_USABLE),
    `a start does not take the lowest free address: ${firstDraws.join(' ')}`,
  );
  assert.equal((await shop()).vip, vipAgain, 'db1 stayed allocated throughout: the VIP did not move');
});

test('host maintenance moves the VMs of a host and redraws their DIPs', async () => {
  const before = await vms();
  const host = before.get('web1')!.host!;
  const table = await ok('host', 'maintenance', host);
  const after = await vms();
  assert.match(table, new RegExp(`^shop/web1\\s+${host} → ${after.get('web1')!.host}\\s+`, 'm'));
  checkMoved(
    before,
    after,
    [...before.values()].filter((v) => v.host === host).map((v) => v.name),
  );
});

test('rack maintenance moves a VM with a static DIP, which keeps its DIP', async () => {
  const before = await vms();
  const rack = before.get('db1')!.rack!;
  const moved = await json<Vm[]>('host', 'maintenance', '--rack', rack);
  const after = await vms();
  assert.ok(
    moved.some((v) => v.name === 'db1'),
    'the static VM was on that rack and moved',
  );
  checkMoved(
    before,
    after,
    moved.map((v) => v.name),
  );
  assert.equal(after.get('db1')!.dip, STATIC_DIP);
});

test('a reserved IP survives deallocation of every VM and deletion of the service', async () => {
  const vip = (await shop()).vip!;
  assert.equal(
    await ok('reserved-ip', 'reserve', 'shop', 'shop-ip'),
    `reserved IP contoso/shop-ip ${vip} now holds the VIP of shop\n`,
  );
  await ok('vm', 'deallocate', 'shop/web1', 'shop/web2', 'shop/db1');
  const svc = await shop();
  assert.deepEqual([svc.vip, svc.reservedIp], [vip, 'shop-ip'], 'nothing allocated, the VIP stays');
  assert.equal(
    await ok('service', 'delete', 'shop'),
    `cloud service shop deleted with 3 VMs; reserved IP shop-ip (${vip}) kept\n`,
  );
  const rip = await json<{ address: string; service: string | null }>(
    'get',
    'reserved-ips',
    'shop-ip',
    '-s',
    'contoso',
  );
  assert.deepEqual([rip.address, rip.service], [vip, null]);
  const missing = await run(['get', 'services', 'shop']);
  assert.equal(missing.code, 1);
  assert.equal(missing.stderr, 'vipdip: not found: cloud service shop does not exist\n');
});

test('fsck finds the state clean once the server has stopped', async () => {
  stopped = true;
  assert.equal(await server.stop({ keep: true }), 0, 'the server stops cleanly');
  const fsck = await run(['fsck', '--state', server.stateDir]);
  assert.equal(fsck.code, 0, `fsck is clean:\n${fsck.stdout}${fsck.stderr}`);
  assert.match(fsck.stdout, /^clean/m);
});
