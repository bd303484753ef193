/**
 * The event log over HTTP: GET /v1/events pages (since, limit, next) cover the whole log in order
 * with no duplicate and no gap, and the Server-Sent Events stream at /v1/events/stream, read with a
 * raw text/event-stream parser, resumes after forced disconnects (Last-Event-ID, or ?since=) with
 * nothing lost and nothing repeated while operations run in parallel; a subscription token's
 * stream carries only its subscription's events; and an open stream does not keep the server from
 * stopping.
 */
import assert from 'node:assert/strict';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { call, startServer, type TestServer } from '../support/server.ts';

interface Event {
  seq: number;
  time: string;
  type: string;
  subscription: string | null;
  resource: string;
  reason: string;
  old: Record<string, unknown> | null;
  new: Record<string, unknown> | null;
}
interface Page {
  events: Event[];
  next: number;
}
type Res = Awaited<ReturnType<typeof call>>;

let srv: TestServer;
let op: string;
let betaToken: string;
let serverStopped = false;

const api = (method: string, path: string, body?: unknown, token = op) =>
  call(srv, token, method, path, body);
function ok(r: Res, status = 200): unknown {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text}`);
  return r.body;
}

async function page(query: string, token = op): Promise<Page> {
  const p = ok(await api('GET', `/v1/events${query}`, undefined, token)) as Page;
  assert.ok(Array.isArray(p.events) && Number.isInteger(p.next), JSON.stringify(p).slice(0, 200));
  return p;
}

/** The whole log, by pages of `limit`, checking the paging contract on the way. */
async function walk(limit: number, since = 0, token = op): Promise<Event[]> {
  const out: Event[] = [];
  let cursor = since;
  for (;;) {
    const p = await page(`?since=${cursor}&limit=${limit}`, token);
    assert.ok(p.events.length <= limit, `a page holds at most ${limit} events`);
    if (p.events.length === 0) {
      assert.equal(p.next, cursor, 'an empty page gives back the cursor as next');
      return out;
    }
    assert.ok(p.events[0]!.seq > cursor, 'a page starts after since');
    assert.equal(p.next, p.events.at(-1)!.seq, 'next is the last seq of the page');
    out.push(...p.events);
    cursor = p.next;
  }
}

async function lastSeq(token = op): Promise<number> {
  const all = await walk(1000, 0, token);
  return all.at(-1)?.seq ?? 0;
}

// ------------------------------------------------------------------ a raw text/event-stream client

interface Received {
  id: number;
  event: string;
  data: Event;
}

interface Stream {
  readonly events: Received[];
  readonly comments: string[];
  /** Resolves once some received event satisfies `pred` (or rejects after `ms`). */
  until(pred: (r: Received) => boolean, ms?: number): Promise<void>;
  /** Cuts the connection at once, as a network failure would. */
  destroy(): void;
  /** Resolves when the server ends the response. */
  readonly ended: Promise<void>;
}

function openStream(opts: {
  token: string;
  query?: string;
  lastEventId?: string;
}): Promise<{ status: number; contentType: string; text?: string; stream?: Stream }> {
  const url = new URL(srv.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {
      authorization: `Bearer ${opts.token}`,
      accept: 'text/event-stream',
    };
    if (opts.lastEventId !== undefined) headers['last-event-id'] = opts.lastEventId;
    const req: ClientRequest = request({
      host: url.hostname,
      port: url.port,
      path: `/v1/events/stream${opts.query ?? ''}`,
      headers,
    });
    req.on('error', (e) => {
      if (!destroyed) reject(e);
    });
    let destroyed = false;
    req.on('response', (res: IncomingMessage) => {
      const contentType = String(res.headers['content-type'] ?? '');
      if (res.statusCode !== 200) {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, contentType, text }));
        return;
      }
      const events: Received[] = [];
      const comments: string[] = [];
      const waiters: { pred: (r: Received) => boolean; done: () => void; timer?: NodeJS.Timeout }[] = [];
      let buf = '';
      let id = '';
      let type = '';
      let data: string[] = [];
      const dispatch = () => {
        if (data.length > 0) {
          const r: Received = { id: Number(id), event: type, data: JSON.parse(data.join('\n')) as Event };
          events.push(r);
          for (const w of [...waiters])
            if (w.pred(r)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.done();
            }
        }
        id = '';
        type = '';
        data = [];
      };
      const ended = new Promise<void>((ok) => {
        res.on('end', ok);
        res.on('close', ok);
      });
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (destroyed) return;
        buf += chunk;
        let nl: number;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') dispatch();
          else if (line.startsWith(':')) comments.push(line.slice(1).trim());
          else {
            const colon = line.indexOf(':');
            const field = colon < 0 ? line : line.slice(0, colon);
            const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
            if (field === 'id') id = value;
            else if (field === 'event') type = value;
            else if (field === 'data') data.push(value);
          }
        }
      });
      const stream: Stream = {
        events,
        comments,
        ended,
        until(pred, ms = 20_000) {
          if (events.some(pred)) return Promise.resolve();
          return new Promise<void>((ok, fail) => {
            const w: (typeof waiters)[number] = {
              pred,
              done: () => {
                clearTimeout(w.timer);
                ok();
              },
            };
            w.timer = setTimeout(() => {
              waiters.splice(waiters.indexOf(w), 1);
              fail(
                new Error(
                  `the stream did not deliver the awaited event in ${ms} ms (last id ${events.at(-1)?.id ?? 'none'}, ${events.length} events)`,
                ),
              );
            }, ms);
            waiters.push(w);
          });
        },
        destroy() {
          destroyed = true;
          // Waits still pending (the other side of a race) are dropped, not failed.
          for (const w of waiters.splice(0)) clearTimeout(w.timer);
          res.destroy();
          req.destroy();
        },
      };
      resolve({ status: 200, contentType, stream });
    });
    req.end();
  });
}

async function mustOpen(opts: Parameters<typeof openStream>[0]): Promise<Stream> {
  const r = await openStream(opts);
  assert.equal(r.status, 200, `the stream answered ${r.status}: ${r.text ?? ''}`);
  assert.match(r.contentType, /^text\/event-stream/);
  return r.stream!;
}

/** Each received event is the logged one: same id, same type, same body. */
function assertSameAsLog(got: readonly Received[], log: readonly Event[]): void {
  const seqs = got.map((r) => r.id);
  const dup = seqs.filter((s, i) => seqs.indexOf(s) !== i);
  assert.deepEqual(dup, [], 'no event is delivered twice');
  const wanted = new Set(log.map((e) => e.seq));
  const lost = log.filter((e) => !seqs.includes(e.seq)).map((e) => e.seq);
  assert.deepEqual(lost, [], 'no event is lost');
  assert.deepEqual(
    seqs.filter((s) => !wanted.has(s)),
    [],
    'no event that is not in the log',
  );
  assert.deepEqual(
    seqs,
    log.map((e) => e.seq),
    'in the order of the log',
  );
  for (let i = 0; i < got.length; i++) {
    const r = got[i]!;
    assert.equal(r.event, r.data.type, `event: names the type of ${r.id}`);
    assert.equal(r.data.seq, r.id, `id: is the seq of ${r.id}`);
    assert.deepEqual(r.data, log[i], `event ${r.id} is the logged one`);
  }
}

// ------------------------------------------------------------------ workloads

/** A series of operations on one service of `sub`, producing events of every kind. */
async function workload(sub: string, svc: string, rounds: number, token = op): Promise<void> {
  ok(await api('POST', `/v1/subscriptions/${sub}/services`, { name: svc, vnet: 'net' }, token), 201);
  for (let i = 0; i < rounds; i++) {
    const a = `a${i}`;
    const b = `b${i}`;
    const vm = (n: string) => `/v1/services/${svc}/vms/${n}`;
    ok(await api('POST', `/v1/services/${svc}/vms`, { name: a, subnet: 'front' }, token), 201);
    ok(await api('POST', `/v1/services/${svc}/vms`, { name: b, subnet: 'front', ilpip: true }, token), 201);
    for (const [n, o] of [
      [a, 'stop'],
      [a, 'start'],
      [b, 'restart'],
      [a, 'redeploy'],
      [b, 'deallocate'],
      [b, 'start'],
    ] as const)
      ok(await api('POST', `${vm(n)}/${o}`, undefined, token));
    ok(await api('PATCH', vm(a), { workload: i % 2 === 0 ? 'whoami' : 'echo' }, token));
    assert.equal((await api('DELETE', vm(b), undefined, token)).status, 204);
  }
}

async function newSubscription(name: string): Promise<void> {
  ok(await api('POST', '/v1/subscriptions', { name }), 201);
  ok(
    await api('POST', `/v1/subscriptions/${name}/vnets`, {
      name: 'net',
      addressSpace: ['127.16.0.0/16'],
      subnets: [{ name: 'front', cidr: '127.16.0.0/22' }],
    }),
    201,
  );
}

// ------------------------------------------------------------------ set-up

before(async () => {
  srv = await startServer();
  op = srv.operatorToken;
  await newSubscription('alpha');
  await newSubscription('beta');
  betaToken = (
    ok(await api('POST', '/v1/subscriptions/beta/tokens', { name: 'b' }), 201) as { token: string }
  ).token;
  // One apply of 260 VMs: well over a thousand events, so that pages and the stream's backlog
  // cross the 1000-event page size of the server.
  const vms = (n: number) => Array.from({ length: n }, (_, i) => ({ name: `vm${i}`, subnet: 'wide' }));
  const doc = {
    subscriptions: [
      {
        name: 'bulk',
        virtualNetworks: [
          {
            name: 'bulk-net',
            addressSpace: ['127.20.0.0/16'],
            subnets: [{ name: 'wide', cidr: '127.20.0.0/23' }],
          },
        ],
        cloudServices: [
          { name: 'bulk1', vnet: 'bulk-net', vms: vms(130) },
          { name: 'bulk2', vnet: 'bulk-net', vms: vms(130) },
        ],
      },
    ],
  };
  ok(await api('POST', '/v1/apply', doc));
});

after(async () => {
  if (!serverStopped) await srv.stop();
});

// ------------------------------------------------------------------ pagination

describe('GET /v1/events', () => {
  test('pages of any size cover the whole log in order, with no duplicate and no gap', async () => {
    const all = await walk(1000);
    assert.ok(all.length > 1000, `a log of more than one page (${all.length} events)`);
    const seqs = all.map((e) => e.seq);
    assert.deepEqual(
      seqs,
      Array.from({ length: all.length }, (_, i) => i + 1),
      'seqs run 1, 2, 3… with no gap',
    );
    for (const e of all) {
      assert.equal(typeof e.time, 'string');
      assert.ok(!Number.isNaN(Date.parse(e.time)));
      assert.equal(typeof e.type, 'string');
      assert.equal(typeof e.resource, 'string');
      assert.equal(typeof e.reason, 'string');
      assert.ok(e.subscription === null || typeof e.subscription === 'string');
      assert.ok(e.old === null || typeof e.old === 'object');
      assert.ok(e.new === null || typeof e.new === 'object');
    }
    for (const limit of [7, 100, 333]) assert.deepEqual(await walk(limit), all, `pages of ${limit}`);
    const tail = all.at(-1)!.seq;
    assert.deepEqual(await walk(1, tail - 5), all.slice(-5), 'pages of one');
    assert.deepEqual(await walk(50, 500), all.slice(500), 'from the middle');
  });

  test('the default page is 100 events, limit is clamped to 1…1000, and since past the end gives an empty page', async () => {
    const all = await walk(1000);
    const first = await page('');
    assert.deepEqual(first.events, all.slice(0, 100));
    assert.equal(first.next, 100);
    assert.deepEqual((await page('?limit=0')).events, all.slice(0, 1));
    assert.deepEqual((await page('?limit=99999')).events, all.slice(0, 1000));
    assert.deepEqual((await page('?since=10&limit=3')).events, all.slice(10, 13));
    const end = all.at(-1)!.seq;
    assert.deepEqual(await page(`?since=${end}`), { events: [], next: end });
    assert.deepEqual(await page(`?since=${end + 1000}`), { events: [], next: end + 1000 });
  });

  test('malformed paging parameters are refused with 400 problems', async () => {
    for (const q of [
      '?since=-1',
      '?since=abc',
      '?limit=99999999',
      '?since=1&since=2',
      '?limit=1.5',
      '?cursor=3',
    ]) {
      const r = await api('GET', `/v1/events${q}`);
      assert.equal(r.status, 400, `${q}: ${r.text}`);
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal((r.body as { code: string }).code, 'BAD_REQUEST');
    }
  });

  test('a page stays consistent while operations append events', async () => {
    const start = await lastSeq();
    const writer = workload('alpha', 'pager', 3);
    const seen: Event[] = [];
    let cursor = start;
    let done = false;
    writer.then(
      () => (done = true),
      () => (done = true),
    );
    while (!done) {
      const p = await page(`?since=${cursor}&limit=5`);
      seen.push(...p.events);
      cursor = p.next;
    }
    await writer;
    seen.push(...(await walk(5, cursor)));
    assert.deepEqual(seen, await walk(1000, start), 'paging during writes sees every event once, in order');
  });
});

// ------------------------------------------------------------------ the stream

describe('GET /v1/events/stream', () => {
  test('replays a backlog larger than a page from since=0, then follows live events', async () => {
    const s = await mustOpen({ token: op, query: '?since=0' });
    try {
      const end = await lastSeq();
      await s.until((r) => r.id === end);
      ok(await api('POST', '/v1/subscriptions/alpha/reserved-ips', { name: 'live1' }), 201);
      const live = await lastSeq();
      await s.until((r) => r.id === live);
      assert.ok(s.comments.length > 0, 'the stream opens with a comment');
      assert.ok(s.events.length > 1000);
      assertSameAsLog(s.events, await walk(1000));
    } finally {
      s.destroy();
    }
  });

  test('?since=N starts right after N; Last-Event-ID takes precedence over since', async () => {
    const all = await walk(1000);
    const n = all[700]!.seq;
    const s = await mustOpen({ token: op, query: `?since=${n}` });
    try {
      await s.until((r) => r.id === all.at(-1)!.seq);
      assertSameAsLog(s.events, all.slice(701));
    } finally {
      s.destroy();
    }
    const t = await mustOpen({ token: op, query: '?since=3', lastEventId: String(all.at(-3)!.seq) });
    try {
      await t.until((r) => r.id === all.at(-1)!.seq);
      assertSameAsLog(t.events, all.slice(-2));
    } finally {
      t.destroy();
    }
  });

  test('a malformed Last-Event-ID or since is refused with a 400 problem', async () => {
    for (const opts of [
      { token: op, lastEventId: 'abc' },
      { token: op, lastEventId: '-1' },
      { token: op, query: '?since=abc' },
      { token: op, query: '?since=1e3' },
    ]) {
      const r = await openStream(opts);
      assert.equal(r.status, 400, `${JSON.stringify(opts)}: ${r.text ?? '(a stream)'}`);
      assert.match(r.contentType, /^application\/problem\+json/);
      r.stream?.destroy();
    }
  });

  test('after forced disconnects mid-stream, resuming with Last-Event-ID loses and repeats nothing while operations run in parallel', async () => {
    const start = await lastSeq();
    const received: Received[] = [];
    let writerDone = false;
    const writer = Promise.all([
      workload('alpha', 'w1', 4),
      workload('alpha', 'w2', 4),
      workload('beta', 'w3', 4),
      workload('beta', 'w4', 4, betaToken),
    ]).finally(() => (writerDone = true));
    let cuts = 0;
    for (let conn = 0; ; conn++) {
      const last = received.at(-1)?.id ?? start;
      const s = await mustOpen(
        conn === 0 ? { token: op, query: `?since=${start}` } : { token: op, lastEventId: String(last) },
      );
      if (!writerDone && cuts < 6) {
        // Cut the connection once it has carried a few events, while the writers keep writing.
        const few = 8 + 5 * conn;
        await Promise.race([s.until(() => s.events.length >= few, 30_000), writer]);
        s.destroy();
        if (!writerDone) cuts++;
        received.push(...s.events);
        continue;
      }
      await writer;
      const end = await lastSeq();
      try {
        await s.until((r) => r.id >= end);
      } finally {
        s.destroy();
      }
      received.push(...s.events);
      break;
    }
    assert.ok(cuts >= 2, `the stream was cut at least twice while operations ran (${cuts})`);
    assertSameAsLog(received, await walk(1000, start));
  });

  test('a disconnect in the middle of the backlog resumes from the last event received', async () => {
    const s = await mustOpen({ token: op, query: '?since=0' });
    await s.until(() => s.events.length >= 40);
    s.destroy();
    const first = [...s.events];
    const rest = await mustOpen({ token: op, lastEventId: String(first.at(-1)!.id) });
    try {
      const end = await lastSeq();
      await rest.until((r) => r.id === end);
      assertSameAsLog([...first, ...rest.events], await walk(1000));
    } finally {
      rest.destroy();
    }
  });

  test("a subscription token's stream carries exactly its subscription's events, across a reconnect", async () => {
    const s = await mustOpen({ token: betaToken, query: '?since=0' });
    const writer = Promise.all([workload('alpha', 'x1', 2), workload('beta', 'x2', 2, betaToken)]);
    await Promise.race([s.until(() => s.events.length >= 10), writer]);
    s.destroy();
    const got = [...s.events];
    await writer;
    const mine = await walk(1000, 0, betaToken);
    assert.ok(mine.every((e) => e.subscription === 'beta'));
    const t = await mustOpen({ token: betaToken, lastEventId: String(got.at(-1)?.id ?? 0) });
    try {
      await t.until((r) => r.id === mine.at(-1)!.seq);
    } finally {
      t.destroy();
    }
    got.push(...t.events);
    assert.deepEqual(
      got.filter((r) => r.data.subscription !== 'beta').map((r) => `${r.id} ${r.event} ${r.data.resource}`),
      [],
      'no event of another subscription or of the operator',
    );
    assertSameAsLog(got, mine);
  });
});

describe('shutdown', () => {
  test('the server stops promptly on SIGTERM while an event stream is open', async () => {
    const s = await mustOpen({ token: op, query: `?since=${await lastSeq()}` });
    serverStopped = true;
    const t0 = Date.now();
    const code = await srv.stop(); // SIGTERM, then SIGKILL after 5 s
    const ms = Date.now() - t0;
    s.destroy();
    assert.equal(
      code,
      0,
      `vipdip up exited with ${code} after ${ms} ms (null: killed after hanging on SIGTERM)`,
    );
    assert.ok(ms < 5000, `stopping took ${ms} ms`);
  });
});
