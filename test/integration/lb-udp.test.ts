/**
 * The UDP balancer on real loopback sockets: echo through a VIP with the client's address preserved
 * and answers coming back from the VIP, flows pinned to their backend until they expire, expiry after
 * the idle timeout (at a thousandth of real time), ACL drops, and PROXY v2 per datagram.
 * Addresses: 127.202.0.0/16.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, describe, test } from 'node:test';
import { parseIpv4 } from '../../src/core/index.ts';
import {
  PickerSnapshot,
  UdpListener,
  compileAcl,
  parseProxyV2,
  scaledTime,
  type EndpointPolicy,
} from '../../src/lb/index.ts';
import { eventually, udpAsk } from '../support/net.ts';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

interface UdpBackend {
  id: string;
  host: string;
  port: number;
  socket: Socket;
  got: { text: Buffer; from: string }[];
}

/** Answers each datagram with `ID SOURCE-ADDRESS TEXT`. */
async function udpBackend(id: string, host: string): Promise<UdpBackend> {
  const socket = createSocket('udp4');
  const b: UdpBackend = { id, host, port: 0, socket, got: [] };
  socket.on('message', (m, r) => {
    b.got.push({ text: m, from: r.address });
    socket.send(`${id} ${r.address} ${m.toString()}`, r.port, r.address);
  });
  await new Promise<void>((res) => socket.bind({ address: host, port: 0 }, () => res()));
  b.port = socket.address().port;
  cleanup.push(() => new Promise((res) => socket.close(() => res())));
  return b;
}

function policy(bs: UdpBackend[], over: Partial<EndpointPolicy> = {}): EndpointPolicy {
  return {
    picker: PickerSnapshot.build({
      backends: bs.map((b) => ({ id: b.id, address: parseIpv4(b.host), port: b.port, healthy: true })),
      mode: 'fiveTuple',
    }),
    acl: compileAcl([]),
    snat: new Map(),
    preserveClient: true,
    maxFlows: 1000,
    maxFlowsPerClient: 1000,
    ...over,
  };
}

async function listener(
  host: string,
  p: EndpointPolicy,
  opts: { idleMs?: number; scale?: number; proxyProtocol?: boolean } = {},
) {
  const l = await UdpListener.open({
    host,
    address: parseIpv4(host),
    port: 0,
    policy: p,
    idleMs: opts.idleMs ?? 240_000,
    proxyProtocol: opts.proxyProtocol ?? false,
    time: scaledTime(opts.scale ?? 1),
  });
  cleanup.push(() => l.close());
  return l;
}

describe('the UDP balancer', () => {
  test('a datagram reaches a backend from the client address, and the answer comes back from the VIP', async () => {
    const b = await udpBackend('echo1', '127.202.1.10');
    const l = await listener('127.202.1.1', policy([b]));
    const r = await udpAsk('127.202.1.1', l.port, 'ping', { localAddress: '127.202.1.50' });
    assert.equal(r?.text, 'echo1 127.202.1.50 ping');
    assert.equal(r?.from, `127.202.1.1:${l.port}`);
    assert.equal(l.activeFlows, 1);
  });

  test('a flow stays on its backend when the set changes, until it expires after the idle timeout', async () => {
    const bs = [await udpBackend('a', '127.202.2.10'), await udpBackend('b', '127.202.2.11')];
    // 4 minutes at a thousandth of real time: 240 ms.
    const l = await listener('127.202.2.1', policy(bs), { idleMs: 240_000, scale: 0.001 });
    const client = createSocket('udp4');
    cleanup.push(() => new Promise((r) => client.close(() => r())));
    const answers: string[] = [];
    client.on('message', (m) => answers.push(m.toString()));
    await new Promise<void>((r) => client.bind({ address: '127.202.2.50', port: 0 }, () => r()));
    const send = async (text: string) => {
      const n = answers.length;
      client.send(text, l.port, '127.202.2.1');
      return eventually(`an answer to ${text}`, () => answers.length > n && answers[n]!);
    };
    const first = (await send('one')).split(' ')[0]!;
    const other = bs.find((b) => b.id !== first)!;
    l.update({ policy: policy([other]), idleMs: 240_000, proxyProtocol: false });
    assert.equal((await send('two')).split(' ')[0], first, 'the tracked flow keeps its backend');
    await eventually('the flow expires', () => l.activeFlows === 0, 10_000);
    assert.equal(l.expired, 1);
    assert.equal((await send('three')).split(' ')[0], other.id, 'a new flow follows the new set');
  });

  test('a denied client gets no answer, and its datagrams are counted as dropped', async () => {
    const b = await udpBackend('echo', '127.202.3.10');
    const acl = compileAcl([{ order: 1, action: 'deny', remoteSubnet: '127.202.3.66/32' }]);
    const l = await listener('127.202.3.1', policy([b], { acl }));
    assert.equal(
      await udpAsk('127.202.3.1', l.port, 'x', { localAddress: '127.202.3.66', timeoutMs: 300 }),
      undefined,
    );
    assert.equal(b.got.length, 0);
    assert.equal(l.admission.counters.deniedAcl, 1);
    assert.equal(l.dropped, 1);
    assert.ok(await udpAsk('127.202.3.1', l.port, 'y', { localAddress: '127.202.3.67' }));
  });

  test('with PROXY v2 on, every datagram carries the header before its payload', async () => {
    const b = await udpBackend('echo', '127.202.4.10');
    const l = await listener('127.202.4.1', policy([b]), { proxyProtocol: true });
    await udpAsk('127.202.4.1', l.port, 'payload', { localAddress: '127.202.4.50', timeoutMs: 300 });
    await eventually('the datagram arrives', () => b.got.length === 1);
    const h = parseProxyV2(b.got[0]!.text)!;
    assert.equal(h.srcIp, parseIpv4('127.202.4.50'));
    assert.equal(h.dstPort, l.port);
    assert.equal(b.got[0]!.text.subarray(h.length).toString(), 'payload');
  });

  test('with no backend the datagram is dropped and the listener keeps working', async () => {
    const l = await listener('127.202.5.1', policy([]));
    assert.equal(await udpAsk('127.202.5.1', l.port, 'x', { timeoutMs: 200 }), undefined);
    assert.equal(l.admission.counters.noBackend, 1);
    const b = await udpBackend('late', '127.202.5.10');
    l.update({ policy: policy([b]), idleMs: 240_000, proxyProtocol: false });
    assert.ok(await udpAsk('127.202.5.1', l.port, 'x'));
  });
});
