/**
 * The TCP balancer on real loopback sockets, driven directly (no control plane): Maglev spread,
 * connection tracking across set changes, resets when nothing can serve, ACLs, idle timeouts, the
 * client's address, source NAT of a DIP to its VIP (R6), PROXY v2, and bad behaviour from backends
 * and clients. Addresses: 127.201.0.0/16.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, describe, test } from 'node:test';
import { parseIpv4 } from '../../src/core/index.ts';
import {
  PickerSnapshot,
  TcpListener,
  compileAcl,
  parseProxyV2,
  scaledTime,
  type EndpointPolicy,
} from '../../src/lb/index.ts';
import type { AclRule } from '../../src/lifecycle/index.ts';
import { closed, eventually, hello, outcome, roundTrip, tcpBackend, type Backend } from '../support/net.ts';

const VIP = '127.201.0.1';
const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function policy(
  backends: Backend[],
  over: Partial<EndpointPolicy> & { down?: string[] } = {},
): EndpointPolicy {
  const { down = [], ...rest } = over;
  return {
    picker: PickerSnapshot.build({
      backends: backends.map((b) => ({
        id: b.id,
        address: parseIpv4(b.host),
        port: b.port,
        healthy: !down.includes(b.id),
      })),
      mode: 'fiveTuple',
    }),
    acl: compileAcl([]),
    snat: new Map(),
    preserveClient: true,
    maxFlows: 10_000,
    maxFlowsPerClient: 10_000,
    ...rest,
  };
}

async function backends(n: number, third: number): Promise<Backend[]> {
  const list: Backend[] = [];
  for (let i = 1; i <= n; i++) {
    const b = await tcpBackend(`web${i}`, `127.201.${third}.${10 + i}`);
    cleanup.push(() => b.close());
    list.push(b);
  }
  return list;
}

async function listener(
  p: EndpointPolicy,
  opts: { host?: string; idleMs?: number; proxyProtocol?: boolean; timeScale?: number } = {},
): Promise<TcpListener> {
  const host = opts.host ?? VIP;
  const l = await TcpListener.open({
    host,
    address: parseIpv4(host),
    port: 0,
    policy: p,
    idleMs: opts.idleMs ?? 4 * 60_000,
    proxyProtocol: opts.proxyProtocol ?? false,
    time: scaledTime(opts.timeScale ?? 1),
  });
  cleanup.push(() => l.close());
  return l;
}

describe('the TCP balancer', () => {
  test('new connections spread over three backends, each getting at least 20 %', async () => {
    const bs = await backends(3, 1);
    const l = await listener(policy(bs), { host: '127.201.1.1' });
    const hits = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const h = await hello('127.201.1.1', l.port);
      h.socket.destroy();
      hits.set(h.id, (hits.get(h.id) ?? 0) + 1);
    }
    for (const b of bs) assert.ok((hits.get(b.id) ?? 0) >= 60, `${b.id}: ${hits.get(b.id)} of 300`);
  });

  test('an established flow stays on its backend when the set changes; new flows avoid a removed one', async () => {
    const bs = await backends(3, 2);
    const l = await listener(policy(bs), { host: '127.201.2.1' });
    const open = [];
    for (let i = 0; i < 12; i++) open.push(await hello('127.201.2.1', l.port));
    const victim = open[0]!.id;
    l.update({ policy: policy(bs.filter((b) => b.id !== victim)), idleMs: 240_000, proxyProtocol: false });
    for (const h of open) assert.equal(await roundTrip(h.socket, `still ${h.id}`), `still ${h.id}`);
    for (let i = 0; i < 60; i++) {
      const h = await hello('127.201.2.1', l.port);
      h.socket.destroy();
      assert.notEqual(h.id, victim);
    }
    for (const h of open) h.socket.destroy();
  });

  test('with every backend down a new connection is reset at once, not left hanging', async () => {
    const bs = await backends(2, 3);
    const l = await listener(policy(bs, { down: ['web1', 'web2'] }), { host: '127.201.3.1' });
    assert.equal(await outcome('127.201.3.1', l.port), 'reset');
    assert.equal(l.admission.counters.noBackend, 1);
    l.update({ policy: policy(bs, { down: ['web2'] }), idleMs: 240_000, proxyProtocol: false });
    assert.equal(await outcome('127.201.3.1', l.port), 'answered');
  });

  test('the ACL resets a denied client before any backend is chosen, and serves a permitted one', async () => {
    const bs = await backends(1, 4);
    const rules: AclRule[] = [
      { order: 100, action: 'deny', remoteSubnet: '127.201.4.66/32' },
      { order: 200, action: 'permit', remoteSubnet: '127.201.4.0/24' },
    ];
    const l = await listener(policy(bs, { acl: compileAcl(rules) }), { host: '127.201.4.1' });
    assert.equal(await outcome('127.201.4.1', l.port, '127.201.4.66'), 'reset');
    assert.equal(await outcome('127.201.4.1', l.port, '127.201.4.67'), 'answered');
    assert.equal(await outcome('127.201.4.1', l.port, '127.201.5.1'), 'reset', 'unmatched: implicit deny');
    assert.equal(l.admission.counters.deniedAcl, 2);
    assert.equal(bs[0]!.accepted, 1);
  });

  test('the backend sees the client address, and a known DIP is seen as its VIP (R6)', async () => {
    const bs = await backends(1, 6);
    const callerDip = '127.201.6.77';
    const callerVip = '127.201.6.200';
    const l = await listener(policy(bs, { snat: new Map([[parseIpv4(callerDip), callerVip]]) }), {
      host: '127.201.6.1',
    });
    const a = await hello('127.201.6.1', l.port, '127.201.6.55');
    assert.equal(a.seen, '127.201.6.55');
    const b = await hello('127.201.6.1', l.port, callerDip);
    assert.equal(b.seen, callerVip);
    a.socket.destroy();
    b.socket.destroy();
  });

  test('a client at 127.0.0.1 is seen as 127.0.0.1 without a bind, as Linux sources loopback traffic', async () => {
    const bs = await backends(1, 14);
    const l = await listener(policy(bs, { implicitSource: '127.0.0.1' }), { host: '127.201.14.1' });
    // The local driver's assumption: an unbound socket to any 127/8 address leaves from 127.0.0.1.
    const h = await hello('127.201.14.1', l.port);
    assert.equal(h.socket.localAddress, '127.0.0.1');
    assert.equal(h.seen, '127.0.0.1');
    h.socket.destroy();
    const other = await hello('127.201.14.1', l.port, '127.201.14.99');
    assert.equal(other.seen, '127.201.14.99', 'any other client address is still bound');
    other.socket.destroy();
  });

  test('with PROXY v2 on, the backend reads the client address from the header first', async () => {
    const got: Buffer[] = [];
    const { createServer } = await import('node:net');
    const srv = createServer((s) => s.on('data', (d) => got.push(d)));
    await new Promise<void>((r) => srv.listen(0, '127.201.7.10', r));
    cleanup.push(() => new Promise((r) => srv.close(() => r())));
    const port = (srv.address() as { port: number }).port;
    const p: EndpointPolicy = {
      ...policy([]),
      picker: PickerSnapshot.build({
        backends: [{ id: 'w', address: parseIpv4('127.201.7.10'), port, healthy: true }],
        mode: 'fiveTuple',
      }),
    };
    const l = await listener(p, { host: '127.201.7.1', proxyProtocol: true });
    const c = connect({ host: '127.201.7.1', port: l.port, localAddress: '127.201.7.99' });
    c.write('hello');
    await eventually('the header and payload arrive', () => Buffer.concat(got).length >= 28 + 5);
    const all = Buffer.concat(got);
    const h = parseProxyV2(all)!;
    assert.equal(h.command, 'proxy');
    assert.equal(h.srcIp, parseIpv4('127.201.7.99'));
    assert.equal(h.srcPort, c.localPort);
    assert.equal(h.dstIp, parseIpv4('127.201.7.1'));
    assert.equal(h.dstPort, l.port);
    assert.equal(all.subarray(h.length).toString(), 'hello');
    c.destroy();
  });

  test('an idle flow is closed after the idle timeout while a busy one stays open', async () => {
    const bs = await backends(1, 8);
    // 4 minutes at a thousandth of real time: 240 ms.
    const l = await listener(policy(bs), { host: '127.201.8.1', idleMs: 4 * 60_000, timeScale: 0.001 });
    const idle = await hello('127.201.8.1', l.port);
    const busy = await hello('127.201.8.1', l.port);
    const idleClosed = closed(idle.socket);
    let stop = false;
    const keepBusy = (async () => {
      while (!stop) {
        await roundTrip(busy.socket, 'ping');
        await new Promise((r) => setTimeout(r, 40));
      }
    })();
    assert.equal(await idleClosed, 'closed');
    await new Promise((r) => setTimeout(r, 600));
    stop = true;
    await keepBusy;
    assert.ok(!busy.socket.destroyed, 'the busy flow is still open');
    assert.equal(l.idleClosed, 1);
    busy.socket.destroy();
  });

  test('a half-close from the client passes through, and the answer still comes back', async () => {
    const { createServer } = await import('node:net');
    // Reads the whole request up to the client's FIN, then answers with its length and closes.
    const srv = createServer({ allowHalfOpen: true }, (s) => {
      let n = 0;
      s.on('data', (d) => (n += d.length));
      s.on('end', () => s.end(`got ${n}\n`));
    });
    await new Promise<void>((r) => srv.listen(0, '127.201.9.10', r));
    cleanup.push(() => new Promise((r) => srv.close(() => r())));
    const port = (srv.address() as { port: number }).port;
    const p: EndpointPolicy = {
      ...policy([]),
      picker: PickerSnapshot.build({
        backends: [{ id: 'w', address: parseIpv4('127.201.9.10'), port, healthy: true }],
        mode: 'fiveTuple',
      }),
    };
    const l = await listener(p, { host: '127.201.9.1' });
    const c = connect({ host: '127.201.9.1', port: l.port, allowHalfOpen: true });
    let answer = '';
    c.on('data', (d) => (answer += d.toString()));
    const payload = Buffer.alloc(3 * 1024 * 1024, 7);
    c.end(payload);
    assert.equal(await closed(c), 'closed');
    assert.equal(answer, `got ${payload.length}\n`);
  });

  test('a backend that accepts and then resets resets its client, and the balancer keeps serving', async () => {
    const bad = await tcpBackend('bad', '127.201.10.10', 'reset');
    cleanup.push(() => bad.close());
    const good = await backends(1, 10);
    const l = await listener(policy([bad]), { host: '127.201.10.1' });
    for (let i = 0; i < 20; i++) {
      const r = await outcome('127.201.10.1', l.port);
      assert.ok(r === 'reset' || r === 'closed', r);
    }
    l.update({ policy: policy(good), idleMs: 240_000, proxyProtocol: false });
    assert.equal(await outcome('127.201.10.1', l.port), 'answered');
    await eventually('every flow released', () => l.admission.counters.active === 0);
  });

  test('a backend that is gone (connection refused) resets the client rather than hanging it', async () => {
    const gone = await tcpBackend('gone', '127.201.11.10');
    await gone.close();
    const l = await listener(policy([gone]), { host: '127.201.11.1' });
    assert.equal(await outcome('127.201.11.1', l.port), 'reset');
    assert.ok(l.upstreamErrors >= 1);
  });

  for (const [how, third] of [
    ['resets', 20],
    ['closes', 21],
  ] as const) {
    test(`a backend that ${how} after reading the client's bytes: the flow goes on to another with the same bytes`, async () => {
      // Reads the request, then dies without a word (as a process killed mid-request would).
      const { createServer } = await import('node:net');
      const dying = createServer((s) => {
        s.on('error', () => {});
        s.once('data', () => (how === 'resets' ? s.resetAndDestroy() : s.end()));
      });
      await new Promise<void>((r) => dying.listen(0, `127.201.${third}.10`, r));
      cleanup.push(() => new Promise((r) => dying.close(() => r())));
      const dead: Backend = {
        id: 'dying',
        host: `127.201.${third}.10`,
        port: (dying.address() as { port: number }).port,
      } as Backend;
      const [echo] = await backends(1, third);
      const l = await listener(policy([dead, echo!]), { host: `127.201.${third}.1` });
      for (let i = 0; i < 20; i++) {
        // The client speaks first, at once: its line reaches the dying backend before the reset.
        const sock = connect({ host: `127.201.${third}.1`, port: l.port });
        sock.write(`line ${i}\n`);
        const got = await new Promise<string>((ok, fail) => {
          let buf = '';
          setTimeout(() => fail(new Error(`no echo within 5 s, only ${JSON.stringify(buf)}`)), 5000).unref();
          sock.on('error', fail);
          sock.on('data', (d: Buffer) => {
            buf += d.toString();
            if (buf.split('\n').length > 2) ok(buf);
          });
        });
        sock.destroy();
        // web1's hello, then the echo of the very line the client sent.
        assert.deepEqual(got.split('\n').slice(0, 2), [`web1 ${'127.0.0.1'}`, `line ${i}`]);
      }
      assert.ok(l.redispatched >= 1, `${l.redispatched} redispatched`);
    });
  }

  test('a flood beyond the per-client limit is reset while other clients are served', async () => {
    const bs = await backends(2, 12);
    const l = await listener(policy(bs, { maxFlowsPerClient: 20, maxFlows: 100 }), { host: '127.201.12.1' });
    const flood = await Promise.all(
      Array.from({ length: 60 }, () =>
        hello('127.201.12.1', l.port, '127.201.12.66').then(
          (h) => h,
          () => undefined,
        ),
      ),
    );
    const served = flood.filter((h) => h !== undefined);
    assert.equal(served.length, 20, 'exactly the limit is served');
    assert.equal(await outcome('127.201.12.1', l.port, '127.201.12.67'), 'answered');
    for (const h of served) h.socket.destroy();
    await eventually('the flood is released', () => l.admission.counters.active === 0);
    assert.equal(await outcome('127.201.12.1', l.port, '127.201.12.66'), 'answered');
  });

  test('closing the listener closes its flows and frees its address', async () => {
    const bs = await backends(1, 13);
    const l = await TcpListener.open({
      host: '127.201.13.1',
      address: parseIpv4('127.201.13.1'),
      port: 0,
      policy: policy(bs),
      idleMs: 240_000,
      proxyProtocol: false,
      time: scaledTime(1),
    });
    const port = l.port;
    const h = await hello('127.201.13.1', port);
    const done = closed(h.socket);
    await l.close();
    await done;
    const again = await TcpListener.open({
      host: '127.201.13.1',
      address: parseIpv4('127.201.13.1'),
      port,
      policy: policy(bs),
      idleMs: 240_000,
      proxyProtocol: false,
      time: scaledTime(1),
    });
    await again.close();
  });
});
