/**
 * The driver contract: one suite, run against every driver. What every driver owes (reconcile is
 * idempotent, reports what it realized, forgets what is gone, judges address plans, runs workloads
 * where VMs live) runs for all; what carries traffic runs for the drivers that do, on real loopback
 * sockets. A kernel netns driver joins the list when it exists. Addresses: 127.204.0.0/16.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, createServer, type Socket } from 'node:net';
import { after, describe, test } from 'node:test';
import { parseCidr } from '../../src/core/index.ts';
import {
  LocalDriver,
  NetnsDriver,
  NoneDriver,
  type BackendFault,
  netnsUnsupported,
  type DataPlaneDriver,
  type DesiredDataPlane,
  type DesiredEndpoint,
} from '../../src/dataplane/index.ts';
import { scaledTime } from '../../src/lb/index.ts';
import {
  closed,
  eventually,
  hello,
  outcome,
  roundTrip,
  tcpBackend,
  udpAsk,
  type Backend,
} from '../support/net.ts';

const CONNECT_TRY_MS = 500;
const DRIVERS: { name: string; make: () => DataPlaneDriver }[] = [
  { name: 'none', make: () => new NoneDriver() },
  // Connect tries of 500 ms, so that a backend that never accepts costs the tests little time.
  { name: 'local', make: () => new LocalDriver({ time: scaledTime(1), connectTimeoutMs: CONNECT_TRY_MS }) },
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

/**
 * A listening socket that completes no handshake: a child process listening with a backlog of 1,
 * stopped (SIGSTOP), its accept queue filled, so that the kernel drops every further SYN.
 */
async function blackhole(host: string): Promise<{ host: string; port: number; close(): Promise<void> }> {
  const child = spawn(
    process.execPath,
    [
      '-e',
      `const s = require('node:net').createServer(() => {});
       s.listen({ host: ${JSON.stringify(host)}, port: 0, backlog: 1 }, () => console.log(s.address().port));`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
    child.once('exit', (code) => reject(new Error(`the blackhole exited with ${code}`)));
  });
  process.kill(child.pid!, 'SIGSTOP');
  // Fill the accept queue until a connect no longer completes (at most a few).
  const fillers: Socket[] = [];
  for (let i = 0; i < 8; i++) {
    const s = connect({ host, port });
    s.on('error', () => {});
    fillers.push(s);
    const done = await new Promise<boolean>((r) => {
      const t = setTimeout(() => r(false), 300);
      s.once('connect', () => (clearTimeout(t), r(true)));
    });
    if (!done) break;
  }
  return {
    host,
    port,
    close: async () => {
      for (const s of fillers) s.destroy();
      const gone = new Promise((r) => child.once('exit', r));
      process.kill(child.pid!, 'SIGKILL');
      await gone;
    },
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

    test('a connect refused by a backend is retried on another: the client sees nothing, and three in a row fault it', async () => {
      const vip = `${net(6)}.1`;
      const port = await freePort(vip);
      const live = await tcpBackend('web2', `${net(6)}.12`);
      const resets = await tcpBackend('web3', `${net(6)}.13`, 'reset');
      cleanup.push(
        () => live.close(),
        () => resets.close(),
      );
      // Nothing listens on web1's DIP:port (refused); web3 accepts and resets before a byte.
      const dead: Backend = {
        ...live,
        id: 'web1',
        host: `${net(6)}.11`,
        port: await freePort(`${net(6)}.11`),
      };
      const faults: BackendFault[] = [];
      const off = driver.onBackendFault((f) => faults.push(f));
      const set = (healthy: boolean) =>
        endpoint(vip, port, [{ b: dead, healthy }, { b: live }, { b: resets, healthy }]);
      await driver.reconcile({ endpoints: [set(true)], snat: [] });
      const seen = new Set<string>();
      for (let i = 0; i < 60; i++) {
        const h = await hello(vip, port, undefined, 5000);
        seen.add(h.id);
        h.socket.destroy();
      }
      assert.deepEqual([...seen], ['web2'], 'every connection answered, by the live backend');
      await eventually('both failing backends faulted', () => faults.length >= 2, 5000);
      assert.deepEqual(
        faults.map((f) => `${f.dip}:${f.port}`).sort(),
        [`${dead.host}:${dead.port}`, `${resets.host}:${resets.port}`],
        'each faulted once',
      );
      assert.match(
        faults.find((f) => f.dip === dead.host)!.detail,
        /3 connects failed in a row \(connection refused\)/,
      );
      assert.match(faults.find((f) => f.dip === resets.host)!.detail, /connection reset/);
      // After the fault no new flow tries them: the live backend saw every one, the reset one at most 3.
      assert.ok(resets.accepted <= 3, `the resetting backend was tried ${resets.accepted} times`);
      if (driver instanceof LocalDriver) {
        const open = await hello(vip, port);
        const row = driver
          .flowTable(`tcp/${vip}:${port}`)
          .find((r) => r.client.endsWith(`:${open.socket.localPort}`));
        assert.equal(
          row?.backend,
          `${live.host}:${live.port}`,
          'the flow table names the backend finally used',
        );
        open.socket.destroy();
      }
      // The agent takes them out; when they come back healthy they are tried again.
      await driver.reconcile({ endpoints: [set(false)], snat: [] });
      off();
      await driver.reconcile({ endpoints: [], snat: [] });
    });

    test('a backend that accepts nothing within the connect timeout is skipped for another', async () => {
      const vip = `${net(9)}.1`;
      const port = await freePort(vip);
      const live = await tcpBackend('web2', `${net(9)}.12`);
      const hole = await blackhole(`${net(9)}.11`);
      cleanup.push(
        () => live.close(),
        () => hole.close(),
      );
      const faults: BackendFault[] = [];
      const off = driver.onBackendFault((f) => faults.push(f));
      const dead: Backend = { ...live, id: 'web1', host: hole.host, port: hole.port };
      await driver.reconcile({ endpoints: [endpoint(vip, port, [{ b: dead }, { b: live }])], snat: [] });
      const t0 = Date.now();
      // 24 flows, so that the 3 consecutive failures passive health needs land on the silent backend
      // whatever the ports hash to (with 12, fewer than 3 reached it about one run in fifty).
      const answers = await Promise.all(
        Array.from({ length: 24 }, async () => {
          const h = await hello(vip, port, undefined, 10_000);
          h.socket.destroy();
          return h.id;
        }),
      );
      assert.deepEqual([...new Set(answers)], ['web2']);
      assert.ok(Date.now() - t0 < 3 * CONNECT_TRY_MS + 2000, `answered within ${Date.now() - t0} ms`);
      await eventually('the silent backend faulted', () => faults.length > 0, 5000);
      assert.match(faults[0]!.detail, /no answer in time/);
      off();
      await driver.reconcile({ endpoints: [], snat: [] });
    });

    test('when every backend refuses, the client is reset after the tries, not left hanging', async () => {
      const vip = `${net(7)}.1`;
      const port = await freePort(vip);
      const a: Backend = {
        id: 'web1',
        host: `${net(7)}.11`,
        port: await freePort(`${net(7)}.11`),
      } as Backend;
      const b: Backend = {
        id: 'web2',
        host: `${net(7)}.12`,
        port: await freePort(`${net(7)}.12`),
      } as Backend;
      await driver.reconcile({ endpoints: [endpoint(vip, port, [{ b: a }, { b: b }])], snat: [] });
      const t0 = Date.now();
      assert.equal(await outcome(vip, port), 'reset');
      assert.ok(Date.now() - t0 < 5000);
      await driver.reconcile({ endpoints: [], snat: [] });
    });

    test('a UDP backend whose port is unreachable is skipped: the flow goes on to another', async () => {
      const { createSocket } = await import('node:dgram');
      const echo = createSocket('udp4');
      echo.on('message', (m, r) => echo.send(m, r.port, r.address));
      await new Promise<void>((r) => echo.bind({ address: `${net(8)}.12`, port: 0 }, () => r()));
      cleanup.push(() => new Promise((r) => echo.close(() => r())));
      const vip = `${net(8)}.1`;
      const port = await freePort(vip);
      const e = endpoint(vip, port, [], { protocol: 'udp', key: `udp/${vip}:${port}` });
      const backends = [
        {
          id: 'contoso/shop/dead',
          vm: 'dead',
          dip: `${net(8)}.11`,
          port: echo.address().port,
          healthy: true,
        },
        {
          id: 'contoso/shop/echo',
          vm: 'echo',
          dip: `${net(8)}.12`,
          port: echo.address().port,
          healthy: true,
        },
      ];
      await driver.reconcile({ endpoints: [{ ...e, backends }], snat: [] });
      for (let i = 0; i < 20; i++) assert.equal((await udpAsk(vip, port, `marco ${i}`))?.text, `marco ${i}`);
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
      await eventually('the retry binds the freed port', () =>
        driver.status().listeners.every((l) => l.state === 'listening'),
      );
      await driver.reconcile({ endpoints: [], snat: [] });
    });
  });
}
