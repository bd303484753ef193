/**
 * Backend health in a running `vipdip up`: a workload that stops answering (SIGSTOP) is taken out of
 * rotation by its failing HTTP probe and put back once it answers again (SIGCONT); the health and
 * logs routes (tenant-scoped), the live `event: health` messages of the event stream (no id, so the
 * log's resumption is untouched), `vipdip logs`, and a clean stop that leaves no workload behind.
 * Addresses: public pool 127.213.0.0/16, VNet 127.214.0.0/16, another tenant's VNet 127.212.0.0/16.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { request, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { startCloud, webVm, whoami, type RunningCloud } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';
import { BIN } from '../support/server.ts';

const run = promisify(execFile);
// Probes every 5 s, down after 10 s without an answer; at 0.02 × real time: 100 ms and 200 ms.
const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 10 };
const topology = {
  subscriptions: [
    {
      name: 'healthy',
      virtualNetworks: [
        {
          name: 'net',
          addressSpace: ['127.214.0.0/16'],
          subnets: [{ name: 'front', cidr: '127.214.1.0/24' }],
        },
      ],
      cloudServices: [
        {
          name: 'health-web',
          vnet: 'net',
          vms: [
            ...['web1', 'web2'].map((n) => webVm(n, 'front', {}, { probe })),
            { name: 'plain', subnet: 'front' },
          ],
        },
      ],
    },
    {
      name: 'neighbour',
      virtualNetworks: [
        { name: 'net', addressSpace: ['127.212.0.0/16'], subnets: [{ name: 'a', cidr: '127.212.1.0/24' }] },
      ],
      cloudServices: [{ name: 'health-other', vnet: 'net', vms: [webVm('x1', 'a')] }],
    },
  ],
};

interface Message {
  id: string | undefined;
  event: string;
  data: string;
}

/** A raw text/event-stream reader that records whether each message had an id line. */
function openStream(url: string, token: string): { messages: Message[]; close(): void } {
  const messages: Message[] = [];
  let buf = '';
  let res: IncomingMessage | undefined;
  const req = request(`${url}/v1/events/stream`, { headers: { authorization: `Bearer ${token}` } }, (r) => {
    res = r;
    r.setEncoding('utf8');
    r.on('data', (d: string) => {
      buf += d;
      for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
        const block = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const fields = block.split('\n').filter((l) => !l.startsWith(':'));
        if (fields.length === 0) continue;
        const get = (f: string) => fields.find((l) => l.startsWith(`${f}: `))?.slice(f.length + 2);
        messages.push({ id: get('id'), event: get('event') ?? 'message', data: get('data') ?? '' });
      }
    });
  });
  req.on('error', () => {});
  req.end();
  return { messages, close: () => (res?.destroy(), req.destroy()) };
}

let c: RunningCloud;
let vip: string;
let neighbourToken: string;
before(async () => {
  c = await startCloud({ pool: '127.213.0.0/16', topology, timeScale: 0.02 });
  vip = await c.vip('health-web');
  await c.allUp('health-web', 2);
  const t = await c.ok<{ token: string }>('POST', '/v1/subscriptions/neighbour/tokens', { name: 'n' }, 201);
  neighbourToken = t.token;
});
after(() => c?.srv.stop());

const state = async (vm: string) =>
  (await c.health('health-web')).endpoints.flatMap((e) => e.backends).find((b) => b.vm === vm)!;

describe('backend health', () => {
  test('a backend that stops answering is taken out by its probe, and put back when it answers again', async () => {
    const stream = openStream(c.srv.url, c.srv.operatorToken);
    const neighbour = openStream(c.srv.url, neighbourToken);
    try {
      const pid = (await c.logs('health-web', 'web1')).pid!;
      process.kill(pid, 'SIGSTOP');
      try {
        await eventually('web1 down', async () => (await state('web1')).state === 'down', 30_000, 20);
        const down = await state('web1');
        assert.ok(down.since !== null && !Number.isNaN(Date.parse(down.since)));
        assert.match(down.detail ?? '', /no answer within/);
        // Out of rotation: every new connection is answered, by web2, with no hang on web1.
        for (let i = 0; i < 40; i++) assert.equal((await whoami(vip, 8080, { timeoutMs: 5000 })).vm, 'web2');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually('web1 up again', async () => (await state('web1')).state === 'up', 30_000, 20);
      await eventually(
        'traffic reaches web1 again',
        async () => (await whoami(vip, 8080)).vm === 'web1',
        10_000,
        0,
      );

      // The same story, live on the event stream: health messages without ids, the log untouched.
      const health = () => stream.messages.filter((m) => m.event === 'health');
      await eventually('web1 down and up on the stream', () => {
        const states = health()
          .map((m) => JSON.parse(m.data) as { vm: string; state: string })
          .filter((h) => h.vm === 'web1')
          .map((h) => h.state);
        return states.includes('down') && states.lastIndexOf('up') > states.indexOf('down');
      });
      for (const m of health()) {
        assert.equal(m.id, undefined, 'a health message carries no id');
        const h = JSON.parse(m.data) as Record<string, unknown>;
        assert.deepEqual(Object.keys(h).sort(), [
          'detail',
          'dip',
          'endpoint',
          'service',
          'since',
          'state',
          'vm',
        ]);
        assert.equal(h.service, 'health-web');
      }
      const ids = stream.messages.filter((m) => m.event !== 'health').map((m) => Number(m.id));
      assert.ok(
        ids.length > 0 && ids.every((id, i) => Number.isInteger(id) && (i === 0 || id > ids[i - 1]!)),
      );
      // Another subscription's stream hears its own health (its VM stops: out of rotation), and
      // nothing of this service's.
      await c.ok('POST', '/v1/services/health-other/vms/x1/stop');
      await eventually('the neighbour hears of its own VM', () =>
        neighbour.messages.some((m) => m.event === 'health' && m.data.includes('"vm":"x1"')),
      );
      assert.ok(neighbour.messages.some((m) => m.event === 'vm.stopped'));
      await c.ok('POST', '/v1/services/health-other/vms/x1/start');
      assert.ok(
        !neighbour.messages.some((m) => m.event === 'health' && m.data.includes('health-web')),
        JSON.stringify(neighbour.messages.filter((m) => m.event === 'health')),
      );
    } finally {
      stream.close();
      neighbour.close();
    }
  });

  test('the health route lists every backend of every endpoint, with its state and DIP', async () => {
    const h = await c.health('health-web');
    assert.equal(h.endpoints.length, 1);
    const e = h.endpoints[0]! as unknown as Record<string, unknown> & { backends: Record<string, unknown>[] };
    assert.deepEqual(
      { name: e.name, protocol: e.protocol, publicPort: e.publicPort, lbSet: e.lbSet, vip: e.vip },
      { name: 'http', protocol: 'tcp', publicPort: 8080, lbSet: 'web', vip },
    );
    for (const b of e.backends) {
      assert.deepEqual(Object.keys(b).sort(), ['detail', 'dip', 'localPort', 'since', 'state', 'vm']);
      assert.equal(b.dip, (await c.vm('health-web', b.vm as string)).dip);
    }
  });

  test('a stopped VM reads down; the logs of a VM without workload say none', async () => {
    await c.ok('POST', '/v1/services/health-web/vms/web2/stop');
    await eventually('web2 down', async () => (await state('web2')).state === 'down');
    assert.match((await state('web2')).detail ?? '', /stopped/);
    const logs = await eventually('its workload stopped', async () => {
      const l = await c.logs('health-web', 'web2');
      return l.status === 'stopped' ? l : undefined;
    });
    assert.ok(logs.lines.some((l) => l.text.includes('[vipdip] stopped')));
    await c.ok('POST', '/v1/services/health-web/vms/web2/start');
    const none = await c.ok<Record<string, unknown>>('GET', '/v1/services/health-web/vms/plain/logs');
    assert.deepEqual(
      { workload: none.workload, status: none.status, pid: none.pid, lines: none.lines },
      { workload: null, status: 'none', pid: null, lines: [] },
    );
  });

  test("another subscription's service answers 404 on the health and logs routes", async () => {
    const t = { token: neighbourToken };
    for (const p of ['/v1/services/health-web/health', '/v1/services/health-web/vms/web1/logs']) {
      const r = await c.api('GET', p, undefined, t.token);
      assert.equal(r.status, 404, `${p}: ${r.text}`);
    }
    assert.equal((await c.api('GET', '/v1/services/health-other/health', undefined, t.token)).status, 200);
    const report = await c.api('PUT', '/v1/agents/x/report', {}, t.token);
    assert.ok(report.status === 400 || report.status === 403, `a tenant cannot report: ${report.status}`);
  });

  test('a bad agent report is refused with a problem and changes nothing', async () => {
    const r = await c.api('PUT', '/v1/agents/rogue/report', { agent: 'rogue', backends: 'no' });
    assert.equal(r.status, 400);
    assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    const agents = await c.ok<{ agent: string }[]>('GET', '/v1/agents');
    assert.deepEqual(
      agents.map((a) => a.agent),
      ['up'],
    );
  });

  test('vipdip logs prints the workload lines', async () => {
    const env = { ...process.env, VIPDIP_URL: c.srv.url, VIPDIP_TOKEN: c.srv.operatorToken };
    const { stdout, stderr } = await run(process.execPath, [BIN, 'logs', 'health-web/web1'], { env });
    assert.match(stderr, /health-web\/web1: whoami running \(pid \d+\)/);
    assert.match(stdout, /whoami health-web\/web1 listening on http:\/\/127\.214\.1\.\d+:8000\//);
    const json = await run(process.execPath, [BIN, 'logs', 'health-web/web1', '-o', 'json'], { env });
    assert.equal((JSON.parse(json.stdout) as { vm: string }).vm, 'web1');
    await assert.rejects(run(process.execPath, [BIN, 'logs', 'health-web'], { env }), /SERVICE\/VM/);
  });

  test('stopping vipdip up stops every workload', async () => {
    const pids = await Promise.all(['web1', 'web2'].map(async (vm) => (await c.logs('health-web', vm)).pid));
    await c.srv.stop({ keep: true });
    for (const pid of pids) {
      if (pid === null) continue;
      assert.throws(() => process.kill(pid, 0), /ESRCH/, `workload ${pid} is gone`);
    }
    assert.match(c.srv.output(), /vipdip stopped; state closed cleanly/);
  });
});
