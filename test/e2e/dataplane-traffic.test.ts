/**
 * Traffic through VIPs of a running `vipdip up` (local driver, whoami workloads): Maglev spread of
 * new connections, `sourceIP` stickiness, deallocation taking a backend out without disturbing open
 * connections to the others, and a DIP change restarting the workload with traffic following it.
 * Addresses: public pool 127.210.0.0/16, VNet 127.211.0.0/16, clients from 127.209.0.0/16.
 */
import assert from 'node:assert/strict';
import { Agent } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startCloud, webVm, whoami, type RunningCloud } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';

const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 11 };
const topology = {
  subscriptions: [
    {
      name: 'acme',
      virtualNetworks: [
        {
          name: 'net',
          addressSpace: ['127.211.0.0/16'],
          subnets: [{ name: 'front', cidr: '127.211.1.0/24' }],
        },
      ],
      cloudServices: [
        {
          name: 'traffic-web',
          vnet: 'net',
          vms: ['web1', 'web2', 'web3'].map((n) => webVm(n, 'front', {}, { probe })),
        },
        {
          name: 'traffic-sticky',
          vnet: 'net',
          vms: ['s1', 's2', 's3'].map((n) =>
            webVm(n, 'front', {}, { distribution: 'sourceIP', lbSet: 'st' }),
          ),
        },
      ],
    },
  ],
};

let c: RunningCloud;
let vip: string;
before(async () => {
  c = await startCloud({ pool: '127.210.0.0/16', topology, timeScale: 0.02 });
  vip = await c.vip('traffic-web');
  await c.allUp('traffic-web', 3);
  await c.allUp('traffic-sticky', 3);
});
after(() => c?.srv.stop());

describe('traffic through a VIP', () => {
  test('300 new connections spread over three whoami backends, each getting at least 20 %', async () => {
    const hits = new Map<string, number>();
    for (let i = 0; i < 300; i++) {
      const w = await whoami(vip, 8080);
      assert.equal(w.vip, vip);
      hits.set(w.vm, (hits.get(w.vm) ?? 0) + 1);
    }
    for (const vm of ['web1', 'web2', 'web3']) {
      assert.ok(
        (hits.get(vm) ?? 0) >= 60,
        `${vm} got ${hits.get(vm) ?? 0} of 300: ${JSON.stringify([...hits])}`,
      );
    }
  });

  test('the backend sees the real client address', async () => {
    const w = await whoami(vip, 8080, { localAddress: '127.209.0.7' });
    assert.equal(w.remoteAddress, '127.209.0.7');
  });

  test('sourceIP sends one client address always to the same backend', async () => {
    const sticky = await c.vip('traffic-sticky');
    const chosen = new Set<string>();
    for (let client = 1; client <= 20; client++) {
      const from = `127.209.1.${client}`;
      const first = (await whoami(sticky, 8080, { localAddress: from })).vm;
      chosen.add(first);
      for (let i = 0; i < 10; i++)
        assert.equal((await whoami(sticky, 8080, { localAddress: from })).vm, first, from);
    }
    assert.ok(chosen.size >= 2, `20 clients spread over ${[...chosen].join(', ')}`);
  });

  test('after a deallocation no new connection reaches its DIP, and an open connection to another backend carries on', async () => {
    // A keep-alive connection to some backend other than the one that goes.
    const victim = 'web1';
    let kept: Agent | undefined;
    let first: Awaited<ReturnType<typeof whoami>> | undefined;
    for (let i = 0; i < 50 && kept === undefined; i++) {
      const a = new Agent({ keepAlive: true, maxSockets: 1 });
      const w = await whoami(vip, 8080, { agent: a });
      if (w.vm !== victim) {
        kept = a;
        first = w;
      } else a.destroy();
    }
    assert.ok(kept !== undefined && first !== undefined);
    const victimDip = (await c.vm('traffic-web', victim)).dip;
    await c.ok('POST', `/v1/services/traffic-web/vms/${victim}/deallocate`);
    // Within one reconcile: once a short run of new connections avoids it, no later one reaches it.
    let avoided = 0;
    await eventually(
      'new connections avoid the deallocated VM',
      async () => {
        const w = await whoami(vip, 8080);
        avoided = w.vm === victim ? 0 : avoided + 1;
        return avoided >= 10;
      },
      10_000,
      0,
    );
    for (let i = 0; i < 100; i++) {
      const w = await whoami(vip, 8080);
      assert.notEqual(w.vm, victim);
      assert.notEqual(w.dip, victimDip);
    }
    const again = await whoami(vip, 8080, { agent: kept });
    assert.equal(again.vm, first.vm, 'the open connection stays on its backend');
    assert.equal(again.remotePort, first.remotePort, 'and it is the same connection');
    kept.destroy();
  });

  test('a DIP change (deallocate, start) restarts the workload on the new DIP and traffic follows', async () => {
    const vm = 'web1';
    if ((await c.vm('traffic-web', vm)).state !== 'deallocated') {
      await c.ok('POST', `/v1/services/traffic-web/vms/${vm}/deallocate`);
    }
    const before = await c.logs('traffic-web', vm);
    await c.ok('POST', `/v1/services/traffic-web/vms/${vm}/start`);
    const now = await c.vm('traffic-web', vm);
    assert.ok(now.dip !== null);
    await c.allUp('traffic-web', 3);
    const w = await eventually(
      `traffic reaches ${vm} again`,
      async () => {
        const x = await whoami(vip, 8080);
        return x.vm === vm ? x : undefined;
      },
      20_000,
      0,
    );
    assert.equal(w.dip, now.dip, 'it answers from its new DIP');
    const logs = await c.logs('traffic-web', vm);
    assert.equal(logs.status, 'running');
    assert.ok(logs.pid !== null && logs.pid !== before.pid, 'a new process');
    assert.ok(logs.lines.some((l) => l.text.includes(`on ${now.dip}`)));
  });
});
