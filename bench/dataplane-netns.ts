/**
 * The netns driver's data plane against a direct path and HAProxy, all inside one world (root only):
 * the netns driver builds a world with two VMs (an HTTP backend and an iperf3 server, started in
 * their namespaces), a VIP in front of each, and HAProxy 2.6 (`mode tcp`) runs in the
 * subscription's router with the same backends. Clients (wrk, iperf3) run in the internet
 * namespace; the direct path reaches the DIPs through the world's forwarding, core then router (the
 * benchmark lets the internet reach the bridge for it). UDP
 * round trips (an echo in the HTTP VM) go direct and through a UDP VIP; HAProxy has no UDP. Then
 * the time from a DIP change to the new ruleset in force (one reconcile: the VM's address moves and
 * the moved Maglev slots are rewritten), over many changes.
 *
 *   npm run bench -- dataplane-netns [--rounds N] [--seconds S] [--connections C] [--changes N]
 *   npm run bench -- dataplane-netns --sizes 16,256,1000   (only the build time of worlds of N VMs)
 *   npm run bench -- dataplane-netns --dip-changes 200     (DIP change → rule in force, channel vs nft -f)
 *   npm run bench -- dataplane-netns --apply 100,1000 [--vips V] [--workloads whoami|whoami-own|responder]
 *                                        (apply of N VMs → every VIP answers; whoami in shared hosts by default)
 *   npm run bench -- dataplane-netns --crowd 0,250,1000 [--rounds N]  (one VIP among N others)
 *
 * Every namespace it makes carries the prefix `vdbench…` and is removed at the end, also on failure.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import {
  sharedHostCommand,
  workloadCommand,
  WorkloadSupervisor,
  type DesiredWorkload,
} from '../src/agent/index.ts';
import { VIPDIP_BIN } from '../src/cli/up-options.ts';
import { NetnsDriver, type DesiredDataPlane } from '../src/dataplane/index.ts';
import { removeWorld, vmNamespace } from '../src/dataplane/netns/world.ts';
import { ROOT, fmtRate, machine, median, saveJson, saveSection } from './report.ts';

const exec = promisify(execFile);
const PREFIX = `vdbench${process.pid.toString(36)}`;
const VIP = '198.18.0.10';
const HAPROXY = '198.18.0.100';
const HTTP_DIP = '10.1.0.4';
const IPERF_DIP = '10.1.0.5';
const UDP_PORT = 7000;
/** The HTTP backend's second port, which only the direct path uses (see where it starts). */
const DIRECT_PORT = 8001;

/**
 * UDP round trips, one flow, one 64-byte datagram in flight: sends, waits for the echo, sends again,
 * COUNT times (a datagram not back within 200 ms counts as lost and is sent anew). Prints
 * `{perS, p50Us, p99Us, lost}`. Run with node -e inside the internet namespace.
 */
const UDP_CLIENT = `
const { createSocket } = require('node:dgram');
const [host, port, count] = process.argv.slice(1);
const s = createSocket('udp4');
const rtts = []; let lost = 0; let t0 = 0; let timer;
const payload = Buffer.alloc(64, 1);
const send = () => { t0 = process.hrtime.bigint(); s.send(payload, Number(port), host);
  timer = setTimeout(() => { lost++; send(); }, 200); };
const start = Date.now();
s.on('message', () => { clearTimeout(timer); rtts.push(Number(process.hrtime.bigint() - t0) / 1000);
  if (rtts.length < Number(count)) return send();
  const ms = Date.now() - start; rtts.sort((a, b) => a - b);
  console.log(JSON.stringify({ perS: rtts.length / (ms / 1000), p50Us: rtts[rtts.length >> 1],
    p99Us: rtts[Math.floor(rtts.length * 0.99)], lost })); s.close(); });
s.bind(0, send);
`;

async function udpRoundTrips(ns: string, host: string, count: number) {
  const { stdout } = await exec(
    'ip',
    inNs(ns, process.execPath, ['-e', UDP_CLIENT, host, String(UDP_PORT), String(count)]),
    {
      timeout: 120_000,
    },
  );
  return JSON.parse(stdout) as { perS: number; p50Us: number; p99Us: number; lost: number };
}

type Path = 'direct' | 'netns' | 'haproxy';
type Metric = 'throughputGbps' | 'keepAliveRps' | 'newConnRps';

function desired(extraDip = '10.1.0.6'): DesiredDataPlane {
  const vm = (name: string, dip: string) => ({
    key: `s/bench/${name}`,
    subscription: 's',
    service: 'bench',
    vm: name,
    vnet: 's/net',
    cidr: '10.1.0.0/24',
    dip,
  });
  const ep = (port: number, backends: [string, string, number][]) => ({
    key: `tcp/${VIP}:${port}`,
    kind: 'vip' as const,
    subscription: 's',
    service: 'bench',
    name: `p${port}`,
    lbSet: null,
    address: VIP,
    protocol: 'tcp' as const,
    port,
    distribution: 'fiveTuple' as const,
    idleMs: 240_000,
    acl: [],
    proxyProtocol: false,
    backends: backends.map(([name, dip, p]) => ({
      id: `s/bench/${name}`,
      vm: name,
      dip,
      port: p,
      healthy: true,
    })),
  });
  return {
    endpoints: [
      ep(8080, [['http1', HTTP_DIP, 8000]]),
      ep(5201, [['iperf1', IPERF_DIP, 5201]]),
      {
        ...ep(UDP_PORT, [['http1', HTTP_DIP, UDP_PORT]]),
        key: `udp/${VIP}:${UDP_PORT}`,
        protocol: 'udp' as const,
      },
      // Only for the DIP-change figure: two backends, so the map has slots to move.
      ep(9000, [
        ['http1', HTTP_DIP, 8000],
        ['spare', extraDip, 8000],
      ]),
    ],
    snat: [],
    vms: [vm('http1', HTTP_DIP), vm('iperf1', IPERF_DIP), vm('spare', extraDip)],
    vnets: [{ key: 's/net', subscription: 's', name: 'net', subnets: ['10.1.0.0/24'] }],
  };
}

function parseArgs(args: string[]) {
  const o = {
    rounds: 3,
    seconds: 5,
    connections: 50,
    changes: 100,
    sizes: [] as number[],
    dipChanges: 0,
    apply: [] as number[],
    vips: 10,
    crowd: [] as number[],
    workloads: 'whoami' as Backends,
  };
  for (let i = 0; i < args.length; i += 2) {
    const v = Number(args[i + 1]);
    if (args[i] === '--sizes')
      o.sizes = String(args[i + 1])
        .split(',')
        .map(Number);
    else if (args[i] === '--rounds') o.rounds = v;
    else if (args[i] === '--seconds') o.seconds = v;
    else if (args[i] === '--connections') o.connections = v;
    else if (args[i] === '--changes') o.changes = v;
    else if (args[i] === '--dip-changes') o.dipChanges = v;
    else if (args[i] === '--vips') o.vips = v;
    else if (args[i] === '--workloads') {
      const w = String(args[i + 1]);
      if (w !== 'whoami' && w !== 'whoami-own' && w !== 'responder')
        throw new Error('bench dataplane-netns: --workloads is whoami, whoami-own or responder');
      o.workloads = w;
    } else if (args[i] === '--crowd')
      o.crowd = String(args[i + 1])
        .split(',')
        .map(Number);
    else if (args[i] === '--apply')
      o.apply = String(args[i + 1])
        .split(',')
        .map(Number);
    else throw new Error(`bench dataplane-netns: unknown argument ${args[i]}`);
  }
  return o;
}

const inNs = (ns: string, cmd: string, args: string[]) => ['netns', 'exec', ns, cmd, ...args];

async function wrk(ns: string, url: string, seconds: number, connections: number, close: boolean) {
  const args = [
    '-t',
    '1',
    '-c',
    String(connections),
    '-d',
    `${seconds}s`,
    ...(close ? ['-H', 'Connection: close'] : []),
    url,
  ];
  const { stdout } = await exec('ip', inNs(ns, 'wrk', args), { timeout: (seconds + 30) * 1000 });
  const m = /Requests\/sec:\s+([0-9.]+)/.exec(stdout);
  if (m === null) throw new Error(`wrk said:\n${stdout}`);
  return Number(m[1]);
}

async function iperf(ns: string, host: string, seconds: number) {
  const { stdout } = await exec(
    'ip',
    inNs(ns, 'iperf3', ['-c', host, '-p', '5201', '-t', String(seconds), '-J']),
    {
      timeout: (seconds + 30) * 1000,
      maxBuffer: 1 << 24,
    },
  );
  const j = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } } };
  return (j.end?.sum_received?.bits_per_second ?? NaN) / 1e9;
}

function startIn(ns: string, cmd: string, args: string[]): ChildProcess {
  const c = spawn('ip', inNs(ns, cmd, args), { stdio: ['pipe', 'ignore', 'inherit'] });
  return c;
}

/** The bench's HTTP or UDP echo backend (bench/dataplane-backend.ts) in VM `http1` of a world. */
function startBackend(prefix: string, kind: 'http' | 'udp', env: Record<string, string>): ChildProcess {
  return spawn(
    'ip',
    inNs(vmNamespace(prefix, 'bench/http1'), process.execPath, [
      '--import',
      'tsx',
      `${ROOT}/bench/dataplane-backend.ts`,
      kind,
    ]),
    {
      stdio: ['pipe', 'ignore', 'inherit'],
      cwd: ROOT,
      env: { ...process.env, VIPDIP_DIP: HTTP_DIP, ...env },
    },
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Lets a namespace that opens connections by the tens of thousands reuse its ports. wrk closes its
 * side first, so every connection leaves the client a TIME_WAIT entry for 60 s; at ~5,000
 * connections per second the first 5-s run leaves 14,000, and from then on \`connect\` scans the port
 * range for a free port and new connections fell to 700–900/s on every path, direct included (the
 * "collapses" of earlier runs). Load generators set these; the paths under test are not touched.
 */
async function tuneClient(ns: string): Promise<void> {
  await exec(
    'ip',
    inNs(ns, 'sysctl', ['-q', '-w', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65535']),
  );
}
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

/**
 * The cost that grows with the cloud: a world of N VMs (one VNet, ten VIPs over them, a Maglev
 * map each) built by one first reconcile, and torn down. Namespaces and veths only: no workload runs.
 */
async function sizes(ns: number[]): Promise<void> {
  const rows: string[] = [];
  const raw: unknown[] = [];
  for (const n of ns) {
    const prefix = `vdbs${n}x${process.pid.toString(36)}`;
    const d = new NetnsDriver({ prefix });
    const vms = Array.from({ length: n }, (_, i) => ({
      key: `s/svc${i % 10}/vm${i}`,
      subscription: 's',
      service: `svc${i % 10}`,
      vm: `vm${i}`,
      vnet: 's/net',
      cidr: '10.8.0.0/16',
      dip: `10.8.${(i + 4) >> 8}.${(i + 4) & 255}`,
    }));
    const state: DesiredDataPlane = {
      endpoints: Array.from({ length: 10 }, (_, s) => ({
        key: `tcp/198.18.0.${s + 10}:80`,
        kind: 'vip' as const,
        subscription: 's',
        service: `svc${s}`,
        name: 'http',
        lbSet: null,
        address: `198.18.0.${s + 10}`,
        protocol: 'tcp' as const,
        port: 80,
        distribution: 'fiveTuple' as const,
        idleMs: 60_000,
        acl: [],
        proxyProtocol: false,
        backends: vms
          .filter((v) => v.service === `svc${s}`)
          .map((v) => ({ id: v.key, vm: v.vm, dip: v.dip, port: 8000, healthy: true })),
      })),
      snat: vms.map((v) => ({
        subscription: 's',
        dip: v.dip,
        source: `198.18.0.${Number(v.service.slice(3)) + 10}`,
      })),
      vms,
      vnets: [{ key: 's/net', subscription: 's', name: 'net', subnets: ['10.8.0.0/16'] }],
    };
    try {
      const t0 = performance.now();
      const r = await d.reconcile(state);
      const buildMs = performance.now() - t0;
      if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed.slice(0, 3)));
      const t1 = performance.now();
      await d.close();
      const closeMs = performance.now() - t1;
      rows.push(`| ${n} | ${(buildMs / 1000).toFixed(1)} s | ${(closeMs / 1000).toFixed(1)} s |`);
      raw.push({ vms: n, buildMs, closeMs });
      console.error(`  ${n} VMs: built in ${buildMs.toFixed(0)} ms, removed in ${closeMs.toFixed(0)} ms`);
    } finally {
      await d.close();
      await removeWorld(prefix);
    }
  }
  const body =
    `Measured ${new Date().toISOString().slice(0, 10)}, load average ${loadavg()[0]!.toFixed(1)} on the shared 2-core machine: one first \`reconcile\` of a world of N VMs in one VNet behind ten VIPs (namespaces, veths, addresses, and a ruleset with ten Maglev maps of lb/'s ladder size: 16,381 slots for 100 backends), no workloads; then \`close\`.\n\n` +
    `| VMs | build | teardown |\n| ---: | ---: | ---: |\n${rows.join('\n')}\n\n` +
    "The world's devices (the VM side of each veth from two perl processes that enter each VM namespace in turn and send its five rtnetlink requests, src/dataplane/netns/vm-links.ts; before 2026-12-06 one `nsenter --net=… ip -batch` per VM, forked by four shells) and the ruleset (one `nft -f`, most of it parsing the ten Maglev maps; before the ladder, ten 65,537-slot maps took ~3.4 s of this machine's CPU for 655,370 elements) go in concurrently, so on two loaded cores the build is about their sum, on an idle machine nearer the larger. Before (18.8 s for 1,000 at load 2.8; 16.6 s re-measured at load 6.5 just before this run): `ip -n` per VM, whose mount-namespace copy grows with the number of namespaces, IPv6 link-local addresses (DAD, MLD) on every link, and one `ip netns pids` per namespace at teardown (7.0 s; 5.4 s re-measured). Other runs of 1,000 in the same hour, at load 6.5–7: 10.3 s (devices and ruleset one after the other), 11.4 s and 13.1 s: on this machine the figure moves with the load by a third. The issue's target is every VIP answering within 10 s of an apply of 1,000 VMs, workloads included: this measures the world without workloads (1,000 workload processes do not fit this machine).\n\n`npm run bench -- dataplane-netns --sizes 16,256,1000` (root).";
  console.log(body);
  await saveJson('dataplane-netns', 'sizes', raw);
  await saveSection(
    'dataplane-netns-sizes',
    'Data plane, netns driver: building worlds of 16 to 1,000 VMs',
    body,
  );
}

/**
 * DIP change → rule in force, side by side: two small worlds (the bench's three VMs), one driver
 * with the long-lived `nft -i` channel, one with a new `nft -f` process per update, changed in
 * interleaved rounds of ten. Each change moves the spare VM's DIP, so one `reconcile` rewrites the
 * backend's element of a two-backend endpoint and moves the VM's address. Measured from the
 * `reconcile` call (the desired state changed) to the moment the channel reported the transaction
 * committed by the kernel (`lastUpdate.inForceAt`), and to the reconcile's return (address moved
 * too). After each round the kernel's map is read back and must hold the last DIP. Then a burst of
 * 20 changes made without waiting: how many reconciles ran (coalescing) and when the last was in force.
 */
async function dipChanges(n: number, rounds: number): Promise<void> {
  const modes = [
    { name: 'channel (`nft -i`)', interactive: true },
    { name: '`nft -f` per update', interactive: false },
  ];
  const prefixes = modes.map((_, i) => `vdbd${i}x${process.pid.toString(36)}`);
  const drivers = modes.map(
    (m, i) => new NetnsDriver({ prefix: prefixes[i]!, nftInteractive: m.interactive }),
  );
  const inForce: number[][] = modes.map(() => []);
  const total: number[][] = modes.map(() => []);
  const count = [0, 0];
  const burst: { calls: number; runs: number; lastInForceMs: number; allMs: number }[] = [];
  const load0 = loadavg()[0]!;
  try {
    for (const d of drivers) {
      const r = await d.reconcile(desired());
      if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed));
    }
    for (let round = 0; count[0]! < n; round++) {
      for (const i of round % 2 === 0 ? [0, 1] : [1, 0]) {
        const d = drivers[i]!;
        let dip = '';
        for (let j = 0; j < 10 && count[i]! < n; j++) {
          dip = count[i]!++ % 2 === 0 ? '10.1.0.7' : '10.1.0.6';
          const t0 = performance.now();
          const r = await d.reconcile(desired(dip));
          total[i]!.push(performance.now() - t0);
          inForce[i]!.push(d.lastUpdate.inForceAt - t0);
          if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed));
        }
        const { stdout } = await exec('ip', [
          ...inNs(d.router('s')!.ns, 'nft', ['list', 'map', 'ip', 'vipdip', 'backends_tcp_198_18_0_10_9000']),
        ]);
        if (!stdout.includes(`${dip} . 8000`)) throw new Error(`the kernel's map lacks ${dip}:\n${stdout}`);
      }
    }
    for (let b = 0; b < rounds; b++) {
      const d = drivers[0]!;
      const runs0 = d.reconcileStats.runs;
      const t0 = performance.now();
      const calls = Array.from({ length: 20 }, (_, j) =>
        d.reconcile(desired(j % 2 === 0 ? '10.1.0.7' : '10.1.0.8')),
      );
      await Promise.all(calls);
      burst.push({
        calls: 20,
        runs: d.reconcileStats.runs - runs0,
        lastInForceMs: d.lastUpdate.inForceAt - t0,
        allMs: performance.now() - t0,
      });
      await d.reconcile(desired());
    }
  } finally {
    for (const d of drivers) await d.close();
    for (const p of prefixes) await removeWorld(p);
  }
  const f = (xs: number[]) =>
    `p50 ${pct(xs, 0.5).toFixed(1)} ms, p99 **${pct(xs, 0.99).toFixed(1)} ms**, max ${Math.max(...xs).toFixed(1)} ms`;
  const rows = modes.map((m, i) => `| ${m.name} | ${f(inForce[i]!)} | ${f(total[i]!)} |`);
  const body =
    `Measured ${new Date().toISOString().slice(0, 10)}, load average ${load0.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end, on the shared 2-core machine. ${n} DIP changes per path, in interleaved rounds of ten, two worlds side by side (three VMs each; the changed endpoint has two backends behind a 1,021-slot map (lb/'s ladder for two backends) whose slots hold tags, so one element of the backend map is rewritten). "In force": from the \`reconcile\` call (the desired state changed) to the kernel's commit of the nft transaction, as the channel reports it; each round ends by reading the map back from the kernel (it held the last DIP every time). "Reconcile": to the call's return (the VM's address moved too; the ruleset now goes in before any \`ip\` process starts).\n\n` +
    `| path | DIP change → rule in force | → reconcile returned |\n| --- | ---: | ---: |\n${rows.join('\n')}\n\n` +
    `Bursts of 20 changes asked without waiting (channel path): ${burst.map((b) => `${b.runs} reconciles, last state in force after ${b.lastInForceMs.toFixed(0)} ms`).join('; ')} (reconciles coalesce: one runs, the next takes the latest state). Target: p99 ≤ 50 ms. This measures from the driver's desired state, not from the store: the agent's reading of the store comes before it.\n\n` +
    `\`npm run bench -- dataplane-netns --dip-changes ${n}\` (root).`;
  console.log(body);
  await saveJson('dataplane-netns', 'dipChanges', { modes: modes.map((m) => m.name), inForce, total, burst });
  await saveSection('dataplane-netns-dip', 'Data plane, netns driver: DIP change to rule in force', body);
}

/**
 * What one VIP costs among many: new connections (and keep-alive requests) per second through one
 * VIP of a world that holds N other VIPs (their keys sort before it, so a ruleset that matched
 * endpoints rule by rule would walk all N first), for each N given, in interleaved rounds; the world
 * is reconciled from one N to the next. One HTTP backend serves them all.
 */
async function crowd(counts: number[], rounds: number, seconds: number, connections: number): Promise<void> {
  const prefix = `vdbc${process.pid.toString(36)}`;
  const d = new NetnsDriver({ prefix });
  const target = '198.18.9.250';
  const backend = { id: 's/bench/http1', vm: 'http1', dip: HTTP_DIP, port: 8000, healthy: true };
  const ep = (address: string, port: number) => ({
    key: `tcp/${address}:${port}`,
    kind: 'vip' as const,
    subscription: 's',
    service: 'bench',
    name: `p${port}`,
    lbSet: null,
    address,
    protocol: 'tcp' as const,
    port,
    distribution: 'fiveTuple' as const,
    idleMs: 240_000,
    acl: [],
    proxyProtocol: false,
    backends: [backend],
  });
  const state = (n: number): DesiredDataPlane => ({
    endpoints: [
      ...Array.from({ length: n }, (_, i) => ep(`198.18.${1 + (i >> 8)}.${i & 255}`, 80)),
      ep(target, 8080),
    ],
    snat: [],
    vms: [
      {
        key: 's/bench/http1',
        subscription: 's',
        service: 'bench',
        vm: 'http1',
        vnet: 's/net',
        cidr: '10.1.0.0/24',
        dip: HTTP_DIP,
      },
    ],
    vnets: [{ key: 's/net', subscription: 's', name: 'net', subnets: ['10.1.0.0/24'] }],
  });
  const newConn: number[][] = counts.map(() => []);
  const keepAlive: number[][] = counts.map(() => []);
  const updateMs: number[][] = counts.map(() => []);
  const load0 = loadavg()[0]!;
  let server: ChildProcess | undefined;
  try {
    const r0 = await d.reconcile(state(counts[0]!));
    if (r0.failed.length > 0) throw new Error(JSON.stringify(r0.failed.slice(0, 3)));
    server = startBackend(prefix, 'http', { VIPDIP_PORT_HTTP: '8000' });
    await tuneClient(d.names.internet);
    await sleep(1500);
    for (let round = 0; round < rounds; round++) {
      for (let k = 0; k < counts.length; k++) {
        const i = (k + round) % counts.length;
        const t0 = performance.now();
        const r = await d.reconcile(state(counts[i]!));
        updateMs[i]!.push(performance.now() - t0);
        if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed.slice(0, 3)));
        await sleep(300);
        const url = `http://${target}:8080/`;
        newConn[i]!.push(await wrk(d.names.internet, url, seconds, connections, true));
        keepAlive[i]!.push(await wrk(d.names.internet, url, seconds, connections, false));
        console.error(
          `  round ${round + 1}, ${counts[i]} other VIPs: new ${newConn[i]!.at(-1)!.toFixed(0)}/s, keep-alive ${keepAlive[i]!.at(-1)!.toFixed(0)}/s, reconcile ${updateMs[i]!.at(-1)!.toFixed(0)} ms`,
        );
      }
    }
  } finally {
    if (server?.exitCode === null) server.kill('SIGKILL');
    await d.close();
    await removeWorld(prefix);
  }
  const base = (xs: number[][]) => median(xs[0]!);
  const rows = counts.map(
    (n, i) =>
      `| ${n} | ${fmtRate(median(newConn[i]!))} | ${(median(newConn[i]!) / base(newConn)).toFixed(2)} | ${fmtRate(median(keepAlive[i]!))} | ${(median(keepAlive[i]!) / base(keepAlive)).toFixed(2)} |`,
  );
  const body =
    `Measured ${new Date().toISOString().slice(0, 10)}, load average ${load0.toFixed(1)} at the start and ${loadavg()[0]!.toFixed(1)} at the end, on the shared 2-core machine. One VIP (one backend) among N others whose keys sort before it; wrk (1 thread, ${connections} connections, ${seconds} s) from the internet namespace; medians of ${rounds} interleaved rounds, the world reconciled from one N to the next.\n\n` +
    `| other VIPs | new connections/s | vs first | keep-alive requests/s | vs first |\n| ---: | ---: | ---: | ---: | ---: |\n${rows.join('\n')}\n\n` +
    `\`npm run bench -- dataplane-netns --crowd ${counts.join(',')} --rounds ${rounds}\` (root).`;
  console.log(body);
  await saveJson('dataplane-netns', 'crowd', { counts, newConn, keepAlive, updateMs });
  await saveSection('dataplane-netns-crowd', 'Data plane, netns driver: one VIP among many', body);
}

/**
 * Prober run inside the internet namespace: after a line on stdin, connects to every HOST:PORT
 * given, again every 50 ms until it answers an HTTP request with 200, and prints when each first
 * answered (Date.now()), or what was still silent at the deadline.
 */
const PROBER = `
const net = require('node:net');
const [limit, ...targets] = process.argv.slice(1);
const first = {}; let left = targets.length; let deadline = 0; let finished = false;
const finish = () => { if (finished) return; finished = true; console.log(JSON.stringify({ first })); process.exit(0); };
const tryOne = (t) => {
  if (finished) return;
  const [h, p] = t.split(':'); const s = net.connect({ host: h, port: Number(p) }); let done = false;
  const fail = () => { if (done) return; done = true; s.destroy();
    if (Date.now() < deadline) setTimeout(() => tryOne(t), 50); else finish(); };
  s.setTimeout(1000, fail); s.on('error', fail); s.on('close', fail);
  s.on('connect', () => s.write('GET / HTTP/1.0\\r\\n\\r\\n'));
  s.on('data', (d) => { if (done) return; if (!String(d).includes(' 200 ')) return fail();
    done = true; s.destroy(); first[t] = Date.now(); if (--left === 0) finish(); });
};
process.stdin.once('data', () => { deadline = Date.now() + Number(limit); for (const t of targets) tryOne(t); });
console.log('ready');
`;

/**
 * What listens behind the VIPs of an apply: `whoami` as vipdip runs it (the agent's supervisor, in the
 * sandbox, many VMs to a shared host), `whoami-own` (a Node process per VM, as before shared hosts;
 * about 40 MB each, so not for 1,000 VMs on this machine), or `responder` (bench/netns-responder.py,
 * one Python process holding a socket in every VM namespace: the lower bound, no workload at all).
 */
type Backends = 'whoami' | 'whoami-own' | 'responder';

const BACKENDS_SAID: Record<Backends, string> = {
  whoami:
    "the built-in `whoami` on DIP:8000 in every VM, started by the agent's workload supervisor in the sandbox, as `vipdip up` starts it: many VMs to a shared host (src/agent/shared-hosts.ts, 128 VMs each), its sockets opened inside each VM's namespace by the root launcher before it becomes the sandbox user",
  'whoami-own':
    "the built-in `whoami` on DIP:8000 in every VM, started by the agent's workload supervisor in the sandbox, a Node process per VM (`ip netns exec`, then setpriv; as before shared hosts)",
  responder:
    'one responder process listens on DIP:8000 inside every VM namespace (bench/netns-responder.py: a socket per VM namespace, no workload process at all)',
};

/** The whoami workload of a bench VM, as the agent would want it. */
function benchWhoami(x: { service: string; vm: string; dip: string }, vip: string): DesiredWorkload {
  const env = {
    VIPDIP_SUBSCRIPTION: 's',
    VIPDIP_SERVICE: x.service,
    VIPDIP_VM: x.vm,
    VIPDIP_DIP: x.dip,
    VIPDIP_VIP: vip,
    VIPDIP_PORT_HTTP: '8000',
  };
  return {
    key: `${x.service}/${x.vm}`,
    subscription: 's',
    service: x.service,
    vm: x.vm,
    dip: x.dip,
    workload: 'whoami',
    launch: { kind: 'builtin', image: 'whoami' },
    env,
    fingerprint: JSON.stringify(env),
  };
}

const vipAddress = (s: number) => `198.18.${(s + 10) >> 8}.${(s + 10) & 255}`;

/**
 * Apply of N VMs → every VIP answering, from the internet namespace. The empty world exists first
 * (\`vipdip up\` makes it once); then, from t0: one \`reconcile\` of N VMs in one VNet behind V VIPs
 * (port 80, a Maglev map each, of lb/'s ladder size for its N/V backends); when it returns, one responder
 * process (bench/netns-responder.py) opens a listening socket on DIP:8000 inside every VM namespace
 * and answers HTTP (no per-VM workload process: 1,000 of them do not fit this machine). A prober in
 * the internet namespace, started before t0, sends an HTTP request to every VIP every 50 ms until
 * each has answered 200 once; the figure is the last VIP's first answer.
 */
async function applyUntilAnswering(ns: number[], vipCount: number, backends: Backends): Promise<void> {
  const rows: string[] = [];
  const raw: unknown[] = [];
  const load0 = loadavg()[0]!;
  for (const n of ns) {
    const v = Math.min(vipCount, n);
    const prefix = `vdba${n}x${process.pid.toString(36)}`;
    const d = new NetnsDriver({ prefix });
    const vms = Array.from({ length: n }, (_, i) => ({
      key: `s/svc${i % v}/vm${i}`,
      subscription: 's',
      service: `svc${i % v}`,
      vm: `vm${i}`,
      vnet: 's/net',
      cidr: '10.8.0.0/16',
      dip: `10.8.${(i + 4) >> 8}.${(i + 4) & 255}`,
    }));
    const state: DesiredDataPlane = {
      endpoints: Array.from({ length: v }, (_, s) => ({
        key: `tcp/${vipAddress(s)}:80`,
        kind: 'vip' as const,
        subscription: 's',
        service: `svc${s}`,
        name: 'http',
        lbSet: null,
        address: vipAddress(s),
        protocol: 'tcp' as const,
        port: 80,
        distribution: 'fiveTuple' as const,
        idleMs: 60_000,
        acl: [],
        proxyProtocol: false,
        backends: vms
          .filter((x) => x.service === `svc${s}`)
          .map((x) => ({ id: x.key, vm: x.vm, dip: x.dip, port: 8000, healthy: true })),
      })),
      snat: vms.map((x) => ({
        subscription: 's',
        dip: x.dip,
        source: vipAddress(Number(x.service.slice(3))),
      })),
      vms,
      vnets: [{ key: 's/net', subscription: 's', name: 'net', subnets: ['10.8.0.0/16'] }],
    };
    let prober: ChildProcess | undefined;
    let responder: ChildProcess | undefined;
    // Made before t0, as the agent makes it when vipdip starts (the sandbox user, its directory).
    const supervisor =
      backends === 'responder'
        ? undefined
        : new WorkloadSupervisor({
            command: (w) => d.wrapWorkload(w, workloadCommand(w.launch, VIPDIP_BIN)),
            ...(backends === 'whoami' ? { sharedHost: sharedHostCommand(VIPDIP_BIN) } : {}),
            stopGraceMs: 1000,
          });
    try {
      await d.start();
      await supervisor?.reconcile([], new Set());
      const limitMs = 900_000;
      prober = spawn(
        'ip',
        inNs(d.names.internet, process.execPath, [
          '-e',
          PROBER,
          String(limitMs),
          ...Array.from({ length: v }, (_, s) => `${vipAddress(s)}:80`),
        ]),
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      const lines = createInterface({ input: prober.stdout! });
      const it = lines[Symbol.asyncIterator]();
      if ((await it.next()).value !== 'ready') throw new Error('the prober did not start');
      const t0 = Date.now();
      prober.stdin!.write('go\n');
      const r = await d.reconcile(state);
      const reconcileMs = Date.now() - t0;
      const nftMs = d.lastUpdate.ms;
      if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed.slice(0, 3)));
      if (supervisor !== undefined) {
        const want = vms.map((x) => benchWhoami(x, vipAddress(Number(x.service.slice(3)))));
        await supervisor.reconcile(want, new Set(want.map((w) => w.key)));
        for (;;) {
          const reports = supervisor.reports();
          if (reports.every((r) => r.status === 'running')) break;
          const crashed = reports.find((r) => r.status === 'crashed');
          if (crashed !== undefined)
            throw new Error(`${crashed.vm}: ${crashed.lines.map((l) => l.text).join(' | ')}`);
          await new Promise((res) => setTimeout(res, 10));
        }
      } else {
        responder = spawn('python3', [`${ROOT}/bench/netns-responder.py`, '8000'], {
          stdio: ['pipe', 'pipe', 'inherit'],
        });
        responder.stdin!.write(
          `${vms.map((x) => `${vmNamespace(prefix, `${x.service}/${x.vm}`)} ${x.dip}`).join(',')}\n`,
        );
        const rl = createInterface({ input: responder.stdout! })[Symbol.asyncIterator]();
        const ready = (await rl.next()).value as string | undefined;
        if (ready?.startsWith('ready') !== true) throw new Error(`the responder said ${ready}`);
      }
      const respondersMs = Date.now() - t0;
      const out = JSON.parse(String((await it.next()).value)) as { first: Record<string, number> };
      const times = Object.values(out.first).map((x) => x - t0);
      const answered = times.length;
      const allMs = answered === v ? Math.max(...times) : NaN;
      rows.push(
        `| ${n} | ${v} | ${(nftMs / 1000).toFixed(1)} s | ${(reconcileMs / 1000).toFixed(1)} s | ${(respondersMs / 1000).toFixed(1)} s | ${answered === v ? `**${(allMs / 1000).toFixed(1)} s**` : `${v - answered} of ${v} never answered in ${limitMs / 1000} s`} |`,
      );
      raw.push({ vms: n, vips: v, nftMs, reconcileMs, respondersMs, allMs, answered });
      console.error(
        `  ${n} VMs, ${v} VIPs: nft ${nftMs.toFixed(0)} ms, reconcile ${reconcileMs} ms, listening ${respondersMs} ms, all answering ${allMs} ms (${answered}/${v})`,
      );
    } finally {
      prober?.kill('SIGKILL');
      responder?.stdin?.end();
      responder?.kill('SIGKILL');
      await supervisor?.close();
      await d.close();
      await removeWorld(prefix);
    }
  }
  const body =
    `Measured ${new Date().toISOString().slice(0, 10)}, load average ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on the shared 2-core machine. From t0 (the empty world already made, as \`vipdip up\` makes it once): one \`reconcile\` of N VMs in one VNet behind V VIPs (N/V backends each, and a Maglev map each of lb/'s ladder size for them: 101 slots for one backend, 1,021 up to 10, 4,093 up to 40, 16,381 up to 163, else 65,537); when it returns, ${BACKENDS_SAID[backends]}; a prober in the internet namespace asks every VIP for HTTP every 50 ms until each has answered 200 once. "All answering" is the last VIP's first answer.\n\n` +
    `| VMs | VIPs | ruleset in (\`nft -f\`, alongside the devices) | reconcile returned | backends listening | every VIP answering |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n${rows.join('\n')}\n\n` +
    `Target: ≤ 10 s for 1,000 VMs. \`npm run bench -- dataplane-netns --apply ${ns.join(',')} --vips ${vipCount} --workloads ${backends}\` (root).`;
  console.log(body);
  // The responder's sections keep their names from before workloads were measured.
  const tag = backends === 'responder' ? '' : `-${backends}`;
  await saveJson('dataplane-netns', `apply${tag}-v${vipCount}`, raw);
  await saveSection(
    `dataplane-netns-apply${tag}-v${vipCount}`,
    `Data plane, netns driver: apply of N VMs to every VIP answering (${vipCount} VIPs, ${backends === 'responder' ? 'one responder' : backends === 'whoami' ? 'whoami in shared hosts' : 'whoami, a process per VM'})`,
    body,
  );
}

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  if (process.getuid?.() !== 0)
    throw new Error('bench dataplane-netns: needs root (network namespaces and nftables)');
  if (o.sizes.length > 0) return sizes(o.sizes);
  if (o.dipChanges > 0) return dipChanges(o.dipChanges, o.rounds);
  if (o.apply.length > 0) return applyUntilAnswering(o.apply, o.vips, o.workloads);
  if (o.crowd.length > 0) return crowd(o.crowd, o.rounds, o.seconds, o.connections);
  const children: ChildProcess[] = [];
  const cleanups: (() => void)[] = [];
  const driver = new NetnsDriver({ prefix: PREFIX });
  try {
    const r = await driver.reconcile(desired());
    if (r.failed.length > 0) throw new Error(JSON.stringify(r.failed));
    const w = driver.names.world;
    const inet = driver.names.internet;
    // The HTTP backend takes its address from VIPDIP_DIP, as it does as a workload.
    children.push(
      startBackend(PREFIX, 'http', { VIPDIP_PORT_HTTP: '8000' }),
      // The same backend on a port of its own for the direct path. Sharing one, a client port reused
      // between a direct round and a VIP round gave the backend the same four-tuple while conntrack
      // still held the other flow's entry, and the VIP's new connections fell to 2–3 k/s in the 3 of
      // 5 rounds that followed a direct round; with a port each, not once in 10 rounds.
      startBackend(PREFIX, 'http', { VIPDIP_PORT_HTTP: String(DIRECT_PORT) }),
      startIn(vmNamespace(PREFIX, 'bench/iperf1'), 'iperf3', ['-s', '-B', IPERF_DIP, '-p', '5201']),
      startBackend(PREFIX, 'udp', { VIPDIP_PORT_ECHO: String(UDP_PORT) }),
    );
    // The direct path: let the internet reach the VNet's bridge through the core and the
    // subscription's router (benchmark only; the driver's own routes and rulesets never have this
    // path). HAProxy runs in the router, where the DIPs are, with its address routed there by the core.
    const router = driver.router('s')!;
    const bridge = [
      ...(await exec('ip', ['-n', router.ns, '-o', 'link', 'show', 'type', 'bridge'])).stdout.matchAll(
        /^\d+: (\S+):/gm,
      ),
    ][0]![1]!;
    await exec(
      'ip',
      inNs(router.ns, 'nft', ['add', 'element', 'ip', 'vipdip', 'fwd_paths', `{ "up0" . "${bridge}" }`]),
    );
    await exec('ip', ['-n', w, 'route', 'add', '10.1.0.0/24', 'via', router.routerAddr]);
    await exec('ip', ['-n', w, 'route', 'add', `${HAPROXY}/32`, 'via', router.routerAddr]);
    await exec('ip', ['-n', router.ns, 'addr', 'add', `${HAPROXY}/32`, 'dev', 'lo']);
    const cfg = `global\n  maxconn 4000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend http\n  bind ${HAPROXY}:8080\n  default_backend http\nbackend http\n  server h1 ${HTTP_DIP}:8000\nfrontend iperf\n  bind ${HAPROXY}:5201\n  default_backend iperf\nbackend iperf\n  server i1 ${IPERF_DIP}:5201\n`;
    const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-netns-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'haproxy.cfg'), cfg);
    const hap = spawn('ip', inNs(router.ns, 'haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')]), {
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    children.push(hap);
    // The clients, and HAProxy, which opens a connection to its backend per client connection.
    await tuneClient(inet);
    await tuneClient(router.ns);
    await sleep(1500);

    const host: Record<Path, string> = { direct: '', netns: VIP, haproxy: HAPROXY };
    const samples: Record<Path, Record<Metric, number[]>> = {
      direct: { throughputGbps: [], keepAliveRps: [], newConnRps: [] },
      netns: { throughputGbps: [], keepAliveRps: [], newConnRps: [] },
      haproxy: { throughputGbps: [], keepAliveRps: [], newConnRps: [] },
    };
    const paths: Path[] = ['direct', 'netns', 'haproxy'];
    for (let round = 0; round < o.rounds; round++) {
      const order = paths.map((_, i) => paths[(i + round) % paths.length]!);
      for (const p of order) {
        const http = p === 'direct' ? `http://${HTTP_DIP}:${DIRECT_PORT}/` : `http://${host[p]}:8080/`;
        const ip = p === 'direct' ? IPERF_DIP : host[p];
        samples[p].throughputGbps.push(await iperf(inet, ip, o.seconds));
        samples[p].keepAliveRps.push(await wrk(inet, http, o.seconds, o.connections, false));
        samples[p].newConnRps.push(await wrk(inet, http, o.seconds, o.connections, true));
        console.error(
          `  round ${round + 1} ${p}: ${JSON.stringify(Object.fromEntries(Object.entries(samples[p]).map(([k, v]) => [k, v.at(-1)])))}`,
        );
      }
    }
    // UDP round trips: direct and through the VIP (HAProxy carries no UDP), interleaved rounds.
    const udp: Record<'direct' | 'netns', { perS: number; p50Us: number; p99Us: number; lost: number }[]> = {
      direct: [],
      netns: [],
    };
    for (let round = 0; round < o.rounds; round++) {
      for (const p of round % 2 === 0 ? (['direct', 'netns'] as const) : (['netns', 'direct'] as const)) {
        udp[p].push(await udpRoundTrips(inet, p === 'direct' ? HTTP_DIP : VIP, 5000));
        console.error(`  round ${round + 1} udp ${p}: ${JSON.stringify(udp[p].at(-1))}`);
      }
    }
    const udpMed = (p: 'direct' | 'netns', k: 'perS' | 'p50Us' | 'p99Us') => median(udp[p].map((x) => x[k]));
    const udpLine =
      `UDP round trips (one flow, one 64-byte datagram in flight, 5,000 per round, medians of ${o.rounds} interleaved rounds; HAProxy carries no UDP): ` +
      `direct ${fmtRate(udpMed('direct', 'perS'))}/s (p50 ${udpMed('direct', 'p50Us').toFixed(0)} µs, p99 ${udpMed('direct', 'p99Us').toFixed(0)} µs), ` +
      `netns VIP ${fmtRate(udpMed('netns', 'perS'))}/s (p50 ${udpMed('netns', 'p50Us').toFixed(0)} µs, p99 ${udpMed('netns', 'p99Us').toFixed(0)} µs): ` +
      `median round trip **${(udpMed('netns', 'p50Us') / udpMed('direct', 'p50Us')).toFixed(2)}× direct's**, round trips per second ${(udpMed('netns', 'perS') / udpMed('direct', 'perS')).toFixed(2)}× (one flow waits out every stall, so its rate follows the slowest round trips, which on this loaded machine are scheduling, not the path); datagrams lost: ${[...udp.direct, ...udp.netns].reduce((a, x) => a + x.lost, 0)}.`;
    const med = (p: Path, m: Metric) => median(samples[p][m]);
    const loadAfterRounds = loadavg()[0]!;

    // DIP change → ruleset in force: the spare VM's DIP moves back and forth; each reconcile moves
    // its address in its namespace and rewrites the slots of the two-backend map that changed.
    const times: number[] = [];
    const slots: number[] = [];
    for (let i = 0; i < o.changes; i++) {
      const t0 = performance.now();
      await driver.reconcile(desired(i % 2 === 0 ? '10.1.0.7' : '10.1.0.6'));
      times.push(performance.now() - t0);
      slots.push(driver.lastUpdate.elements);
    }

    const m = machine();
    const ratio = (a: number, b: number) => (a / b).toFixed(2);
    const rows: [string, Metric, (n: number) => string][] = [
      ['TCP throughput, one stream (iperf3)', 'throughputGbps', (n) => `${n.toFixed(2)} Gbit/s`],
      ['HTTP requests, keep-alive (wrk)', 'keepAliveRps', fmtRate],
      ['new connections, `Connection: close` (wrk)', 'newConnRps', fmtRate],
    ];
    const table = [
      '| measure | direct | netns VIP | HAProxy | netns / direct | netns / HAProxy | HAProxy / direct |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map(
        ([label, k, f]) =>
          `| ${label} | ${f(med('direct', k))} | ${f(med('netns', k))} | ${f(med('haproxy', k))} | ${ratio(med('netns', k), med('direct', k))} | ${ratio(med('netns', k), med('haproxy', k))} | ${ratio(med('haproxy', k), med('direct', k))} |`,
      ),
    ].join('\n');
    const body =
      `Measured ${new Date().toISOString().slice(0, 10)} on ${m.cpus} × ${m.cpu}, Node ${process.versions.node}; everything inside the netns driver's world: clients (wrk 1 thread ${o.connections} connections, iperf3) in the internet namespace, backends in their VM namespaces, HAProxy (\`mode tcp\`) in the subscription's router, where the DIPs are. Medians of ${o.rounds} interleaved rounds of ${o.seconds} s. The direct path is routed by the world too (the benchmark adds the internet → core → router → bridge path), so the three differ only by what is on the path: nothing, nftables DNAT (jhash into a Maglev map of lb/'s ladder size), or HAProxy.\n\n` +
      `${table}\n\n` +
      `${udpLine}\n\n` +
      `Load average (1 min) at the end of the rounds: ${loadAfterRounds.toFixed(1)} on ${m.cpus} cores, shared with other work: the paths' figures move by tens of per cent from round to round (the raw rounds are in bench/results/dataplane-netns.json), so a ratio above 1 against direct is noise, not a gain.\n\n` +
      `DIP change to new ruleset in force (one \`reconcile\`, from the call to its return: the VM's address moved in its namespace, and in one \`nft -f\` the backend's element of a two-backend endpoint rewritten; its slots hold the backend's tag and do not move), ${o.changes} changes: p50 **${pct(times, 0.5).toFixed(1)} ms**, p99 **${pct(times, 0.99).toFixed(1)} ms**, max ${Math.max(...times).toFixed(1)} ms; map elements written per change: median ${median(slots)} (target p99 ≤ 50 ms).\n\n` +
      '`npm run bench -- dataplane-netns` (root).';
    console.log(body);
    await saveJson('dataplane-netns', 'latest', { samples, udp, times, slots, options: o });
    await saveSection(
      'dataplane-netns',
      'Data plane, netns driver: the kernel against a direct path and HAProxy',
      body,
    );
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    for (const c of cleanups) c();
    await driver.close();
    await removeWorld(PREFIX);
  }
}
