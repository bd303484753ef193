/**
 * `vipdip up` serves DNS: the demo's names resolve with real dig, answers follow `vipdip vm`
 * commands from another process at once, and the API shows every VM's names.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const run = promisify(execFile);
let server: TestServer;
let dnsPort: number;

async function dig(name: string, ...args: string[]): Promise<string> {
  const { stdout } = await run('dig', [
    '@127.0.0.1',
    '-p',
    String(dnsPort),
    '+time=2',
    '+tries=1',
    name,
    ...args,
  ]);
  return stdout;
}
const short = async (name: string, ...args: string[]) => (await dig(name, '+short', ...args)).trim();

async function cli(...args: string[]): Promise<string> {
  const { stdout } = await run(process.execPath, [BIN, ...args], {
    env: { ...process.env, VIPDIP_URL: server.url, VIPDIP_TOKEN: server.operatorToken },
  });
  return stdout;
}
const vmJson = async (ref: string) =>
  JSON.parse(await cli('get', 'vms', ref, '-o', 'json')) as {
    dip: string | null;
    fqdns: { internal: string; public: string | null };
  };

before(async () => {
  server = await startServer({ args: ['--demo', '--dns', '127.0.0.1:0', '--seed', '5'] });
  const m = /DNS on 127\.0\.0\.1:(\d+) \(UDP and TCP\)/.exec(server.output());
  assert.ok(m, `vipdip up prints where DNS listens:\n${server.output()}`);
  dnsPort = Number(m[1]);
});
after(async () => {
  await server.stop();
});

test('the demo service resolves to its VIP over UDP and TCP', async () => {
  const svc = (await call(server, server.operatorToken, 'GET', '/v1/services/shop')).body as { vip: string };
  assert.match(svc.vip, /^127\.100\./);
  assert.equal(await short('shop.cloudapp.vipdip.test'), svc.vip);
  assert.equal(await short('shop.cloudapp.vipdip.test', '+tcp'), svc.vip);
});

test('a VM shows its FQDNs in the API and its internal name resolves to its DIP', async () => {
  const vm = await vmJson('shop/web1');
  assert.equal(vm.fqdns.internal, 'web1.shop.internal.vipdip.test');
  assert.equal(vm.fqdns.public, null, 'no ILPIP, no public name');
  assert.equal(await short(vm.fqdns.internal), vm.dip);
});

test('the answer follows vipdip vm deallocate and start at once', async () => {
  await cli('vm', 'deallocate', 'shop/web1');
  const gone = await dig('web1.shop.internal.vipdip.test');
  assert.match(gone, /status: NOERROR/);
  assert.match(gone, /ANSWER: 0/, 'a deallocated VM answers NODATA');
  await cli('vm', 'start', 'shop/web1');
  const vm = await vmJson('shop/web1');
  assert.ok(vm.dip !== null);
  assert.equal(await short('web1.shop.internal.vipdip.test'), vm.dip);
});

test('an unknown name in the zone is NXDOMAIN, a name outside it REFUSED', async () => {
  assert.match(await dig('nosuch.cloudapp.vipdip.test'), /status: NXDOMAIN/);
  assert.match(await dig('example.com'), /status: REFUSED/);
});
