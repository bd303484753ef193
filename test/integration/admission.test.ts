/**
 * Early refusal (issue 14, item 7) through the real server (Fastify, the lifecycle, SQLite) on a
 * loopback socket: a burst of writes far above what the server runs at once is partly refused at
 * once with 503, Retry-After and a problem, while every accepted write finishes with its normal
 * answer, reads keep being served, and fsck finds the state sound. Small limits make the overload
 * certain on any machine; the defaults are measured by `npm run bench -- api`.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type { AdmissionLimits } from '../../src/api/admission.ts';
import { Tokens } from '../../src/api/auth.ts';
import type { Api } from '../../src/api/context.ts';
import { StatusRegistry } from '../../src/agent/index.ts';
import { buildServer } from '../../src/api/server.ts';
import { systemClock } from '../../src/core/index.ts';
import { fsck } from '../../src/lifecycle/index.ts';
import { applyTopology, parseTopology } from '../../src/topology/index.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';

const VMS = 64;
const LIMITS: AdmissionLimits = { inFlightMax: 2, queueMax: 4, queueWaitMaxMs: 20, retryAfterSeconds: 1 };
/** Clients at once: far above what the server answers within the limit. */
const BURST = 200;
/** How long they keep sending. */
const FLOOD_MS = 2500;

let tc: TestCloud;
let app: Api;
let url: string;
let token: string;
/** A tenant's token: the burst is this tenant's, while the operator keeps writing now and then. */
let tenantToken: string;

before(async () => {
  tc = await makeCloud();
  const vms = Array.from({ length: VMS }, (_, i) => `{ name: vm${i}, subnet: s }`).join(', ');
  const yaml = `subscriptions:
  - name: flood
    virtualNetworks:
      - name: net
        addressSpace: [127.17.0.0/16]
        subnets: [{ name: s, cidr: 127.17.0.0/16 }]
    cloudServices:
      - { name: flood, vnet: net, vms: [${vms}] }
`;
  await applyTopology(tc.cloud, parseTopology(yaml), { operator: true });
  const tokens = new Tokens(tc.store);
  token = await tokens.create('op', null);
  tenantToken = await tokens.create('flooder', 'flood');
  app = await buildServer({
    cloud: tc.cloud,
    tokens,
    registry: new StatusRegistry(systemClock),
    admission: LIMITS,
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
after(async () => {
  await app.close();
  await tc.close();
});

interface Answer {
  status: number;
  retryAfter: string | undefined;
  type: string | undefined;
  body: { code?: string; status?: number };
}

test('a burst above capacity is refused early with 503 and Retry-After while accepted writes finish', async () => {
  // One connection per request, opened first (by reads, never refused), so that the burst's writes
  // leave together and reach the server in one turn of its loop.
  const agent = new Agent({ keepAlive: true, maxSockets: BURST, maxFreeSockets: BURST });
  const opAgent = new Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const get = (path: string) =>
      new Promise<number>((ok, fail) => {
        const req = request(`${url}${path}`, { agent, timeout: 20_000 }, (res) => {
          res.resume();
          res.on('end', () => ok(res.statusCode ?? 0));
        });
        req.on('timeout', () => req.destroy(new Error('no answer in 20 s')));
        req.on('error', fail);
        req.end();
      });
    const warm = await Promise.all(Array.from({ length: BURST }, () => get('/healthz')));
    assert.ok(warm.every((s) => s === 200));
    await new Promise((ok) =>
      request(`${url}/healthz`, { agent: opAgent }, (res) => {
        res.resume();
        res.on('end', ok);
      }).end(),
    );
    // The route's first call compiles its schemas (tens of ms): not part of the burst.
    const first = await fetch(`${url}/v1/services/flood/vms/vm${VMS - 1}/restart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}` },
    });
    assert.equal(first.status, 200, await first.text());
    // The tenant's token is verified once before the burst, as any busy client's is.
    const tenantFirst = await fetch(`${url}/v1/services/flood/vms/vm${VMS - 1}/restart`, {
      method: 'POST',
      headers: { authorization: `Bearer ${tenantToken}` },
    });
    assert.equal(tenantFirst.status, 200, await tenantFirst.text());
    // Client and server share this process's loop: let it go idle, so that the server does not
    // count the time this test spends building the burst as time the burst waited.
    await new Promise((r) => setTimeout(r, 50));
    const send = (i: number) =>
      new Promise<Answer>((ok, fail) => {
        const verb = Math.floor(i / VMS) % 2 === 0 ? 'deallocate' : 'start';
        const req = request(
          `${url}/v1/services/flood/vms/vm${i % VMS}/${verb}`,
          {
            method: 'POST',
            agent,
            headers: { authorization: `Bearer ${tenantToken}` },
            timeout: 20_000,
          },
          (res) => {
            let text = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (text += d));
            res.on('end', () =>
              ok({
                status: res.statusCode ?? 0,
                retryAfter: res.headers['retry-after'],
                type: res.headers['content-type'],
                body: JSON.parse(text) as Answer['body'],
              }),
            );
          },
        );
        req.on('timeout', () => req.destroy(new Error('no answer in 20 s')));
        req.on('error', fail);
        req.end();
      });
    const healthz = get('/healthz');
    // Every socket sends its next write as soon as the last is answered, for a bounded time: a
    // standing queue, which a single burst (one slow turn, then gone) would not be.
    const answers: Answer[] = [];
    const end = performance.now() + FLOOD_MS;
    // Meanwhile the operator writes every 50 ms: a light sender, whose writes the tenant's flood
    // must not get refused (admission's SenderShares).
    const operator: number[] = [];
    const operatorWrites = (async () => {
      await new Promise((r) => setTimeout(r, 300));
      for (let k = 0; performance.now() < end && k < 100; k++) {
        const status = await new Promise<number>((ok, fail) => {
          const req = request(
            `${url}/v1/services/flood/vms/vm${VMS - 1}/restart`,
            {
              method: 'POST',
              agent: opAgent,
              headers: { authorization: `Bearer ${token}` },
              timeout: 20_000,
            },
            (res) => {
              res.resume();
              res.on('end', () => ok(res.statusCode ?? 0));
            },
          );
          req.on('timeout', () => req.destroy(new Error('no answer in 20 s')));
          req.on('error', fail);
          req.end();
        });
        operator.push(status);
        await new Promise((ok) => setTimeout(ok, 50));
      }
    })();
    await Promise.all([
      operatorWrites,
      ...Array.from({ length: BURST }, async (_, w) => {
        for (let k = 0; performance.now() < end && k < 1000; k++) answers.push(await send(w + k * BURST));
      }),
    ]);
    const refused = answers.filter((a) => a.status === 503);
    const accepted = answers.filter((a) => a.status !== 503);
    assert.ok(refused.length > 0, 'some writes of the burst are refused');
    assert.ok(accepted.length >= 1, `the first writes of the burst run (${accepted.length} accepted)`);
    for (const a of refused) {
      assert.equal(a.retryAfter, '1');
      assert.match(a.type ?? '', /^application\/problem\+json/);
      assert.equal(a.body.code, 'OVERLOADED');
      assert.equal(a.body.status, 503);
    }
    // Accepted writes get their ordinary answer: done, or refused by the lifecycle's own rules (a
    // start of a VM that is already running), never a failure of the server.
    for (const a of accepted) assert.ok([200, 409].includes(a.status), `status ${a.status}`);
    assert.equal(await healthz, 200, 'reads are served during the burst');
    assert.ok(operator.length >= 1, `the operator wrote during the burst (${operator.length})`);
    assert.deepEqual(
      operator.filter((st) => st === 503),
      [],
      `the operator's writes are not refused for the tenant's flood (${operator.join(' ')})`,
    );
    // /metrics counts what admission did before Fastify saw it: every 503 of the burst, no more.
    const m = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
    const figure = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(m)?.[1] ?? NaN);
    assert.equal(figure('vipdip_admission_refused_total'), refused.length);
    assert.ok(figure('vipdip_admission_admitted_total') >= accepted.length + operator.length + 2);
    assert.match(m, /^vipdip_admission_writes\{state="waiting"\} 0$/m);
    // Beside them, the store's group commit: the burst's writes ran side by side, so they shared
    // commits (every write answered 200, the burst's and the operator's, committed; a 409 rolled
    // back and is not counted).
    const writes = figure('vipdip_store_writes_total');
    const commits = figure('vipdip_store_commits_total');
    const done = accepted.filter((a) => a.status === 200).length + operator.filter((st) => st === 200).length;
    assert.ok(writes >= done, `${writes} writes committed, ${done} answered 200`);
    assert.ok(commits < writes, `${commits} commits for ${writes} writes`);
  } finally {
    agent.destroy();
    opAgent.destroy();
  }
  // The slots all came back: writes are accepted again once the burst is over.
  const r = await fetch(`${url}/v1/services/flood/vms/vm0/start`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}` },
  });
  assert.ok([200, 409].includes(r.status), await r.text());
  assert.deepEqual(await tc.store.read((repo) => fsck(repo)), []);
});
