/**
 * The shared host of built-ins (`vipdip workload shared-host`, src/agent/builtins/host.ts) speaking
 * its protocol, without namespaces: VMs added and removed one by one, each answering as itself on its
 * own address; a removed VM's listener and connections gone while the others answer; a socket the
 * launcher could not open fails that VM alone, with the reason; the host exits when stdin ends.
 * (The same host given sockets opened in VM namespaces: netns-shared-host.test.ts, as root.)
 * Addresses: 127.206.0.0/16.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { connect } from 'node:net';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { VIPDIP_BIN } from '../../src/cli/up-options.ts';
import { eventually, udpAsk } from '../support/net.ts';

interface Said {
  key: string;
  text?: string;
  stream?: string;
  up?: boolean;
  exit?: string;
}

function host(fds?: unknown[]): { child: ChildProcess; said: Said[]; send(m: object): void } {
  const args = [VIPDIP_BIN, 'workload', 'shared-host', ...(fds ? [`--fds=${JSON.stringify(fds)}`] : [])];
  const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const said: Said[] = [];
  createInterface({ input: child.stdout }).on('line', (l) => said.push(JSON.parse(l) as Said));
  return { child, said, send: (m) => child.stdin.write(`${JSON.stringify(m)}\n`) };
}

const env = (vm: string, dip: string, extra: Record<string, string> = {}) => ({
  VIPDIP_SUBSCRIPTION: 'contoso',
  VIPDIP_SERVICE: 'shop',
  VIPDIP_VM: vm,
  VIPDIP_DIP: dip,
  VIPDIP_VIP: '127.206.1.1',
  ...extra,
});

function get(host: string, port: number): Promise<{ vm: string; dip: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: '/', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(JSON.parse(body) as { vm: string; dip: string }));
    });
    req.on('error', reject);
    req.end();
  });
}

const refused = (host: string, port: number) =>
  get(host, port).then(
    () => false,
    (e: NodeJS.ErrnoException) => e.code === 'ECONNREFUSED',
  );

test('a shared host serves many VMs, each as itself, added and removed one by one', async (t) => {
  const h = host();
  t.after(() => h.child.kill('SIGKILL'));
  const upOf = (key: string) => eventually(`${key} up`, () => h.said.some((s) => s.key === key && s.up));

  h.send({ op: 'add', key: 'shop/a', image: 'whoami', env: env('a', '127.206.0.1') });
  h.send({ op: 'add', key: 'shop/b', image: 'whoami', env: env('b', '127.206.0.2') });
  h.send({
    op: 'add',
    key: 'shop/e',
    image: 'echo',
    env: env('e', '127.206.0.3', { VIPDIP_PORT_U: '7007', VIPDIP_PROTOCOL_U: 'udp' }),
  });
  await Promise.all(['shop/a', 'shop/b', 'shop/e'].map(upOf));

  const a = await get('127.206.0.1', 8000);
  const b = await get('127.206.0.2', 8000);
  assert.deepEqual([a.vm, a.dip, b.vm, b.dip], ['a', '127.206.0.1', 'b', '127.206.0.2']);
  assert.equal((await udpAsk('127.206.0.3', 7007, 'hi'))?.text, 'hi');
  // Each VM's lines are its own.
  assert.ok(
    h.said.some(
      (s) =>
        s.key === 'shop/a' && /whoami shop\/a listening on http:\/\/127\.206\.0\.1:8000\//.test(s.text ?? ''),
    ),
  );
  assert.ok(h.said.some((s) => s.key === 'shop/b' && /GET \/ from 127\.0\.0\.1/.test(s.text ?? '')));

  // A connection held open to a, then a removed: the connection ends, a refuses, b still answers.
  const held = connect({ host: '127.206.0.1', port: 8000 });
  await new Promise((r) => held.once('connect', r));
  const closed = new Promise((r) => held.once('close', r));
  held.on('error', () => {});
  h.send({ op: 'remove', key: 'shop/a', how: 'SIGTERM' });
  await eventually('a gone', () => h.said.some((s) => s.key === 'shop/a' && s.exit === 'code 0'));
  await closed;
  assert.equal(await refused('127.206.0.1', 8000), true);
  assert.equal((await get('127.206.0.2', 8000)).vm, 'b');

  // Killed (as chaos kills a workload): said so, and only that VM.
  h.send({ op: 'remove', key: 'shop/b', how: 'SIGKILL' });
  await eventually('b killed', () => h.said.some((s) => s.key === 'shop/b' && s.exit === 'SIGKILL'));
  assert.equal((await udpAsk('127.206.0.3', 7007, 'still'))?.text, 'still');

  // The same VM again, on the same address: a fresh start.
  h.send({ op: 'add', key: 'shop/a', image: 'whoami', env: env('a', '127.206.0.1') });
  await eventually('a again', async () => (await get('127.206.0.1', 8000)).vm === 'a');

  const gone = new Promise<number | null>((r) => h.child.once('exit', r));
  h.child.stdin!.end();
  assert.equal(await gone, 0, 'the host exits when stdin ends');
});

test('a socket the launcher could not open fails its VM alone, saying why', async (t) => {
  const h = host(['Cannot assign requested address']);
  t.after(() => h.child.kill('SIGKILL'));
  h.send({
    op: 'add',
    key: 'shop/x',
    image: 'whoami',
    env: env('x', '10.9.9.9'),
    sockets: { 'tcp/8000': 0 },
  });
  // No socket named for its port at all.
  h.send({ op: 'add', key: 'shop/y', image: 'whoami', env: env('y', '10.9.9.8'), sockets: {} });
  h.send({ op: 'add', key: 'shop/z', image: 'whoami', env: env('z', '127.206.0.9') });
  h.send({ op: 'add', key: 'shop/w', image: 'nonesuch', env: env('w', '127.206.0.8') });
  await eventually('every VM settled', () => h.said.filter((s) => s.up || s.exit).length === 4);
  const about = (key: string) => h.said.filter((s) => s.key === key);
  assert.deepEqual(
    about('shop/x').map((s) => s.exit ?? s.text),
    ['vipdip workload whoami: cannot listen on tcp 10.9.9.9:8000: Cannot assign requested address', 'code 1'],
  );
  assert.match(
    about('shop/y')[0]!.text!,
    /cannot listen on tcp 10\.9\.9\.8:8000: no socket was opened for tcp port 8000/,
  );
  assert.match(about('shop/w')[0]!.text!, /unknown built-in "nonesuch"/);
  assert.equal((await get('127.206.0.9', 8000)).vm, 'z');
  h.child.stdin!.end();
});
