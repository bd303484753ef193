/**
 * The driver contract: one suite, run against every driver. What every driver owes (reconcile is
 * idempotent, reports what it realized, forgets what is gone, judges address plans, runs workloads
 * where VMs live) runs for all; what carries traffic runs for the drivers that do, on real loopback
 * sockets for local, and for netns (root) with backends inside VM namespaces and clients in the
 * internet namespace or a VM; the cases the kernel cannot honour are skipped for netns with the
 * reason. Addresses: 127.204.0.0/16; netns: 10.204.0.0/16 and 198.18.0.0/16 inside its namespaces.
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
import { NETNS_BACKEND_PORT, NETNS_OUTSIDE_CLIENT, NetnsPlace } from '../support/netns-contract.ts';

const CONNECT_TRY_MS = 500;
const DRIVERS: { name: string; make: () => DataPlaneDriver }[] = [
  { name: 'none', make: () => new NoneDriver() },
  // Connect tries of 500 ms, so that a backend that never accepts costs the tests little time.
  { name: 'local', make: () => new LocalDriver({ time: scaledTime(1), connectTimeoutMs: CONNECT_TRY_MS }) },
];
// The kernel driver joins where it can run (Linux, root: .ci/run). Its traffic cases run with
// backends inside VM namespaces and clients in the internet namespace (test/support/netns-contract.ts).
if (netnsUnsupported() === undefined) {
  DRIVERS.push({ name: 'netns', make: () => new NetnsDriver({ prefix: `vdt${process.pid.toString(36)}k` }) });
} else if (process.env.VIPDIP_REQUIRE_NETNS) {
  throw new Error(`the netns driver cannot run here: ${netnsUnsupported()}`);
}

type Addr = Pick<Backend, 'id' | 'host' | 'port'>;

/** Where a driver's traffic cases run: addresses, backends and clients. */
interface Place {
  vip(i: number): string;
  host(i: number, n: number): string;
  vipPort(vip: string): Promise<number>;
  /** A port on `host` where nothing listens. */
  freeBackendPort(host: string): Promise<number>;
  backend(id: string, host: string): Promise<Addr & { close(): Promise<void> }>;
  /** A UDP backend that answers each datagram with its id first. */
  udpBackend(id: string, host: string): Promise<Addr & { close(): Promise<void> }>;
  reconcile(d: DesiredDataPlane): Promise<unknown>;
  /** One connection (from `from` if given): the backend's hello line `ID SEEN`, or `error CODE`. */
  hello(vip: string, port: number, from?: string): Promise<string>;
  outcome(vip: string, port: number): Promise<string>;
  hold(
    vip: string,
    port: number,
  ): Promise<{
    id: string;
    roundTrip(l: string): Promise<string>;
    closed(): Promise<unknown>;
    close(): void;
  }>;
  udpAsk(vip: string, port: number): Promise<string | undefined>;
  /** Where a client with no source NAT entry connects from, and what the backend sees of it. */
  plainClient(i: number): string | undefined;
  plainSeen(i: number): string;
  /** How a connection ends with no healthy backend, and when every backend refuses. */
  noBackend: string;
  allRefuse: string;
  stop(): void;
}

function localPlace(driver: DataPlaneDriver, net: (i: number) => string): Place {
  const udps: { close(): void }[] = [];
  return {
    vip: (i) => `${net(i)}.1`,
    host: (i, n) => `${net(i)}.${n}`,
    vipPort: (vip) => freePort(vip),
    freeBackendPort: (host) => freePort(host),
    backend: (id, host) => tcpBackend(id, host),
    udpBackend: async (id, host) => {
      const { createSocket } = await import('node:dgram');
      const s = createSocket('udp4');
      s.on('message', (_m, r) => s.send(`${id} ${r.address}`, r.port, r.address));
      await new Promise<void>((r) => s.bind({ address: host, port: 0 }, () => r()));
      udps.push(s);
      return { id, host, port: s.address().port, close: () => new Promise<void>((r) => s.close(() => r())) };
    },
    reconcile: (d) => driver.reconcile(d),
    hello: async (vip, port, from) => {
      try {
        const h = await hello(vip, port, from);
        h.socket.destroy();
        return `${h.id} ${h.seen}`;
      } catch (e) {
        return `error ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`;
      }
    },
    outcome: (vip, port) => outcome(vip, port),
    hold: async (vip, port) => {
      const h = await hello(vip, port);
      return {
        id: h.id,
        roundTrip: (l) => roundTrip(h.socket, l),
        closed: () => closed(h.socket),
        close: () => h.socket.destroy(),
      };
    },
    udpAsk: async (vip, port) => (await udpAsk(vip, port, 'marco'))?.text.split(' ')[0],
    plainClient: (i) => `${net(i)}.49`,
    plainSeen: (i) => `${net(i)}.49`,
    noBackend: 'reset',
    allRefuse: 'reset',
    stop: () => {},
  };
}

function netnsPlace(driver: NetnsDriver, base: number): Place {
  const w = new NetnsPlace(driver);
  return {
    vip: (i) => `198.18.${base + i}.1`,
    host: (i, n) => `10.204.${base + i}.${n}`,
    vipPort: () => Promise.resolve(80),
    freeBackendPort: async (host) => {
      await w.vm(host);
      return NETNS_BACKEND_PORT;
    },
    backend: (id, host) => w.backend(id, host),
    udpBackend: (id, host) => w.backend(id, host),
    reconcile: (d) => w.reconcile(d),
    hello: (vip, port, from) => w.hello(vip, port, from),
    outcome: (vip, port) => w.outcome(vip, port),
    hold: async (vip, port) => {
      const h = await w.hold(vip, port);
      return { ...h, closed: () => Promise.reject(new Error('netns does not close open flows')) };
    },
    udpAsk: (vip, port) => Promise.resolve(w.udpAsk(vip, port)),
    plainClient: () => undefined,
    plainSeen: () => NETNS_OUTSIDE_CLIENT,
    noBackend: 'refused',
    allRefuse: 'refused',
    stop: () => w.stop(),
  };
}

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function endpoint(
  address: string,
  port: number,
  backends: { b: Addr; healthy?: boolean }[],
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
      // A VIP the driver can carry: netns refuses loopback (it never leaves a namespace), and its
      // ports are the world's, not this host's.
      const vip = name === 'netns' ? `198.18.${base}.1` : `${net(0)}.1`;
      const port = (k: number) => (name === 'netns' ? Promise.resolve(8080 + k) : freePort(vip));
      const desired: DesiredDataPlane = {
        endpoints: [endpoint(vip, await port(0), []), endpoint(vip, await port(1), [])],
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
      const loopback = () => driver.checkAddressPlan(parseCidr('127.16.0.0/16'), 'x');
      const outside = () => driver.checkAddressPlan(parseCidr('10.0.0.0/16'), 'virtual network x');
      const links = () => driver.checkAddressPlan(parseCidr('100.127.8.0/24'), 'public pool');
      if (name === 'netns') {
        // Loopback never leaves a namespace; the router links are the world's own.
        assert.throws(loopback, /loopback/);
        assert.throws(links, /100\.127\.0\.0\/16/);
        assert.doesNotThrow(outside);
      } else if (driver.carriesTraffic) {
        assert.doesNotThrow(loopback);
        assert.throws(outside, /netns/);
      } else {
        for (const f of [loopback, outside, links]) assert.doesNotThrow(f);
      }
    });

    test('a workload command comes back runnable where the VM lives', () => {
      const cmd = driver.wrapWorkload(
        { service: 'shop', vm: 'web1', dip: '127.16.1.5' },
        { command: '/bin/sh', args: ['-c', 'true'] },
      );
      assert.ok(cmd.command.length > 0 && Array.isArray(cmd.args));
    });

    if (!driver.carriesTraffic) return;

    // Where the traffic runs: loopback sockets in this process (local), or backends in VM
    // namespaces and clients in the internet namespace or a VM (netns), through the same cases.
    const io: Place = driver instanceof NetnsDriver ? netnsPlace(driver, base) : localPlace(driver, net);
    cleanup.push(() => Promise.resolve(io.stop()));

    test('traffic to the VIP reaches the healthy backends only, and none healthy means a reset', async () => {
      const vip = io.vip(1);
      const port = await io.vipPort(vip);
      const a = await io.backend('web1', io.host(1, 11));
      const b = await io.backend('web2', io.host(1, 12));
      cleanup.push(
        () => a.close(),
        () => b.close(),
      );
      await io.reconcile({
        endpoints: [endpoint(vip, port, [{ b: a }, { b: b, healthy: false }])],
        snat: [],
      });
      for (let i = 0; i < 20; i++) assert.equal((await io.hello(vip, port)).split(' ')[0], 'web1');
      await io.reconcile({
        endpoints: [
          endpoint(vip, port, [
            { b: a, healthy: false },
            { b: b, healthy: false },
          ]),
        ],
        snat: [],
      });
      // local accepts and resets; the kernel answers the SYN with a reset (refused): both at once.
      assert.equal(await io.outcome(vip, port), io.noBackend);
      // The kernel path keeps no per-endpoint counters (status reports 0): only local counts.
      if (driver instanceof LocalDriver) assert.ok(driver.status().listeners[0]!.noBackend >= 1);
    });

    test('an open flow survives reconciles that take its backend out, and its listener socket stays', async () => {
      const vip = io.vip(2);
      const port = await io.vipPort(vip);
      const a = await io.backend('web1', io.host(2, 11));
      const b = await io.backend('web2', io.host(2, 12));
      cleanup.push(
        () => a.close(),
        () => b.close(),
      );
      await io.reconcile({ endpoints: [endpoint(vip, port, [{ b: a }])], snat: [] });
      const open = await io.hold(vip, port);
      assert.equal(open.id, 'web1');
      await io.reconcile({ endpoints: [endpoint(vip, port, [{ b: b }])], snat: [] });
      assert.equal(await open.roundTrip('still here'), 'still here');
      assert.equal((await io.hello(vip, port)).split(' ')[0], 'web2');
      if (driver instanceof LocalDriver) {
        // Removing the endpoint closes its open flows (local owns them). The kernel's conntrack
        // entry outlives the rules: netns leaves an open flow to end by itself or idle out.
        const done = open.closed();
        await io.reconcile({ endpoints: [], snat: [] });
        await done;
      } else {
        open.close();
        await io.reconcile({ endpoints: [], snat: [] });
      }
      assert.notEqual(await io.outcome(vip, port), 'answered', 'a removed endpoint no longer answers');
    });

    test('the backend sees the client, and a DIP with a source NAT entry is seen as its VIP', async () => {
      const vip = io.vip(3);
      const port = await io.vipPort(vip);
      const a = await io.backend('web1', io.host(3, 11));
      cleanup.push(() => a.close());
      const natted = io.host(3, 50);
      // The caller's VIP, as netns requires of a source (one the world answers for); local takes any.
      const source = io.vip(3).replace(/\.1$/, '.200');
      await io.reconcile({
        endpoints: [endpoint(vip, port, [{ b: a }])],
        snat: [{ subscription: 'contoso', dip: natted, source }],
      });
      const plain = await io.hello(vip, port, io.plainClient(3));
      const nat = await io.hello(vip, port, natted);
      assert.deepEqual([plain, nat], [`web1 ${io.plainSeen(3)}`, `web1 ${source}`]);
      await io.reconcile({ endpoints: [], snat: [] });
    });

    test('a UDP endpoint carries datagrams both ways', async () => {
      const echo = await io.udpBackend('echo', io.host(4, 11));
      cleanup.push(() => echo.close());
      const vip = io.vip(4);
      const port = await io.vipPort(vip);
      const e = endpoint(vip, port, [], { protocol: 'udp', key: `udp/${vip}:${port}` });
      await io.reconcile({
        endpoints: [
          {
            ...e,
            backends: [
              { id: 'contoso/shop/echo', vm: 'echo', dip: echo.host, port: echo.port, healthy: true },
            ],
          },
        ],
        snat: [],
      });
      assert.equal(await io.udpAsk(vip, port), 'echo');
      await io.reconcile({ endpoints: [], snat: [] });
    });

    test('when every backend refuses, the client is reset after the tries, not left hanging', async () => {
      const vip = io.vip(7);
      const port = await io.vipPort(vip);
      // Nothing listens on these DIPs' ports (for netns, VMs with no workload).
      const a = {
        id: 'web1',
        host: io.host(7, 11),
        port: await io.freeBackendPort(io.host(7, 11)),
      } as Backend;
      const b = {
        id: 'web2',
        host: io.host(7, 12),
        port: await io.freeBackendPort(io.host(7, 12)),
      } as Backend;
      await io.reconcile({ endpoints: [endpoint(vip, port, [{ b: a }, { b: b }])], snat: [] });
      const t0 = Date.now();
      // local tries each and resets the client; the kernel forwards the SYN, and the backend VM's own
      // reset reaches the client as a refusal.
      assert.equal(await io.outcome(vip, port), io.allRefuse);
      assert.ok(Date.now() - t0 < 5000);
      await io.reconcile({ endpoints: [], snat: [] });
    });

    if (driver instanceof NetnsDriver) {
      // Passive health and redispatch live in local's userspace proxy, which sees each connect. The
      // kernel's DNAT sends a SYN on to the one backend its slot names and never learns whether it
      // was answered: a refused or silent backend is the client's reset or timeout, and only the
      // probes take it out (netns-driver.test.ts: "only healthy backends", "refusal with none").
      const why = 'the kernel path has no passive health or redispatch: a DNATed SYN is not retried';
      test('a connect refused by a backend is retried on another: the client sees nothing, and three in a row fault it', (t) =>
        t.skip(why));
      test('a backend that accepts nothing within the connect timeout is skipped for another', (t) =>
        t.skip(why));
      test('a UDP backend whose port is unreachable is skipped: the flow goes on to another', (t) =>
        t.skip(why));
      test('an endpoint that cannot bind is reported, the others are realized, and it is retried', (t) =>
        t.skip('the kernel path binds no socket for an endpoint: there is nothing to fail to bind'));
      return;
    }

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
