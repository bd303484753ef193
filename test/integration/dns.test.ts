/**
 * The DNS server against real `dig` (Debian's bind9-dnsutils), over a real Cloud on SQLite, on a free
 * loopback port.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { decode, encode, streamEncode } from 'dns-packet';
import { startDnsServer, type DnsServer, type DnsSource } from '../../src/dns/index.ts';
import type { Cloud, EventView } from '../../src/lifecycle/index.ts';
import { makeCloud, withShop, type TestCloud } from '../support/cloud.ts';

const run = promisify(execFile);
let t: TestCloud;
let cloud: Cloud;
let server: DnsServer;

/** dig at our server, one try of two seconds: a server that does not answer fails fast. */
async function dig(...args: string[]): Promise<string> {
  const { stdout } = await run('dig', [
    '@127.0.0.1',
    '-p',
    String(server.port),
    '+time=2',
    '+tries=1',
    ...args,
  ]);
  return stdout;
}
const short = async (...args: string[]) => (await dig(...args, '+short')).trim();
const status = (out: string) => /status: ([A-Z]+)/.exec(out)?.[1];
/** The records of one section of dig's output, as [name, ttl, class, type, data…] rows. */
function section(out: string, name: string): string[][] {
  const m = new RegExp(`;; ${name} SECTION:\\n([^]*?)(?:\\n\\n|$)`).exec(out);
  return m === null
    ? []
    : m[1]!
        .split('\n')
        .filter((l) => l.trim() !== '' && !l.startsWith(';'))
        .map((l) => l.split(/\s+/));
}
const vm = (name: string) => ({ service: 'shop', vm: name });
const eventuallyClosed = (s: Socket) =>
  new Promise<void>((ok, fail) => {
    if (s.destroyed) return ok();
    const timer = setTimeout(() => fail(new Error('still open after 5 s')), 5000);
    s.once('close', () => (clearTimeout(timer), ok()));
  });

beforeEach(async () => {
  t = await makeCloud();
  cloud = t.cloud;
  await withShop(cloud);
  await cloud.createVm('shop', { name: 'web1', subnet: 'front' });
  await cloud.createVm('shop', { name: 'web2', subnet: 'front' });
  server = await startDnsServer({ cloud, host: '127.0.0.1', port: 0 });
});
afterEach(async () => {
  await server.close();
  await t.close();
});

describe('DNS with dig', () => {
  test('a service name resolves to its VIP and a VM name to its DIP', async () => {
    const service = await cloud.getService('shop');
    assert.match(service.vip ?? '', /^127\.100\./);
    assert.equal(await short('shop.cloudapp.vipdip.test', 'A'), service.vip);
    assert.equal(await short('web1.shop.internal.vipdip.test', 'A'), (await cloud.getVm(vm('web1'))).dip);
    const full = await dig('web2.shop.internal.vipdip.test', 'A');
    assert.equal(status(full), 'NOERROR');
    assert.match(full, /;; flags: qr aa/, 'the answer is authoritative');
    assert.deepEqual(section(full, 'ANSWER'), [
      ['web2.shop.internal.vipdip.test.', '5', 'IN', 'A', (await cloud.getVm(vm('web2'))).dip!],
    ]);
  });

  test('an unknown name inside a zone is NXDOMAIN with the zone SOA in the authority section', async () => {
    for (const [name, zone] of [
      ['nosuch.cloudapp.vipdip.test', 'cloudapp.vipdip.test.'],
      ['db9.shop.internal.vipdip.test', 'internal.vipdip.test.'],
    ] as const) {
      const out = await dig(name, 'A', '+noall', '+comments', '+authority');
      assert.equal(status(out), 'NXDOMAIN', name);
      const soa = section(out, 'AUTHORITY');
      assert.equal(soa.length, 1, out);
      assert.deepEqual(soa[0]!.slice(0, 6), [
        zone,
        '5',
        'IN',
        'SOA',
        'ns.internal.vipdip.test.',
        'hostmaster.internal.vipdip.test.',
      ]);
    }
  });

  test('a name outside the zones is REFUSED: this is no recursive resolver', async () => {
    for (const name of ['example.com', 'vipdip.test', 'shop.cloudapp.vipdip.test.example']) {
      const out = await dig(name, 'A', '+noall', '+comments');
      assert.equal(status(out), 'REFUSED', name);
      assert.doesNotMatch(out, /flags: qr aa/);
    }
  });

  test('the same answers come over TCP', async () => {
    const out = await dig('+tcp', 'shop.cloudapp.vipdip.test', 'A');
    assert.match(out, /\(TCP\)/, 'dig used TCP');
    assert.equal(status(out), 'NOERROR');
    assert.equal(section(out, 'ANSWER')[0]?.[4], (await cloud.getService('shop')).vip);
    // dig keeps the connection open for its second question.
    const two = await dig(
      '+tcp',
      '+keepopen',
      '+short',
      'web1.shop.internal.vipdip.test',
      'web2.shop.internal.vipdip.test',
    );
    assert.deepEqual(two.trim().split('\n'), [
      (await cloud.getVm(vm('web1'))).dip,
      (await cloud.getVm(vm('web2'))).dip,
    ]);
  });

  test('several queries sent at once on one TCP connection all get their answers, in order', async () => {
    const names = [
      'shop.cloudapp.vipdip.test',
      'web1.shop.internal.vipdip.test',
      'nope.cloudapp.vipdip.test',
    ];
    const sock = connect(server.port, '127.0.0.1');
    sock.write(
      Buffer.concat(
        names.map((name, i) =>
          streamEncode({ type: 'query', id: 100 + i, questions: [{ type: 'A', name }] }),
        ),
      ),
    );
    let got = Buffer.alloc(0);
    const replies = await new Promise<ReturnType<typeof decode>[]>((ok, fail) => {
      sock.on('error', fail);
      sock.on('data', (d: Buffer) => {
        got = Buffer.concat([got, d]);
        const out: ReturnType<typeof decode>[] = [];
        let off = 0;
        while (got.length - off >= 2 && got.length - off - 2 >= got.readUInt16BE(off)) {
          out.push(decode(got.subarray(off + 2, off + 2 + got.readUInt16BE(off))));
          off += 2 + got.readUInt16BE(off);
        }
        if (out.length === names.length) ok(out);
      });
    });
    sock.destroy();
    assert.deepEqual(
      replies.map((r) => [r.id, r.questions?.[0]?.name, r.answers?.length]),
      [
        [100, names[0], 1],
        [101, names[1], 1],
        [102, names[2], 0],
      ],
    );
  });

  /**
   * Opens `count` TCP connections from the given source addresses (round robin), each asking one
   * question, and keeps those the server keeps. Bounded: one connect and one answer per connection,
   * 2 s each at most.
   */
  async function hold(sources: string[], count: number): Promise<Set<Socket>> {
    const held = new Set<Socket>();
    for (let i = 0; i < count; i++) {
      const sock = connect({
        host: '127.0.0.1',
        port: server.port,
        localAddress: sources[i % sources.length]!,
      });
      sock.on('error', () => {});
      sock.on('close', () => held.delete(sock));
      const answered = await new Promise<boolean>((ok) => {
        const timer = setTimeout(() => ok(false), 2000);
        sock.once('data', () => (clearTimeout(timer), ok(true)));
        sock.once('close', () => (clearTimeout(timer), ok(false)));
        sock.write(
          streamEncode({
            type: 'query',
            id: i,
            questions: [{ type: 'A', name: 'shop.cloudapp.vipdip.test' }],
          }),
        );
      });
      if (answered && !sock.destroyed) held.add(sock);
      else sock.destroy();
    }
    return held;
  }

  test('one client holding 128 TCP connections cannot keep another from an answer over TCP', async () => {
    const held = await hold(['127.189.0.10'], 128);
    try {
      assert.equal(held.size, 8, 'one address holds its share of 8, its other connections are closed');
      assert.equal(server.stats().tcpRefused, 120);
      const out = await dig('+tcp', 'shop.cloudapp.vipdip.test', 'A');
      assert.equal(status(out), 'NOERROR');
    } finally {
      for (const s of held) s.destroy();
    }
  });

  test('connections spread over many addresses fill the total, and a newcomer evicts the idlest', async () => {
    const sources = Array.from({ length: 16 }, (_, i) => `127.189.1.${10 + i}`);
    const held = await hold(sources, 128);
    try {
      assert.equal(held.size, 128);
      // The abuser keeps every connection busy but the first, a query each.
      for (const [i, s] of [...held].entries()) {
        if (i > 0)
          s.write(
            streamEncode({
              type: 'query',
              id: i,
              questions: [{ type: 'A', name: 'x.cloudapp.vipdip.test' }],
            }),
          );
      }
      await new Promise((r) => setTimeout(r, 100));
      const idlest = [...held][0]!;
      const out = await dig('+tcp', 'shop.cloudapp.vipdip.test', 'A');
      assert.equal(status(out), 'NOERROR');
      assert.equal(server.stats().tcpEvicted, 1);
      await eventuallyClosed(idlest);
    } finally {
      for (const s of held) s.destroy();
    }
  });

  test('an idle TCP connection is closed after the idle timeout', async () => {
    await server.close();
    server = await startDnsServer({ cloud, host: '127.0.0.1', port: 0, tcpIdleMs: 200 });
    const [sock] = [...(await hold(['127.189.2.10'], 1))];
    assert.ok(sock !== undefined);
    const t0 = Date.now();
    await eventuallyClosed(sock);
    assert.ok(Date.now() - t0 < 2000);
  });

  test('the answer changes with the very next query after a deallocate and after a start', async () => {
    const name = 'web1.shop.internal.vipdip.test';
    const before = await short(name, 'A');
    assert.equal(before, (await cloud.getVm(vm('web1'))).dip);
    await cloud.vmOperation(vm('web1'), 'deallocate');
    const gone = await dig(name, 'A', '+noall', '+comments', '+answer', '+authority');
    assert.equal(status(gone), 'NOERROR', 'a deallocated VM still has its name');
    assert.deepEqual(section(gone, 'ANSWER'), [], 'but no address');
    assert.equal(section(gone, 'AUTHORITY')[0]?.[3], 'SOA');
    const started = await cloud.vmOperation(vm('web1'), 'start');
    assert.equal(await short(name, 'A'), started!.dip);
    // A redeploy redraws the DIP; the next answer shows the new one, asked over TCP this time.
    const moved = await cloud.vmOperation(vm('web1'), 'redeploy');
    assert.notEqual(moved!.dip, started!.dip);
    assert.equal(await short('+tcp', name, 'A'), moved!.dip);
  });

  test('deallocating every VM of a service makes its name NODATA, never a stale VIP', async () => {
    const vip = (await cloud.getService('shop')).vip;
    assert.equal(await short('shop.cloudapp.vipdip.test'), vip);
    await cloud.vmOperation(vm('web1'), 'deallocate');
    assert.equal(await short('shop.cloudapp.vipdip.test'), vip, 'the VIP stays while one VM is allocated');
    await cloud.vmOperation(vm('web2'), 'deallocate');
    const out = await dig('shop.cloudapp.vipdip.test', 'A', '+noall', '+comments', '+answer', '+authority');
    assert.equal(status(out), 'NOERROR');
    assert.deepEqual(section(out, 'ANSWER'), []);
    assert.deepEqual(section(out, 'AUTHORITY')[0]?.slice(0, 4), ['cloudapp.vipdip.test.', '5', 'IN', 'SOA']);
    await cloud.vmOperation(vm('web2'), 'start');
    assert.equal(await short('shop.cloudapp.vipdip.test'), (await cloud.getService('shop')).vip);
  });

  test('names are case-insensitive, and the answer keeps the case of the question', async () => {
    const out = await dig('WeB1.ShOp.INTERNAL.VipDip.Test', 'A', '+noall', '+answer');
    assert.deepEqual(
      section(`;; ANSWER SECTION:\n${out}`, 'ANSWER').map((r) => [r[0], r[4]]),
      [['WeB1.ShOp.INTERNAL.VipDip.Test.', (await cloud.getVm(vm('web1'))).dip!]],
    );
  });

  test('AAAA and other types for an existing name are NODATA with the SOA', async () => {
    for (const type of ['AAAA', 'MX', 'TXT']) {
      const out = await dig(
        'shop.cloudapp.vipdip.test',
        type,
        '+noall',
        '+comments',
        '+answer',
        '+authority',
      );
      assert.equal(status(out), 'NOERROR', type);
      assert.deepEqual(section(out, 'ANSWER'), [], type);
      assert.equal(section(out, 'AUTHORITY')[0]?.[3], 'SOA', type);
    }
  });

  test('a VM with an instance-level public IP resolves to it in the public zone', async () => {
    const web3 = await cloud.createVm('shop', { name: 'web3', subnet: 'front', ilpip: true });
    assert.match(web3.ilpip ?? '', /^127\.100\./);
    assert.equal(await short('web3.shop.cloudapp.vipdip.test'), web3.ilpip);
    assert.equal(await short('web3.shop.internal.vipdip.test'), web3.dip);
    const out = await dig('web1.shop.cloudapp.vipdip.test', 'A', '+noall', '+comments');
    assert.equal(status(out), 'NXDOMAIN', 'a VM without an ILPIP has no public name');
    await cloud.vmOperation(vm('web3'), 'deallocate');
    const none = await dig('web3.shop.cloudapp.vipdip.test', 'A', '+noall', '+comments', '+answer');
    assert.equal(status(none), 'NOERROR');
    assert.deepEqual(section(none, 'ANSWER'), [], 'a deallocated VM holds no ILPIP');
  });

  test('each zone has an SOA and an NS, and the serial grows with every change', async () => {
    const serial = async (zone: string) => Number((await short(zone, 'SOA')).split(' ')[2]);
    const pub = await serial('cloudapp.vipdip.test');
    const int = await serial('internal.vipdip.test');
    assert.equal(await short('cloudapp.vipdip.test', 'NS'), 'ns.internal.vipdip.test.');
    assert.equal(await short('ns.internal.vipdip.test', 'A'), '127.0.0.1');
    await cloud.vmOperation(vm('web1'), 'redeploy');
    assert.ok((await serial('internal.vipdip.test')) > int, 'a DIP changed');
    assert.equal(await serial('cloudapp.vipdip.test'), pub, 'nothing public changed');
    await cloud.vmOperation(vm('web1'), 'deallocate');
    await cloud.vmOperation(vm('web2'), 'deallocate');
    assert.ok((await serial('cloudapp.vipdip.test')) > pub, 'the VIP went');
  });

  test('a service with a reserved IP resolves to it before any VM exists', async () => {
    const rip = await cloud.createReservedIp('contoso', 'blog-ip');
    await cloud.createService('contoso', { name: 'blog', vnet: 'shop-net', reservedIp: 'blog-ip' });
    assert.equal(await short('blog.cloudapp.vipdip.test'), rip.address);
  });

  test('a scope option (65001) narrows answers over UDP and TCP; without one, loopback sees every VNet', async () => {
    await cloud.createSubscription('fabrikam');
    await cloud.createVnet('fabrikam', {
      name: 'blog-net',
      addressSpace: ['127.32.0.0/16'],
      subnets: [{ name: 'web', cidr: '127.32.1.0/24' }],
    });
    await cloud.createService('fabrikam', { name: 'blog', vnet: 'blog-net' });
    await cloud.createVm('blog', { name: 'www1', subnet: 'web' });
    const web1 = (await cloud.getVm(vm('web1'))).dip!;
    const www1 = (await cloud.getVm({ service: 'blog', vm: 'www1' })).dip!;
    const vip = (await cloud.getService('shop')).vip!;
    const as = (text: string) => `+ednsopt=65001:${Buffer.from(text).toString('hex')}`;
    const WEB1 = 'web1.shop.internal.vipdip.test';
    const WWW1 = 'www1.blog.internal.vipdip.test';
    assert.equal(await short(WEB1), web1);
    assert.equal(await short(WWW1), www1);
    for (const tcp of [[], ['+tcp']]) {
      assert.equal(await short(WEB1, as('vnet contoso/shop-net'), ...tcp), web1);
      assert.equal(status(await dig(WWW1, as('vnet contoso/shop-net'), ...tcp)), 'NXDOMAIN');
      assert.equal(await short(WWW1, as('vnet fabrikam/blog-net'), ...tcp), www1);
      assert.equal(status(await dig(WEB1, as('vnet fabrikam/blog-net'), ...tcp)), 'NXDOMAIN');
      // A second scope option cannot widen the first.
      const both = await dig(WWW1, as('vnet contoso/shop-net'), as('vnet fabrikam/blog-net'), ...tcp);
      assert.equal(status(both), 'NXDOMAIN');
      assert.equal(status(await dig(WEB1, as('internet'), ...tcp)), 'NXDOMAIN');
      assert.equal(await short('shop.cloudapp.vipdip.test', as('internet'), ...tcp), vip);
    }
  });

  test('the TTL of the answers is configurable', async () => {
    await server.close();
    server = await startDnsServer({ cloud, host: '127.0.0.1', port: 0, ttlSeconds: 30 });
    const out = await dig('shop.cloudapp.vipdip.test', 'A', '+noall', '+answer');
    assert.equal(out.trim().split(/\s+/)[1], '30');
  });
});

describe('DNS server start', () => {
  test('port 0 picks one free port for both UDP and TCP, and the port in use is refused', async () => {
    assert.ok(server.port > 0);
    assert.equal(server.address, '127.0.0.1');
    await assert.rejects(
      startDnsServer({ cloud, host: '127.0.0.1', port: server.port }),
      /DNS cannot listen on 127\.0\.0\.1:\d+/,
    );
    // The failed start left nothing behind: the first server still answers.
    assert.equal(await short('shop.cloudapp.vipdip.test'), (await cloud.getService('shop')).vip);
  });

  test('zones that overlap are refused before anything listens', async () => {
    await assert.rejects(
      startDnsServer({ cloud, port: 0, publicZone: 'a.example', internalZone: 'b.a.example' }),
      /must be distinct/,
    );
  });

  test('custom zone names are served, and the defaults are not', async () => {
    await server.close();
    server = await startDnsServer({ cloud, port: 0, publicZone: 'pub.example', internalZone: 'in.example' });
    assert.equal(await short('shop.pub.example'), (await cloud.getService('shop')).vip);
    assert.equal(await short('web1.shop.in.example'), (await cloud.getVm(vm('web1'))).dip);
    assert.equal(status(await dig('shop.cloudapp.vipdip.test', '+noall', '+comments')), 'REFUSED');
  });

  test('a query that arrives while the table is being rebuilt waits for it, never an older table', async () => {
    // 20 changes in a row, each followed at once by a query from this process, without awaiting dig.
    const socket = createSocket('udp4');
    try {
      for (let i = 0; i < 20; i++) {
        const after = await cloud.vmOperation(vm('web1'), 'redeploy');
        const reply = await new Promise<ReturnType<typeof decode>>((ok) => {
          socket.once('message', (m) => ok(decode(m)));
          socket.send(
            encode({
              type: 'query',
              id: i,
              questions: [{ type: 'A', name: 'web1.shop.internal.vipdip.test' }],
            }),
            server.port,
            '127.0.0.1',
          );
        });
        const a = reply.answers?.[0];
        assert.equal(a !== undefined && 'data' in a ? a.data : null, after!.dip, `change ${i}`);
      }
    } finally {
      socket.close();
    }
  });

  test('events that change no name or address (a VM’s host or state) cost no rebuild; a DIP change does', async () => {
    let dip = '127.16.1.10';
    let emit: (events: readonly EventView[]) => void = () => {};
    const source: DnsSource = {
      listServices: () => Promise.resolve([{ name: 'shop', vip: '127.100.0.1' }]),
      listVms: () =>
        Promise.resolve([
          {
            subscription: 'contoso',
            vnet: 'shop-net',
            service: 'shop',
            name: 'web1',
            dip,
            ilpip: null,
            ilpipEnabled: false,
          },
        ]),
      onEvents: (fn) => {
        emit = fn;
        return () => {};
      },
    };
    const fake = await startDnsServer({ cloud: source, port: 0 });
    const socket = createSocket('udp4');
    const ask = () =>
      new Promise<string | null>((ok) => {
        socket.once('message', (m) => {
          const a = decode(m).answers?.[0];
          ok(a !== undefined && 'data' in a ? (a.data as string) : null);
        });
        socket.send(
          encode({
            type: 'query',
            id: 1,
            questions: [{ type: 'A', name: 'web1.shop.internal.vipdip.test' }],
          }),
          fake.port,
          '127.0.0.1',
        );
      });
    const ev = (type: string, seq: number): EventView => ({
      seq,
      time: '2026-12-04T00:00:00.000Z',
      type,
      subscription: 'contoso',
      resource: 'vm/shop/web1',
      reason: 'test',
      old: null,
      new: null,
    });
    try {
      assert.equal(await ask(), '127.16.1.10');
      const before = fake.stats().rebuilds;
      emit([ev('vm.host', 1), ev('vm.restarted', 2)]);
      assert.equal(await ask(), '127.16.1.10');
      assert.equal(fake.stats().rebuilds, before, 'no rebuild for a host or a state');
      dip = '127.16.1.11';
      emit([ev('vm.host', 3), ev('vm.dip', 4)]);
      assert.equal(await ask(), '127.16.1.11', 'the query waits for the rebuild a DIP change calls for');
      assert.equal(fake.stats().rebuilds, before + 1);
    } finally {
      socket.close();
      await fake.close();
    }
  });

  test('while a slow rebuild runs, queries wait for it; a failed one answers SERVFAIL, then recovers', async () => {
    // A fake control plane whose reads are slow, then fail, then work again.
    let dip = '127.16.1.10';
    let mode: 'ok' | 'slow' | 'fail' = 'ok';
    let emit: (events: readonly EventView[]) => void = () => {};
    const source: DnsSource = {
      listServices: () => Promise.resolve([{ name: 'shop', vip: '127.100.0.1' }]),
      listVms: async () => {
        if (mode === 'slow') await new Promise((ok) => setTimeout(ok, 150));
        if (mode === 'fail') throw new Error('the store is gone (on purpose)');
        return [
          {
            subscription: 'contoso',
            vnet: 'shop-net',
            service: 'shop',
            name: 'web1',
            dip,
            ilpip: null,
            ilpipEnabled: false,
          },
        ];
      },
      onEvents: (fn) => {
        emit = fn;
        return () => {};
      },
    };
    const errors: unknown[] = [];
    const fake = await startDnsServer({ cloud: source, port: 0, onError: (e) => errors.push(e) });
    const socket = createSocket('udp4');
    const ask = () =>
      new Promise<ReturnType<typeof decode>>((ok) => {
        socket.once('message', (m) => ok(decode(m)));
        socket.send(
          encode({
            type: 'query',
            id: 1,
            questions: [{ type: 'A', name: 'web1.shop.internal.vipdip.test' }],
          }),
          fake.port,
          '127.0.0.1',
        );
      });
    const data = (r: ReturnType<typeof decode>) => {
      const a = r.answers?.[0];
      return a !== undefined && 'data' in a ? a.data : null;
    };
    try {
      assert.equal(data(await ask()), '127.16.1.10');
      mode = 'slow';
      dip = '127.16.1.11';
      emit([]);
      const t0 = performance.now();
      const pending = ask();
      await new Promise((ok) => setTimeout(ok, 20));
      assert.equal(fake.stats().pendingQueries, 1, 'the query waits for the rebuild');
      assert.equal(data(await pending), '127.16.1.11');
      assert.ok(performance.now() - t0 >= 100, 'it was answered after the rebuild');
      mode = 'fail';
      dip = '127.16.1.12';
      emit([]);
      const failed = await ask();
      assert.equal((failed.flags ?? 0) & 0xf, 2, 'SERVFAIL rather than a possibly stale address');
      assert.equal(errors.length >= 1, true);
      mode = 'ok';
      // The rebuild is retried by itself; the next query waits for it.
      assert.equal(data(await ask()), '127.16.1.12');
    } finally {
      socket.close();
      await fake.close();
    }
  });
});
