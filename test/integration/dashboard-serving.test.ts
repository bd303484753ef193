/**
 * The dashboard's files are served by `vipdip up` without a token, with cache headers fit for
 * hashed assets and a strict Content-Security-Policy, while every /v1 route stays behind the
 * bearer token; the API additions the dashboard reads (whoami, event log filters) are tenant-scoped.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Tokens } from '../../src/api/auth.ts';
import { DASHBOARD_CSP } from '../../src/api/dashboard.ts';
import { buildServer } from '../../src/api/server.ts';
import { StatusRegistry } from '../../src/agent/index.ts';
import { systemClock } from '../../src/core/index.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';
import { call, startServer, type TestServer } from '../support/server.ts';

const DIST = resolve(import.meta.dirname, '../../dist/web');

interface Event {
  seq: number;
  type: string;
  resource: string;
  subscription: string | null;
}
interface Page {
  events: Event[];
  next: number;
}

let srv: TestServer;
let tenant: string;

function raw(
  path: string,
  method = 'GET',
): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  const url = new URL(srv.url);
  return new Promise((ok, fail) => {
    const req = request({ host: url.hostname, port: url.port, path, method }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => ok({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    req.on('error', fail);
    req.end();
  });
}

before(async () => {
  assert.ok(
    existsSync(join(DIST, 'index.html')),
    `the dashboard is not built in ${DIST}: run npm run build:web (npm ci runs it)`,
  );
  srv = await startServer({ args: ['--demo', '--seed', '3'] });
  const made = await call(srv, srv.operatorToken, 'POST', '/v1/subscriptions/fabrikam/tokens', {
    name: 'dash',
  });
  assert.equal(made.status, 201, made.text);
  tenant = (made.body as { token: string }).token;
});

after(async () => {
  await srv?.stop();
});

describe('the dashboard served by vipdip up', () => {
  test('the page answers at / and at every client route, without a token, with a strict CSP and no-cache', async () => {
    for (const path of [
      '/',
      '/services/shop',
      '/services/shop/vms/web1',
      '/subscriptions/contoso/vnets/shop-net',
      '/events',
    ]) {
      const r = await call(srv, undefined, 'GET', path);
      assert.equal(r.status, 200, `${path}: ${r.text.slice(0, 200)}`);
      assert.match(r.headers.get('content-type') ?? '', /^text\/html/);
      assert.equal(r.headers.get('content-security-policy'), DASHBOARD_CSP);
      assert.equal(r.headers.get('cache-control'), 'no-cache');
      assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
      assert.match(r.text, /<script type="module" crossorigin src="\/assets\/index-[\w-]+\.js"><\/script>/);
    }
    const head = await raw('/', 'HEAD');
    assert.equal(head.status, 200);
  });

  test('the CSP allows nothing but this origin: no inline script or style, no framing, no other host', () => {
    const directives = new Map(
      DASHBOARD_CSP.split('; ').map((d) => [d.split(' ')[0], d.split(' ').slice(1)]),
    );
    assert.deepEqual(directives.get('default-src'), ["'none'"]);
    for (const d of ['script-src', 'style-src', 'connect-src', 'img-src'])
      assert.deepEqual(directives.get(d), ["'self'"], d);
    assert.deepEqual(directives.get('frame-ancestors'), ["'none'"]);
    assert.ok(!DASHBOARD_CSP.includes('unsafe'), 'no unsafe-inline nor unsafe-eval');
  });

  test('the built page loads nothing from another origin', () => {
    const page = readdirSync(DIST, { recursive: true, encoding: 'utf8' }).filter((f) =>
      /\.(html|css)$/.test(f),
    );
    assert.ok(page.length >= 2, page.join(' '));
    for (const f of page) {
      const text = readFileSync(join(DIST, f), 'utf8');
      assert.doesNotMatch(text, /(src|href)=["']?(https?:)?\/\//, f);
      assert.doesNotMatch(text, /url\(["']?(https?:)?\/\//, f);
    }
  });

  test('hashed assets are public and immutable for a year; the icon too is public', async () => {
    const page = await call(srv, undefined, 'GET', '/');
    const assets = [...page.text.matchAll(/(?:src|href)="(\/assets\/[^"]+)"/g)].map((m) => m[1]!);
    assert.ok(assets.length >= 2, `the page names its script and stylesheet: ${assets.join(' ')}`);
    for (const a of assets) {
      const r = await fetch(srv.url + a);
      assert.equal(r.status, 200, a);
      assert.equal(r.headers.get('cache-control'), 'public, max-age=31536000, immutable', a);
      assert.match(r.headers.get('content-type') ?? '', a.endsWith('.js') ? /javascript/ : /text\/css/);
      await r.arrayBuffer();
    }
    const icon = await fetch(`${srv.url}/favicon.svg`);
    assert.equal(icon.status, 200);
    assert.match(icon.headers.get('content-type') ?? '', /image\/svg\+xml/);
    await icon.arrayBuffer();
  });

  test('a missing asset, a path climbing out of assets, and an unknown page answer 4xx problems', async () => {
    for (const path of [
      '/assets/nope-123.js',
      '/assets/../../package.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/nope',
    ]) {
      const r = await raw(path);
      assert.ok(r.status >= 400 && r.status < 500, `${path} answered ${r.status}`);
      assert.match(String(r.headers['content-type']), /application\/problem\+json/, path);
      assert.doesNotMatch(r.text, /"name": "vipdip"/, `${path} leaked package.json`);
    }
  });

  test('the API under /v1 still needs the token, next to the public page', async () => {
    for (const path of ['/v1/services', '/v1/whoami', '/v1/events', '/v1/events/stream']) {
      const r = await call(srv, undefined, 'GET', path);
      assert.equal(r.status, 401, path);
    }
  });
});

describe('GET /v1/whoami', () => {
  test('tells the operator token from a subscription token, naming the subscription', async () => {
    const op = await call(srv, srv.operatorToken, 'GET', '/v1/whoami');
    assert.deepEqual(op.body, { kind: 'operator', name: 'operator', subscription: null });
    const sub = await call(srv, tenant, 'GET', '/v1/whoami');
    assert.deepEqual(sub.body, { kind: 'subscription', name: 'dash', subscription: 'fabrikam' });
  });
});

describe('the event log filters the dashboard reads', () => {
  test('resource= gives only the events of the named resources, oldest first, in full', async () => {
    const all = (await call(srv, srv.operatorToken, 'GET', '/v1/events?limit=1000')).body as Page;
    const want = all.events.filter((e) => e.resource === 'vm/shop/web1' || e.resource === 'service/shop');
    assert.ok(want.length >= 5, 'the demo gives web1 and shop some history');
    const got = (await call(srv, srv.operatorToken, 'GET', '/v1/events?resource=vm/shop/web1,service/shop'))
      .body as Page;
    assert.deepEqual(got.events, want);
  });

  test('order=desc gives the newest first, and before= pages back to the start without gaps', async () => {
    const all = ((await call(srv, srv.operatorToken, 'GET', '/v1/events?limit=1000')).body as Page).events;
    const newest = (await call(srv, srv.operatorToken, 'GET', '/v1/events?order=desc&limit=1')).body as Page;
    assert.equal(newest.events[0]!.seq, all.at(-1)!.seq);
    const back: Event[] = [];
    let before: number | undefined;
    for (let i = 0; i < 100; i++) {
      const q = `/v1/events?order=desc&limit=7${before !== undefined ? `&before=${before}` : ''}`;
      const page = (await call(srv, srv.operatorToken, 'GET', q)).body as Page;
      if (page.events.length === 0) break;
      back.push(...page.events);
      before = page.next;
    }
    assert.deepEqual(
      back.map((e) => e.seq),
      all.map((e) => e.seq).reverse(),
    );
  });

  test("a subscription token filtering on another subscription's resource gets nothing", async () => {
    const r = await call(srv, tenant, 'GET', '/v1/events?resource=vm/shop/web1,service/shop&order=desc');
    assert.equal(r.status, 200, r.text);
    assert.deepEqual((r.body as Page).events, []);
    const own = (await call(srv, tenant, 'GET', '/v1/events?resource=vm/blog/www1')).body as Page;
    assert.ok(own.events.length > 0);
    assert.ok(own.events.every((e) => e.subscription === 'fabrikam' && e.resource === 'vm/blog/www1'));
  });

  test('contradictory or oversized filters are refused with a 400 problem', async () => {
    for (const q of [
      'before=3',
      'order=desc&since=3',
      'order=sideways',
      'resource=',
      'resource=a,,b',
      `resource=${Array.from({ length: 17 }, (_, i) => `vm/s/v${i}`).join(',')}`,
    ]) {
      const r = await call(srv, srv.operatorToken, 'GET', `/v1/events?${q}`);
      assert.equal(r.status, 400, `${q}: ${r.text}`);
      assert.match(r.headers.get('content-type') ?? '', /application\/problem\+json/);
    }
  });
});

describe('the server without a built dashboard, and the public flag', () => {
  let tc: TestCloud;
  const registry = new StatusRegistry(systemClock);
  let empty: string;
  before(async () => {
    tc = await makeCloud();
    empty = mkdtempSync(join(tmpdir(), 'vipdip-nodash-'));
  });
  after(async () => {
    registry.close();
    await tc.close();
    rmSync(empty, { recursive: true, force: true });
  });

  test('says on / that the dashboard is not built and how to build it, and the API still works', async () => {
    const app = await buildServer({
      cloud: tc.cloud,
      tokens: new Tokens(tc.store),
      registry,
      dashboard: { dir: empty },
    });
    try {
      const r = await app.inject({ method: 'GET', url: '/' });
      assert.equal(r.statusCode, 503);
      assert.match(r.headers['content-type'] as string, /^text\/html/);
      assert.match(r.body, /dashboard is not built/);
      assert.match(r.body, /npm run build:web/);
      assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
      assert.equal((await app.inject({ method: 'GET', url: '/v1/services' })).statusCode, 401);
    } finally {
      await app.close();
    }
  });

  test('refuses to start with a public route under /v1', async () => {
    const app = await buildServer({ cloud: tc.cloud, tokens: new Tokens(tc.store), registry });
    try {
      assert.throws(
        () => app.get('/v1/leak', { config: { public: true } }, () => 'secret'),
        /under \/v1 and must not be public/,
      );
    } finally {
      await app.close();
    }
  });
});
