/**
 * Bodies that never finish arriving, through the real server on loopback: a request still arriving
 * after the server's request timeout is answered 408 and its connection closed, and a body whose
 * request was answered before it was read (a 503 of admission control here) is read for a while
 * and then cut off. Before, Fastify turned Node's limit off and either connection stayed open for
 * as long as its client dripped a byte now and then.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { Tokens } from '../../src/api/auth.ts';
import type { Api } from '../../src/api/context.ts';
import { StatusRegistry } from '../../src/agent/index.ts';
import { buildServer } from '../../src/api/server.ts';
import { systemClock } from '../../src/core/index.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';

const REQUEST_TIMEOUT_MS = 1000;
let tc: TestCloud;
let app: Api;
/** Refuses every write at once (no slot, no queue): each answer comes before its body. */
let refusing: Api;
let token: string;

before(async () => {
  tc = await makeCloud();
  const tokens = new Tokens(tc.store);
  token = await tokens.create('op', null);
  const registry = new StatusRegistry(systemClock);
  app = await buildServer({ cloud: tc.cloud, tokens, registry, requestTimeoutMs: REQUEST_TIMEOUT_MS });
  refusing = await buildServer({
    cloud: tc.cloud,
    tokens,
    registry,
    admission: { inFlightMax: 0, queueMax: 0, queueWaitMaxMs: 10, retryAfterSeconds: 1 },
  });
  for (const a of [app, refusing]) await a.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  await app.close();
  await refusing.close();
  await tc.close();
});

/**
 * Sends a POST's headers and the start of its body, then a byte every 200 ms for at most `maxMs`;
 * resolves with what the server sent and when the connection closed (or `undefined`: still open).
 */
async function drip(server: Api, maxMs: number): Promise<{ text: string; closedAfterMs?: number }> {
  const { port } = server.server.address() as AddressInfo;
  const sock = connect(port, '127.0.0.1');
  sock.on('error', () => {});
  let text = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (text += d));
  await once(sock, 'connect');
  const t0 = Date.now();
  sock.write(
    `POST /v1/subscriptions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${token}\r\n` +
      `Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{"name":"`,
  );
  const drops = setInterval(() => sock.writable && sock.write('a'), 200);
  try {
    const closed = await Promise.race([
      once(sock, 'close').then(() => Date.now() - t0),
      new Promise<undefined>((r) => setTimeout(() => r(undefined), maxMs)),
    ]);
    return { text, ...(closed !== undefined ? { closedAfterMs: closed } : {}) };
  } finally {
    clearInterval(drops);
    sock.destroy();
  }
}

test('a request still arriving after the request timeout is answered 408 and its connection closed', async () => {
  const r = await drip(app, 10_000);
  assert.ok(r.closedAfterMs !== undefined, `the connection stayed open: ${r.text}`);
  assert.ok(r.closedAfterMs >= REQUEST_TIMEOUT_MS, `closed after ${r.closedAfterMs} ms`);
  assert.match(r.text, /^HTTP\/1\.1 408 /);
  assert.match(r.text, /"status":408/);
});

test('a body answered before it was read (503) is read for a while, then cut off', async () => {
  const r = await drip(refusing, 12_000);
  assert.match(r.text, /^HTTP\/1\.1 503 /, r.text);
  assert.ok(r.closedAfterMs !== undefined, 'the connection stayed open while the body kept dripping');
  // LINGER_MS (5 s) after the answer, not at once: a client that sends its body in time keeps it.
  assert.ok(r.closedAfterMs >= 4000, `closed after ${r.closedAfterMs} ms`);
});
