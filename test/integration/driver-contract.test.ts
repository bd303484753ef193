/**
 * The driver contract: one suite, run against every driver. What every driver owes (reconcile is
 * idempotent, reports what it realized, forgets what is gone, judges address plans, runs workloads
 * where VMs live) runs for all; what carries traffic runs for the drivers that do, on real loopback
 * sockets. A kernel netns driver joins the list when it exists. Addresses: 127.204.0.0/16.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { after, describe, test } from 'node:test';
import { parseCidr } from '../../src/core/index.ts';
import {
  LocalDriver,
  NetnsDriver,
  NoneDriver,
  netnsUnsupported,
  type DataPlaneDriver,
  type DesiredDataPlane,
  type DesiredEndpoint,
} from '../../src/dataplane/index.ts';
import { scaledTime } from '../../src/lb/index.ts';
import { closed, hello, outcome, roundTrip, tcpBackend, udpAsk, type Backend } from '../support/net.ts';

const DRIVERS: { name: string; make: () => DataPlaneDriver }[] = [
  { name: 'none', make: () => new NoneDriver() },
  { name: 'local', make: () => new LocalDriver({ time: scaledTime(1) }) },
];
// The kernel driver joins where it can run (Linux, root: .ci/run). Its traffic cases run on the
// kernel in netns-driver.test.ts, with backends inside VM namespaces rather than on loopback.
if (netnsUnsupported() === undefined) {
  DRIVERS.push({ name: 'netns', make: () => new NetnsDriver({ prefix: `vdt${process.pid.toString(36)}k` }) });
}

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function endpoint(
  address: string,
  port: number,
  backends: { b: Backend; healthy?: boolean }[],
  over: Partial<DesiredEndpoint> = {},
): DesiredEndpoint {
  return {
    key: `${over.protocol ?? 'tcp'}/${address}:${port}`,
    kind: 'vip',
    subscription: 'contoso',
    service: 'shop',
    name: 'http',
    lbSet: 'web',
    address,
    protocol: 'tcp',
    port,
    distribution: 'fiveTuple',
    idleMs: 240_000,
    acl: [],
    proxyProtocol: false,
    backends: backends.map(({ b, healthy = true }) => ({
      id: `contoso/shop/${b.id}`,
      vm: b.id,
      dip: b.host,
      port: b.port,
      healthy,
    })),
    ...over,
  };
}

/** A port that is free on `host` right now. */
async function freePort(host: string): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

let block = 0;
for (const { name, make } of DRIVERS) {
  describe(`the ${name} driver`, () => {
    const driver = make();
    cleanup.push(() => driver.close());
    // Each driver gets its own third octet range, so the suites never share an address.
    const base = 10 * ++block;
    const net = (i: number) => `127.204.${base + i}`;

    test('reconcile reports every endpoint it realized, and a second identical one changes nothing', async () => {
      const vip = `${net(0)}.1`;
      const desired: DesiredDataPlane = {
        endpoints: [endpoint(vip, await freePort(vip), []), endpoint(vip, await freePort(vip), [])],
        snat: [],
      };
      const r1 = await driver.reconcile(desired);
      assert.deepEqual([r1.opened, r1.failed.length], [2, 0]);
      const r2 = await driver.reconcile(desired);
      assert.deepEqual([r2.opened, r2.updated, r2.closed], [0, 2, 0]);
      const st = driver.status();
      assert.equal(st.driver, name);
      assert.deepEqual(st.listeners.map((l) => l.key).sort(), desired.endpoints.map((e) => e.key).sort());
      for (const l of st.listeners) assert.ok(l.state === (driver.carriesTraffic ? 'listening' : 'recorded'));
      const r3 = await driver.reconcile({ endpoints: [], snat: [] });
      assert.equal(r3.closed, 2);
      assert.deepEqual(driver.status().listeners, []);
    });

    test('the address plan is judged by what the driver can carry', () => {
      assert.doesNotThrow(() => driver.checkAddressPlan(parseCidr('127.16.0.0/16'), 'x'));
      const outside = () => driver.checkAddressPlan(parseCidr('10.0.0.0/16'), 'virtual network x');
      if (driver.carriesTraffic && name !== 'netns') assert.throws(outside, /netns/);
      else assert.doesNotThrow(outside);
    });

    test('a workload command comes back runnable where the VM lives', () => {
      const cmd = driver.wrapWorkload(
        { service: 'shop', vm: 'web1', dip: '127.16.1.5' },
        { command: '/bin/sh', args: ['-c', 'true'] },
      );
      assert.ok(cmd.command.length > 0 && Array.isArray(cmd.args));
    });

    if (!driver.carriesTraffic || name === 'netns') return;

    test('traffic to the VIP reaches the healthy backends only, and none healthy means a reset', async () => {
      const vip = `${net(1)}.1`;
      const port = await freePort(vip);
      const a = await tcpBackend('web1', `${net(1)}.11`);
      const b = await tcpBackend('web2', `${net(1)}.12`);
      cleanup.push(
        () => a.close(),
        () => b.close(),
      );
      await driver.reconcile({
        endpoints: [endpoint(vip, port, [{ b: a }, { b: b, healthy: false }])],
        snat: [],
      });
      for (let i = 0; i < 20; i++) {
        const h = await hello(vip, port);
        h.socket.destroy();
        assert.equal(h.id, 'web1');
      }
      await driver.reconcile({
        endpoints: [
          endpoint(vip, port, [
            { b: a, healthy: false },
            { b: b, healthy: false },
          ]),
        ],
        snat: [],
      });
      assert.equal(await outcome(vip, port), 'reset');
      assert.ok(driver.status().listeners[0]!.noBackend >= 1);
    });

    test('an open flow survives reconciles that take its backend out, and its listener socket stays', async () => {
      const vip = `${net(2)}.1`;
      const port = await freePort(vip);
      const a = await tcpBackend('web1', `${net(2)}.11`);
      const b = await tcpBackend('web2', `${net(2)}.12`);
      cleanup.push(
        () => a.close(),
        () => b.close(),
      );
      await driver.reconcile({ endpoints: [endpoint(vip, port, [{ b: a }])], snat: [] });
      const open = await hello(vip, port);
      await driver.reconcile({ endpoints: [endpoint(vip, port, [{ b: b }])], snat: [] });
      assert.equal(await roundTrip(open.socket, 'still here'), 'still here');
      const next = await hello(vip, port);
      assert.equal(next.id, 'web2');
      next.socket.destroy();
      const done = closed(open.socket);
      await driver.reconcile({ endpoints: [], snat: [] });
      await done;
      assert.equal(await outcome(vip, port), 'refused', 'a removed endpoint no longer listens');
    });

    test('the backend sees the client, and a DIP with a source NAT entry is seen as its VIP', async () => {
      const vip = `${net(3)}.1`;
      const port = await freePort(vip);
      const a = await tcpBackend('web1', `${net(3)}.11`);
      cleanup.push(() => a.close());
      await driver.reconcile({
        endpoints: [endpoint(vip, port, [{ b: a }])],
        snat: [{ dip: `${net(3)}.50`, source: `${net(3)}.200` }],
      });
      const plain = await hello(vip, port, `${net(3)}.49`);
      const natted = await hello(vip, port, `${net(3)}.50`);
      assert.deepEqual([plain.seen, natted.seen], [`${net(3)}.49`, `${net(3)}.200`]);
      plain.socket.destroy();
      natted.socket.destroy();
      await driver.reconcile({ endpoints: [], snat: [] });
    });

    test('a UDP endpoint carries datagrams both ways', async () => {
      const { createSocket } = await import('node:dgram');
      const echo = createSocket('udp4');
      echo.on('message', (m, r) => echo.send(m, r.port, r.address));
      await new Promise<void>((r) => echo.bind({ address: `${net(4)}.11`, port: 0 }, () => r()));
      cleanup.push(() => new Promise((r) => echo.close(() => r())));
      const vip = `${net(4)}.1`;
      const port = await freePort(vip);
      const e = endpoint(vip, port, [], { protocol: 'udp', key: `udp/${vip}:${port}` });
      await driver.reconcile({
        endpoints: [
          {
            ...e,
            backends: [
              {
                id: 'contoso/shop/echo',
                vm: 'echo',
                dip: `${net(4)}.11`,
                port: echo.address().port,
                healthy: true,
              },
            ],
          },
        ],
        snat: [],
      });
      assert.equal((await udpAsk(vip, port, 'marco'))?.text, 'marco');
      await driver.reconcile({ endpoints: [], snat: [] });
    });

    test('an endpoint that cannot bind is reported, the others are realized, and it is retried', async () => {
      const vip = `${net(5)}.1`;
      const squatter = createServer();
      await new Promise<void>((r) => squatter.listen(0, vip, r));
      const taken = (squatter.address() as { port: number }).port;
      const free = await freePort(vip);
      const r = await driver.reconcile({
        endpoints: [endpoint(vip, taken, []), endpoint(vip, free, [])],
        snat: [],
      });
      assert.equal(r.failed.length, 1);
      assert.match(r.failed[0]!.error, /EADDRINUSE/);
      const st = driver.status().listeners;
      assert.deepEqual(st.map((l) => l.state).sort(), ['failed', 'listening']);
      await new Promise<void>((res) => squatter.close(() => res()));
      const { eventually } = await import('../support/net.ts');
      await eventually('the retry binds the freed port', () =>
        driver.status().listeners.every((l) => l.state === 'listening'),
      );
      await driver.reconcile({ endpoints: [], snat: [] });
    });
  });
}
