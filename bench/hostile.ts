/**
 * Hostile-tenant benchmark (issue 11): while a tenant token sends maximum-size hostile bodies to every
 * route that takes a body, a second process measures `/healthz` latency every 10 ms. A request up to
 * its limit must never hold the server's event loop: target `/healthz` p99 < 100 ms, max < 250 ms, and
 * no response over 64 KiB.
 *
 * The routes (every POST, PUT, PATCH and DELETE) come from the server's own OpenAPI document, so a new route is covered without a
 * hand-written list. Each route gets 10 requests: 5 wide (an array of ~1 MiB of `{}` items, the
 * shape that made ajv list a million problems) and 5 deep (nesting as deep as 1 MiB allows); the
 * apply route gets its YAML variants too.
 *
 * `npm run bench -- hostile`
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../test/support/server.ts';
import { ROOT, machine, saveJson, saveSection } from './report.ts';

const BODY_BYTES = (1 << 20) - 64;
const PER_ROUTE = 10;
const REQUEST_TIMEOUT_MS = 60_000;
const TARGET_P99_MS = 100;
const TARGET_MAX_MS = 250;
const TARGET_RESPONSE_BYTES = 64 * 1024;

interface Schema {
  type?: string | string[];
  anyOf?: Schema[];
  properties?: Record<string, Schema>;
}

const isType = (s: Schema | undefined, t: string): boolean =>
  s !== undefined &&
  (s.type === t ||
    (Array.isArray(s.type) && s.type.includes(t)) ||
    (s.anyOf ?? []).some((x) => isType(x, t)));

interface Op {
  method: string;
  path: string;
}

/** A wide JSON body: `{"key":[{},{},…]}` of about `bytes`, on an array field the route reads. */
function wide(key: string, bytes: number): Buffer {
  const n = Math.floor((bytes - key.length - 10) / 3);
  return Buffer.from(`{${JSON.stringify(key)}:[${Array.from({ length: n }, () => '{}').join(',')}]}`);
}

/** A string field as long as the size allows. */
function long(key: string, bytes: number): Buffer {
  return Buffer.from(`{${JSON.stringify(key)}:"${'a'.repeat(bytes - key.length - 10)}"}`);
}

function deepJson(bytes: number): Buffer {
  const d = Math.floor((bytes - 20) / 2);
  return Buffer.from(`${'['.repeat(d)}${']'.repeat(d)}`);
}

function deepYaml(bytes: number): Buffer {
  const d = Math.floor((bytes - 20) / 2);
  return Buffer.from(`a: ${'['.repeat(d)}${']'.repeat(d)}\n`);
}

function wideYaml(bytes: number): Buffer {
  const n = Math.floor((bytes - 20) / 5);
  return Buffer.from(`subscriptions:\n${'- {}\n'.repeat(n)}`);
}

/** Measures /healthz from another process, so the hostile client's own work cannot skew it. */
function startProbe(url: string): { stop: () => Promise<number[]> } {
  const code = `
    const lat = [];
    let on = true;
    process.on('message', () => { on = false; });
    const deadline = Date.now() + 15 * 60_000;
    while (on && Date.now() < deadline) {
      const t0 = performance.now();
      try { const r = await fetch(${JSON.stringify(`${url}/healthz`)}); await r.arrayBuffer(); }
      catch { lat.push(-1); continue; }
      lat.push(performance.now() - t0);
      await new Promise((r) => setTimeout(r, 10));
    }
    process.send(lat, () => process.exit(0));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return {
    stop: () =>
      new Promise((ok) => {
        child.once('message', (m) => ok(m as number[]));
        child.send('stop');
      }),
  };
}

interface Figures {
  healthz: { p50Ms: number; p99Ms: number; maxMs: number; failed: number; samples: number };
  largestResponseBytes: number;
  serverAliveAfter: boolean;
  seconds: number;
}

/** The figures of the last run made with `--before` (the code before the fix), if any. */
function readBefore(): Figures | undefined {
  try {
    const all = JSON.parse(readFileSync(join(ROOT, 'bench/results/hostile.json'), 'utf8')) as {
      before?: Figures;
    };
    return all.before;
  } catch {
    return undefined;
  }
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? NaN;
};

export async function run(args: string[] = []): Promise<void> {
  const label = args.includes('--before') ? 'before' : 'after';
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-hostile-'));
  const server = await startServer({ dir });
  try {
    const op = { authorization: `Bearer ${server.operatorToken}`, 'content-type': 'application/json' };
    const post = async (path: string, body: unknown) => {
      const r = await fetch(`${server.url}${path}`, {
        method: 'POST',
        headers: op,
        body: JSON.stringify(body),
      });
      if (!r.ok) throw new Error(`${path}: ${r.status} ${await r.text()}`);
      return (await r.json()) as Record<string, unknown>;
    };
    await post('/v1/subscriptions', { name: 'tenant-a' });
    const { token } = (await post('/v1/subscriptions/tenant-a/tokens', { name: 'bench' })) as {
      token: string;
    };
    const doc = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as {
      paths: Record<
        string,
        Record<string, { requestBody?: { content?: Record<string, { schema?: Schema }> } }>
      >;
    };
    const ops: (Op & { arrayKey: string; stringKey: string })[] = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, o] of Object.entries(methods)) {
        // Every method that may carry a body: a route that declares none must not parse one either.
        if (!['post', 'put', 'patch', 'delete'].includes(method)) continue;
        const concrete = path
          .replace('{subscription}', 'tenant-a')
          .replace(/\{operation\}/, 'start')
          .replace(/\{[a-z]+\}/g, 'x');
        const props = Object.values(o.requestBody?.content ?? {})[0]?.schema?.properties ?? {};
        const arrayKey = Object.keys(props).find((k) => isType(props[k], 'array')) ?? 'subscriptions';
        const stringKey = Object.keys(props).find((k) => isType(props[k], 'string')) ?? 'name';
        ops.push({ method: method.toUpperCase(), path: concrete, arrayKey, stringKey });
      }
    }
    const deep = { name: 'deep', type: 'application/json', body: deepJson(BODY_BYTES) };
    const yaml = [
      { name: 'wide-yaml', type: 'application/yaml', body: wideYaml(BODY_BYTES) },
      { name: 'deep-yaml', type: 'application/yaml', body: deepYaml(BODY_BYTES) },
    ];
    const probe = startProbe(server.url);
    await new Promise((r) => setTimeout(r, 300));
    const rows: {
      route: string;
      requests: number;
      statuses: string;
      maxResponseBytes: number;
      maxSeconds: number;
    }[] = [];
    const t0 = performance.now();
    for (const o of ops) {
      const mine = [
        { name: 'wide', type: 'application/json', body: wide(o.arrayKey, BODY_BYTES) },
        { name: 'long', type: 'application/json', body: long(o.stringKey, BODY_BYTES) },
        deep,
        ...(o.path === '/v1/apply' ? yaml : []),
      ];
      const statuses = new Map<string, number>();
      let maxBytes = 0;
      let maxSeconds = 0;
      for (let i = 0; i < PER_ROUTE; i++) {
        const p = mine[i % mine.length]!;
        const s0 = performance.now();
        let status = 'error';
        try {
          const r = await fetch(`${server.url}${o.path}`, {
            method: o.method,
            headers: { authorization: `Bearer ${token}`, 'content-type': p.type },
            body: p.body,
            signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
          });
          const b = await r.arrayBuffer();
          maxBytes = Math.max(maxBytes, b.byteLength);
          status = String(r.status);
        } catch (e) {
          status = (e as Error).name === 'TimeoutError' ? 'timeout' : 'reset';
        }
        maxSeconds = Math.max(maxSeconds, (performance.now() - s0) / 1000);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      rows.push({
        route: `${o.method} ${o.path}`,
        requests: PER_ROUTE,
        statuses: [...statuses].map(([s, n]) => `${s}×${n}`).join(' '),
        maxResponseBytes: maxBytes,
        maxSeconds,
      });
    }
    const seconds = (performance.now() - t0) / 1000;
    const lat = await probe.stop();
    const ok = lat.filter((x) => x >= 0);
    const alive = (await fetch(`${server.url}/healthz`).catch(() => undefined))?.ok === true;
    const result = {
      machine: machine(),
      routes: rows.length,
      requests: rows.length * PER_ROUTE,
      seconds,
      healthz: {
        samples: lat.length,
        failed: lat.length - ok.length,
        p50Ms: pct(ok, 50),
        p99Ms: pct(ok, 99),
        maxMs: Math.max(...ok),
      },
      largestResponseBytes: Math.max(...rows.map((r) => r.maxResponseBytes)),
      serverAliveAfter: alive,
      rows,
    };
    console.log(JSON.stringify(result.healthz), 'largest', result.largestResponseBytes, 'alive', alive);
    for (const r of rows) console.log(r.route, r.statuses, r.maxResponseBytes, r.maxSeconds.toFixed(2));
    await saveJson('hostile', label, result);
    const before = readBefore();
    const h = result.healthz;
    const verdict = (x: boolean) => (x ? 'met' : '**missed**');
    const b = (f: (x: Figures) => string) => (before === undefined ? '–' : f(before));
    const worst = [...rows].sort((a, b) => b.maxSeconds - a.maxSeconds).slice(0, 5);
    await saveSection(
      'hostile',
      'Hostile tenant: /healthz while maximum-size bodies arrive',
      [
        `\`npm run bench -- hostile\`: a tenant token sends ${result.requests} hostile bodies of up to 1 MiB ` +
          `(wide arrays of \`{}\`, nesting as deep as the size allows, YAML variants to apply) to every ` +
          `route with a body (${result.routes}, read from /v1/openapi.json), one after another, while a ` +
          `second process asks \`/healthz\` every 10 ms.`,
        '',
        '| figure | before (issue 11) | now | target |',
        '| --- | ---: | ---: | --- |',
        `| /healthz p50 | ${b((x) => `${x.healthz.p50Ms.toFixed(1)} ms`)} | ${h.p50Ms.toFixed(1)} ms | |`,
        `| /healthz p99 | ${b((x) => `${x.healthz.p99Ms.toFixed(1)} ms`)} | ${h.p99Ms.toFixed(1)} ms | < ${TARGET_P99_MS} ms: ${verdict(h.p99Ms < TARGET_P99_MS)} |`,
        `| /healthz max | ${b((x) => `${x.healthz.maxMs.toFixed(1)} ms`)} | ${h.maxMs.toFixed(1)} ms | < ${TARGET_MAX_MS} ms: ${verdict(h.maxMs < TARGET_MAX_MS)} |`,
        `| /healthz failed | ${b((x) => `${x.healthz.failed} of ${x.healthz.samples}`)} | ${h.failed} of ${h.samples} | 0 |`,
        `| largest response | ${b((x) => `${(x.largestResponseBytes / 1024).toFixed(1)} KiB`)} | ${(result.largestResponseBytes / 1024).toFixed(1)} KiB | ≤ 64 KiB: ${verdict(result.largestResponseBytes <= TARGET_RESPONSE_BYTES)} |`,
        `| server alive after | ${b((x) => (x.serverAliveAfter ? 'yes' : 'no'))} | ${alive ? 'yes' : 'no'} | yes |`,
        `| all ${result.requests} requests | ${b((x) => `${x.seconds.toFixed(1)} s`)} | ${seconds.toFixed(1)} s | |`,
        '',
        'Slowest routes (longest single request):',
        '',
        '| route | answers | longest |',
        '| --- | --- | ---: |',
        ...worst.map((r) => `| \`${r.route}\` | ${r.statuses} | ${r.maxSeconds.toFixed(2)} s |`),
      ].join('\n'),
    );
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
