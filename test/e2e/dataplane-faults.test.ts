/**
 * The data plane rides through faults (issue 13), in a running `vipdip up` with real workloads and a
 * client loop of new connections through the VIP: a workload killed with SIGKILL, a workload that
 * never listens, VMs deallocated and started or redeployed behind endpoints with and without a
 * probe. Every loop is bounded in count and time, and must see no failed connection.
 * Addresses: public pool 127.187.0.0/16, VNet 127.188.0.0/16.
 */
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startCloud, webVm, whoami, type RunningCloud } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';

// HTTP probes every 5 s, down after 10 s; at 0.2 × real time: 1 s and 2 s.
const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 10 };
const topology = {
  subscriptions: [
    {
      name: 'faults',
      virtualNetworks: [
        {
          name: 'net',
          addressSpace: ['127.188.0.0/16'],
          subnets: [{ name: 'front', cidr: '127.188.1.0/24' }],
        },
      ],
      cloudServices: [
        {
          name: 'shop',
          vnet: 'net',
          vms: ['web1', 'web2', 'web3'].map((n) => webVm(n, 'front', {}, { probe })),
        },
        {
          // No probe: the implicit TCP check decides when a backend enters rotation.
          name: 'api',
          vnet: 'net',
          vms: ['api1', 'api2'].map((n) => webVm(n, 'front')),
        },
      ],
    },
  ],
};

interface LoopResult {
  ok: number;
  failed: number;
  errors: string[];
  byVm: Map<string, number>;
}

/**
 * New connections one after another through host:port until `stop()` resolves, or `maxMs` or
 * `maxCount` is reached: each is one HTTP GET on a fresh connection.
 */
function clientLoop(host: string, port: number, maxMs = 30_000, maxCount = 5000) {
  const r: LoopResult = { ok: 0, failed: 0, errors: [], byVm: new Map() };
  let stopped = false;
  const until = Date.now() + maxMs;
  const done = (async () => {
    while (!stopped && Date.now() < until && r.ok + r.failed < maxCount) {
      try {
        const w = await whoami(host, port, { timeoutMs: 5000 });
        r.ok++;
        r.byVm.set(w.vm, (r.byVm.get(w.vm) ?? 0) + 1);
      } catch (e) {
        r.failed++;
        if (r.errors.length < 10) r.errors.push((e as Error).message);
      }
    }
    return r;
  })();
  return {
    result: r,
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}

/** The `event: health` messages of the event stream, as they come. */
function healthStream(): { messages: { vm: string; state: string; detail: string | null }[]; close(): void } {
  const messages: { vm: string; state: string; detail: string | null }[] = [];
  let buf = '';
  let res: IncomingMessage | undefined;
  const req = request(
    `${c.srv.url}/v1/events/stream`,
    { headers: { authorization: `Bearer ${c.srv.operatorToken}` } },
    (r) => {
      res = r;
      r.setEncoding('utf8');
      r.on('data', (d: string) => {
        buf += d;
        for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
          const lines = buf.slice(0, i).split('\n');
          buf = buf.slice(i + 2);
          if (!lines.includes('event: health')) continue;
          const data = lines.find((l) => l.startsWith('data: '));
          if (data !== undefined) messages.push(JSON.parse(data.slice(6)) as (typeof messages)[number]);
        }
      });
    },
  );
  req.on('error', () => {});
  req.end();
  return { messages, close: () => (res?.destroy(), req.destroy()) };
}

const report = (r: LoopResult) => `${r.failed} failed of ${r.ok + r.failed}: ${r.errors.join('; ')}`;

let c: RunningCloud;
let shopVip: string;
let apiVip: string;
before(async () => {
  c = await startCloud({ pool: '127.187.0.0/16', topology, timeScale: 0.2 });
  shopVip = await c.vip('shop');
  apiVip = await c.vip('api');
  await c.allUp('shop', 3);
  await c.allUp('api', 2);
});
after(() => c?.srv.stop());

const backend = async (service: string, vm: string) =>
  (await c.health(service)).endpoints.flatMap((e) => e.backends).find((b) => b.vm === vm)!;

describe('the data plane rides through faults', () => {
  test('an endpoint without a probe says its backends are checked by an implicit TCP connect', async () => {
    const b = await backend('api', 'api1');
    assert.equal(b.state, 'up');
    assert.match(b.detail ?? '', new RegExp(`^implicit TCP check of ${b.dip!.replaceAll('.', '\\.')}:8000`));
  });

  test('kill -9 of a workload under a client loop: no failed connection, down within 1 s, up after its restart', async () => {
    const { pid, restarts } = await c.logs('shop', 'web1');
    assert.ok(pid !== null);
    const health = healthStream();
    const loop = clientLoop(shopVip, 8080);
    await eventually('the loop runs', () => loop.result.ok >= 20, 10_000, 10);
    const killedAt = Date.now();
    process.kill(pid, 'SIGKILL');
    const down = await eventually(
      'web1 reads down',
      async () => {
        const b = await backend('shop', 'web1');
        return b.state === 'down' ? b : undefined;
      },
      5000,
      10,
    );
    const downMs = Date.now() - killedAt;
    assert.ok(downMs <= 1000, `the health route showed web1 down after ${downMs} ms`);
    assert.match(down.detail ?? '', /workload exited \(SIGKILL\)|connects failed/);
    await eventually(
      'web1 restarted and up',
      async () => {
        const [b, l] = await Promise.all([backend('shop', 'web1'), c.logs('shop', 'web1')]);
        return b.state === 'up' && l.restarts > restarts;
      },
      20_000,
      20,
    );
    const before = loop.result.byVm.get('web1') ?? 0;
    await eventually('web1 serves again', () => (loop.result.byVm.get('web1') ?? 0) > before, 10_000, 20);
    const r = await loop.stop();
    assert.equal(r.failed, 0, report(r));
    assert.ok(r.ok > 50, `${r.ok} answered`);
    // The same story on the event stream, with the reason.
    await eventually('web1 down then up on the stream', () => {
      const web1 = health.messages.filter((m) => m.vm === 'web1');
      const down = web1.findIndex((m) => m.state === 'down' && /exited|connects failed/.test(m.detail ?? ''));
      return down >= 0 && web1.slice(down).some((m) => m.state === 'up');
    });
    health.close();
  });

  test('a workload that never listens gets no connection and stays out of rotation', async () => {
    await c.ok('PATCH', '/v1/services/shop/vms/web3', { workload: 'command: exec sleep 600' });
    await eventually(
      'web3 out of rotation',
      async () => (await backend('shop', 'web3')).state !== 'up',
      10_000,
      20,
    );
    const loop = clientLoop(shopVip, 8080, 4000, 400);
    const r = await new Promise<LoopResult>((res) => setTimeout(() => res(loop.stop()), 3000));
    assert.equal(r.failed, 0, report(r));
    assert.equal(r.byVm.get('web3'), undefined);
    assert.notEqual((await backend('shop', 'web3')).state, 'up');
  });

  for (const service of ['shop', 'api']) {
    test(`deallocate, start and redeploy of a VM of ${service} under a client loop: no failed connection`, async () => {
      const vm = service === 'shop' ? 'web2' : 'api1';
      const vip = service === 'shop' ? shopVip : apiVip;
      const loop = clientLoop(vip, 8080, 60_000, 20_000);
      try {
        await eventually('the loop runs', () => loop.result.ok >= 10, 10_000, 10);
        const ops: string[] = ['deallocate', 'start', 'redeploy', 'restart'];
        for (const op of ops) {
          await c.ok('POST', `/v1/services/${service}/vms/${vm}/${op}`);
          await eventually(
            `${vm} up again after ${op}`,
            async () => {
              if (op === 'deallocate') return (await c.vm(service, vm)).state === 'deallocated';
              return (await backend(service, vm)).state === 'up';
            },
            20_000,
            20,
          );
        }
        const before = loop.result.byVm.get(vm) ?? 0;
        await eventually(`${vm} serves again`, () => (loop.result.byVm.get(vm) ?? 0) > before, 10_000, 20);
      } finally {
        const r = await loop.stop();
        assert.equal(r.failed, 0, report(r));
      }
    });
  }
});
