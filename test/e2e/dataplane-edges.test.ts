/**
 * The rest of the data plane's contract through a running `vipdip up`: endpoint ACLs (a denied client
 * is reset, a permitted one served, denials counted in /metrics), UDP echo through a VIP with flow
 * expiry after the idle timeout, and R6: a workload calling another service's VIP from its DIP is
 * seen with its own service's VIP (or its ILPIP) as source.
 * Addresses: public pool 127.215.0.0/16, VNets 127.216.0.0/16 and 127.217.0.0/16, clients 127.209.5.0/24.
 */
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { startCloud, webVm, whoami, type RunningCloud, type Whoami } from '../support/cloud-up.ts';
import { eventually, outcome, udpAsk } from '../support/net.ts';

const topology = {
  subscriptions: [
    {
      name: 'alpha',
      virtualNetworks: [
        { name: 'net', addressSpace: ['127.216.0.0/16'], subnets: [{ name: 'a', cidr: '127.216.1.0/24' }] },
      ],
      cloudServices: [
        {
          name: 'edge-guarded',
          vnet: 'net',
          vms: [
            webVm(
              'g1',
              'a',
              {},
              {
                acl: [
                  { order: 1, action: 'deny', remoteSubnet: '127.209.5.66/32' },
                  { order: 2, action: 'permit', remoteSubnet: '127.209.5.0/24' },
                ],
              },
            ),
          ],
        },
        {
          name: 'edge-udp',
          vnet: 'net',
          vms: [
            {
              name: 'u1',
              subnet: 'a',
              workload: 'echo',
              endpoints: [
                { name: 'echo', protocol: 'udp', publicPort: 5300, localPort: 5300, idleTimeoutMinutes: 4 },
              ],
            },
          ],
        },
        { name: 'edge-target', vnet: 'net', vms: [webVm('t1', 'a')] },
      ],
    },
    {
      name: 'beta',
      virtualNetworks: [
        { name: 'net', addressSpace: ['127.217.0.0/16'], subnets: [{ name: 'b', cidr: '127.217.1.0/24' }] },
      ],
      cloudServices: [{ name: 'edge-caller', vnet: 'net' }],
    },
  ],
};

let c: RunningCloud;
before(async () => {
  c = await startCloud({ pool: '127.215.0.0/16', topology, timeScale: 0.01 });
});
after(() => c?.srv.stop());

async function metric(name: string, labels: string): Promise<number | undefined> {
  const text = (await c.api('GET', '/metrics')).text;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}}`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('ACLs, UDP and VM-to-VIP traffic', () => {
  test('a denied client is reset and a permitted one served; unmatched clients are denied; denials are counted', async () => {
    const vip = await c.vip('edge-guarded');
    await eventually(
      'served',
      async () => (await whoami(vip, 8080, { localAddress: '127.209.5.5' })).vm === 'g1',
    );
    assert.equal(await outcome(vip, 8080, '127.209.5.66'), 'reset');
    assert.equal(await outcome(vip, 8080, '127.209.6.1'), 'reset', 'an allow-list denies the unmatched');
    const w = await whoami(vip, 8080, { localAddress: '127.209.5.7' });
    assert.equal(w.remoteAddress, '127.209.5.7');
    await eventually(
      'the denials in /metrics',
      async () =>
        ((await metric('vipdip_lb_flows_total', `listener="tcp/${vip}:8080",outcome="denied_acl"`)) ?? 0) >=
        2,
      30_000,
      200,
    );
  });

  test('UDP echoes through a VIP, and the flow expires after the idle timeout', async () => {
    const vip = await c.vip('edge-udp');
    const answer = await eventually(
      'an echo',
      () => udpAsk(vip, 5300, 'marco polo', { localAddress: '127.209.5.9', timeoutMs: 300 }),
      30_000,
      100,
    );
    assert.equal(answer.text, 'marco polo');
    assert.equal(answer.from, `${vip}:5300`, 'the answer comes back from the VIP');
    const listener = `listener="udp/${vip}:5300"`;
    await eventually(
      'one flow open',
      async () => (await metric('vipdip_lb_flows_active', listener)) === 1,
      30_000,
      200,
    );
    // 4 minutes at a hundredth of real time: 2.4 s; the agent's report follows within a heartbeat.
    await eventually(
      'the flow expired',
      async () => (await metric('vipdip_lb_flows_active', listener)) === 0,
      30_000,
      200,
    );
  });

  test("a workload calling another service's VIP from its DIP is seen with its own service's VIP, or its ILPIP", async () => {
    const target = await c.vip('edge-target');
    const client = fileURLToPath(new URL('../fixtures/r6-client.mjs', import.meta.url));
    const workload = `command: "${process.execPath}" "${client}" ${target} 8080`;
    for (const [name, ilpip] of [
      ['c1', false],
      ['c2', true],
    ] as const) {
      await c.ok('POST', '/v1/services/edge-caller/vms', { name, subnet: 'b', workload, ilpip }, 201);
    }
    const callerVip = await c.vip('edge-caller');
    for (const [name, ilpip] of [
      ['c1', false],
      ['c2', true],
    ] as const) {
      const vm = await c.ok<{ dip: string; ilpip: string | null }>(
        'GET',
        `/v1/services/edge-caller/vms/${name}`,
      );
      const seen = await eventually(
        `${name}'s call answered`,
        async () => {
          const logs = await c.logs('edge-caller', name);
          const line = logs.lines.map((l) => l.text).find((t) => t.startsWith('answer '));
          return line === undefined ? undefined : (JSON.parse(line.slice(7)) as Whoami);
        },
        30_000,
        100,
      );
      assert.equal(seen.vm, 't1');
      assert.equal(seen.remoteAddress, ilpip ? vm.ilpip : callerVip, `${name} (dip ${vm.dip}) is seen as`);
      assert.notEqual(seen.remoteAddress, vm.dip);
    }
  });
});
