/**
 * `/v1/chaos` over the real server and a real SQLite store (driver `none`: the weather is all
 * control plane here): who may start what, bad input, and that a run's changes are ordinary events
 * with its reason, given back when it stops.
 * Addresses: 127.238.0.0/16 (see test/fixtures/chaos-topology.ts), pool 127.239.0.0/24.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Tokens } from '../../src/api/auth.ts';
import type { Api } from '../../src/api/context.ts';
import { buildServer } from '../../src/api/server.ts';
import { StatusRegistry } from '../../src/agent/index.ts';
import { systemClock } from '../../src/core/index.ts';
import type { ChaosRunView } from '../../src/chaos/index.ts';
import { fsck, formatFinding } from '../../src/lifecycle/index.ts';
import { applyTopology, parseTopology } from '../../src/topology/index.ts';
import { chaosTopology } from '../fixtures/chaos-topology.ts';
import { makeCloud, type TestCloud } from '../support/cloud.ts';

let tc: TestCloud;
const registry = new StatusRegistry(systemClock);
let app: Api;
const tok = { operator: '', contoso: '', fabrikam: '' };

async function api(method: string, url: string, token: string, body?: unknown) {
  const r = await app.inject({
    method: method as 'GET',
    url,
    headers: {
      authorization: `Bearer ${token}`,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    ...(body !== undefined ? { payload: JSON.stringify(body) } : {}),
  });
  return {
    status: r.statusCode,
    type: r.headers['content-type'],
    body: r.json<Record<string, unknown> & ChaosRunView>(),
  };
}

async function settled(id: string, token = tok.operator): Promise<ChaosRunView> {
  for (let i = 0; i < 400; i++) {
    const r = await api('GET', `/v1/chaos/${id}`, token);
    if (r.body.state !== 'running' && r.body.state !== 'stopping') return r.body;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`run ${id} did not end`);
}

describe('chaos over the API', () => {
  before(async () => {
    tc = await makeCloud({ pools: ['127.239.0.0/24'], seed: 11 });
    await applyTopology(tc.cloud, parseTopology(chaosTopology(238, { workloads: false })), {
      operator: true,
    });
    const tokens = new Tokens(tc.store);
    tok.operator = await tokens.create('op', null);
    tok.contoso = await tokens.create('c', 'contoso');
    tok.fabrikam = await tokens.create('f', 'fabrikam');
    app = await buildServer({ cloud: tc.cloud, tokens, registry });
  });
  after(async () => {
    await app.close();
    registry.close();
    await tc.close();
  });

  test("a tenant's chaos on another subscription answers 404, as if it did not exist", async () => {
    const r = await api('POST', '/v1/chaos', tok.fabrikam, {
      subscription: 'contoso',
      rates: { redeploy: 60 },
    });
    assert.equal(r.status, 404);
    assert.match(String(r.type), /application\/problem\+json/);
    assert.match(String(r.body.detail), /subscription contoso does not exist/);
    const ghost = await api('POST', '/v1/chaos', tok.fabrikam, {
      subscription: 'nowhere',
      rates: { redeploy: 60 },
    });
    assert.equal(ghost.status, 404);
    assert.equal(ghost.body.detail, String(r.body.detail).replace('contoso', 'nowhere'));
  });

  test('a tenant cannot run chaos over the whole fabric, nor take hosts into maintenance', async () => {
    const fabric = await api('POST', '/v1/chaos', tok.contoso, { rates: { redeploy: 60 } });
    assert.equal(fabric.status, 403);
    assert.match(String(fabric.body.detail), /operator token/);
    const maint = await api('POST', '/v1/chaos', tok.contoso, {
      subscription: 'contoso',
      rates: { maintenance: 1, redeploy: 2 },
    });
    assert.equal(maint.status, 403);
    assert.match(String(maint.body.detail), /only the operator can take hosts into maintenance/);
    assert.deepEqual((await api('GET', '/v1/chaos', tok.operator)).body, [], 'nothing was started');
  });

  test('bad input is a 4xx problem and starts nothing', async () => {
    const cases: [unknown, number, RegExp][] = [
      [{ subscription: 'contoso', rates: { storm: 1 } }, 400, /storm/],
      [{ subscription: 'contoso', rates: { redeploy: -1 } }, 400, /rates\/redeploy/],
      [{ subscription: 'contoso', rates: { redeploy: 1e6 } }, 400, /rates\/redeploy/],
      [{ subscription: 'contoso', rates: {} }, 422, /at least one kind/],
      [{ subscription: 'contoso', rates: { redeploy: 0 } }, 422, /at least one kind/],
      [{ subscription: 'contoso', rates: { redeploy: 1 }, durationMs: 0 }, 400, /durationMs/],
      [{ subscription: 'contoso', rates: { redeploy: 1 }, seed: -1 }, 400, /seed/],
      [{ subscription: 'contoso', services: ['nope'], rates: { redeploy: 1 } }, 404, /cloud service nope/],
      [{ subscription: 'contoso', rates: { crash: 1 } }, 422, /runs no workloads/],
      [{ subscription: 'contoso', rates: { redeploy: 1 }, extra: true }, 400, /extra/],
    ];
    for (const [body, status, detail] of cases) {
      const r = await api('POST', '/v1/chaos', tok.operator, body);
      assert.equal(r.status, status, JSON.stringify(body));
      assert.match(String(r.body.detail), detail, JSON.stringify(body));
    }
    assert.deepEqual((await api('GET', '/v1/chaos', tok.operator)).body, []);
    const bad = await api('GET', '/v1/chaos/..%2f..', tok.operator);
    assert.ok(bad.status === 400 || bad.status === 404, String(bad.status));
  });

  test("a tenant's run over its own subscription changes only it, with events that name the run, and is invisible to others", async () => {
    const before = await tc.cloud.events();
    const started = await api('POST', '/v1/chaos', tok.contoso, {
      subscription: 'contoso',
      seed: 5,
      rates: { redeploy: 300, deallocate: 200, vip: 100 },
      pauseMs: 200,
      durationMs: 3000,
    });
    assert.equal(started.status, 201, JSON.stringify(started.body));
    const id = started.body.id;
    assert.equal(started.body.state, 'running');
    assert.equal((await api('GET', `/v1/chaos/${id}`, tok.fabrikam)).status, 404);
    assert.equal((await api('POST', `/v1/chaos/${id}/stop`, tok.fabrikam)).status, 404);
    assert.deepEqual((await api('GET', '/v1/chaos', tok.fabrikam)).body, []);
    const again = await api('POST', '/v1/chaos', tok.operator, {
      subscription: 'contoso',
      rates: { redeploy: 1 },
    });
    assert.equal(again.status, 409, 'one run at a time over a subscription');

    const end = await settled(id, tok.contoso);
    assert.equal(end.state, 'finished');
    const done = Object.values(end.counts).reduce((n, c) => n + c.done, 0);
    assert.ok(done >= 5, `only ${done} steps in 3 s at 600/min`);
    assert.ok(end.counts.deallocate.done > 0 && end.counts.vip.done > 0, JSON.stringify(end.counts));

    const seq = before.at(-1)?.seq ?? 0;
    const events = (await tc.cloud.events({ since: seq })).filter((e) => e.seq > seq);
    assert.ok(events.length > 0);
    for (const e of events) {
      assert.equal(e.subscription, 'contoso', `${e.type} ${e.resource} outside the run's subscription`);
      assert.ok(e.reason.includes(`chaos run ${id}`), `${e.type} ${e.resource}: reason ${e.reason}`);
    }
    assert.ok(
      events.some((e) => e.type === 'service.vip' && e.resource === 'service/api' && e.new?.vip === null),
      'api lost its VIP at least once',
    );
    // What the weather took is back: every VM runs, and the state is clean.
    for (const v of await tc.cloud.listVms({ subscription: 'contoso' }))
      assert.equal(v.state, 'running', `${v.service}/${v.name}`);
    assert.notEqual((await tc.cloud.getService('api')).vip, null);
    const findings = await tc.store.read((r) => fsck(r));
    assert.deepEqual(findings.map(formatFinding), []);
  });

  test('the operator may run maintenance; a stop gives back at once what the run took, and status says it stopped', async () => {
    const r = await api('POST', '/v1/chaos', tok.operator, {
      subscription: 'contoso',
      seed: 9,
      rates: { maintenance: 60, deallocate: 300 },
      pauseMs: 600_000,
    });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    assert.equal(r.body.durationMs, null);
    let view = r.body;
    for (let i = 0; i < 200 && view.counts.deallocate.done < 2; i++) {
      await new Promise((res) => setTimeout(res, 50));
      view = (await api('GET', `/v1/chaos/${r.body.id}`, tok.operator)).body;
    }
    assert.ok(view.counts.deallocate.done >= 2, 'two deallocations happened');
    assert.ok(view.next !== null);
    assert.ok(
      (await tc.cloud.listVms({ subscription: 'contoso' })).some((v) => v.state === 'deallocated'),
      'a VM is away, its start ten minutes off',
    );
    const stopped = await api('POST', `/v1/chaos/${r.body.id}/stop`, tok.operator);
    assert.equal(stopped.status, 200);
    assert.equal(stopped.body.state, 'stopped');
    assert.equal(stopped.body.next, null);
    assert.ok(stopped.body.recent.some((s) => s.action === 'start' && s.outcome === 'done'));
    for (const v of await tc.cloud.listVms({ subscription: 'contoso' }))
      assert.equal(v.state, 'running', `${v.service}/${v.name}`);
    const list = (await api('GET', '/v1/chaos', tok.contoso)).body as unknown as ChaosRunView[];
    assert.deepEqual(
      list.map((x) => x.state),
      ['stopped', 'finished'],
    );
    assert.equal((await api('GET', '/v1/chaos/abc123', tok.operator)).status, 404);
    assert.match(
      String((await api('GET', '/v1/chaos/abc123', tok.operator)).body.detail),
      /live in the memory of the server that started them/,
    );
  });
});
