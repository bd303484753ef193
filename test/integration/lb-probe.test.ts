/**
 * The loopback prober against real sockets, and the health monitor driving it on a scaled clock:
 * a stopped backend is taken out within interval + timeout and put back once it answers again.
 * Addresses: 127.203.0.0/16.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:net';
import { after, describe, test } from 'node:test';
import { HealthMonitor, probe, scaledTime, type HealthStatus, type ProbeSpec } from '../../src/lb/index.ts';
import { eventually, tcpBackend } from '../support/net.ts';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

async function httpish(host: string, answer: string | null): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => {
      if (answer !== null) s.end(answer);
    });
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanup.push(() => new Promise((r) => server.close(() => r())));
  return { server, port: (server.address() as { port: number }).port };
}

const spec = (address: string, port: number, over: Partial<ProbeSpec> = {}): ProbeSpec => ({
  protocol: 'tcp',
  address,
  port,
  intervalMs: 5000,
  timeoutMs: 5000,
  ...over,
});

describe('the loopback prober', () => {
  test('a TCP probe succeeds on a listening port and fails, saying why, on a closed one', async () => {
    const b = await tcpBackend('b', '127.203.1.10');
    assert.deepEqual(await probe(spec(b.host, b.port), 1000), { ok: true, detail: 'connected' });
    await b.close();
    assert.deepEqual(await probe(spec(b.host, b.port), 1000), { ok: false, detail: 'connection refused' });
  });

  test('an HTTP probe wants status 200 exactly', async () => {
    const ok = await httpish('127.203.2.10', 'HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n');
    const bad = await httpish(
      '127.203.2.11',
      'HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n',
    );
    const junk = await httpish('127.203.2.12', 'SSH-2.0-OpenSSH\r\n');
    const http = { protocol: 'http', path: '/healthz' } as const;
    assert.deepEqual(await probe(spec('127.203.2.10', ok.port, http), 1000), {
      ok: true,
      detail: 'HTTP 200',
    });
    assert.deepEqual(await probe(spec('127.203.2.11', bad.port, http), 1000), {
      ok: false,
      detail: 'HTTP 503',
    });
    assert.equal((await probe(spec('127.203.2.12', junk.port, http), 1000)).detail, 'the answer is not HTTP');
  });

  test('a backend that accepts and never answers fails the probe by its deadline', async () => {
    const silent = await httpish('127.203.3.10', null);
    const r = await probe(spec('127.203.3.10', silent.port, { protocol: 'http', path: '/' }), 200);
    assert.deepEqual(r, { ok: false, detail: 'no answer within 200 ms' });
  });
});

describe('health over real probes', () => {
  test('a stopped backend is down within interval + timeout, and up again once it answers', async () => {
    const host = '127.203.4.10';
    let b = await tcpBackend('b', host);
    const port = b.port;
    const changes: HealthStatus[] = [];
    // Probes every 5 s, down after 10 s, at a hundredth of real time.
    const time = scaledTime(0.01);
    const m = new HealthMonitor({ time, prober: probe, onChange: (_k, s) => changes.push(s) });
    cleanup.push(() => Promise.resolve(m.close()));
    m.setTargets(new Map([['b', spec(host, port, { intervalMs: 5000, timeoutMs: 10_000 })]]));
    await eventually('up', () => m.status('b')?.state === 'up');
    const stoppedAt = time.now();
    await b.close();
    await eventually('down', () => m.status('b')?.state === 'down');
    const down = changes.find((c) => c.state === 'down')!;
    assert.ok(
      down.since - stoppedAt <= 5000 + 10_000 + 1000,
      `down after ${down.since - stoppedAt} model ms`,
    );
    b = await tcpBackend('b', host, 'hello', port);
    cleanup.push(() => b.close());
    await eventually('up again', () => m.status('b')?.state === 'up');
    assert.deepEqual(
      changes.map((c) => c.state),
      ['up', 'down', 'up'],
    );
  });
});
