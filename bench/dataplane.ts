/**
 * Data-plane benchmark: the same backends reached (a) directly, (b) through a vipdip VIP (a real
 * `vipdip up` with the local driver, the backends running as its VMs' workloads) and (c) through
 * HAProxy 2.6 in `mode tcp`, side by side in one run on loopback. Debian's wrk measures HTTP
 * requests/s with keep-alive and new connections/s (`Connection: close`), iperf3 the throughput of
 * a single TCP stream, and a small Node client the UDP request/response rate (vipdip against direct:
 * HAProxy 2.6 has no UDP). Each figure is the median of interleaved rounds, the order of the three
 * paths rotating from round to round, since the machine is shared and noisy.
 *
 *   npm run bench -- dataplane [--rounds N] [--seconds S] [--connections C] [--profile]
 *
 * --profile also writes a CPU profile of the vipdip process over the whole run to
 * bench/results/dataplane.cpuprofile (open it in Chrome's DevTools; it is not committed).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, readdirSync, renameSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, fmtRate, machine, median, saveJson, saveSection } from './report.ts';

const exec = promisify(execFile);

/** Outside every other benchmark's and test's blocks: the VIP pool, the VNet, HAProxy's address. */
const POOL = '127.230.0.0/16';
const VNET = '127.231.0.0/16';
const HAPROXY_ADDRESS = '127.232.0.1';
const PORTS = { http: 8080, iperf: 5201, udp: 7000 } as const;
const TARGETS = { throughput: 1.0, keepAlive: 1.0, newConnections: 0.8 };
const TOOLS = [
  ['haproxy', 'haproxy'],
  ['wrk', 'wrk'],
  ['iperf3', 'iperf3'],
] as const;

type Path = 'direct' | 'vipdip' | 'haproxy';
type Metric = 'throughputGbps' | 'keepAliveRps' | 'newConnRps' | 'udpRps';

interface Options {
  rounds: number;
  seconds: number;
  connections: number;
  profile: boolean;
}

function parseArgs(args: string[]): Options {
  const o: Options = { rounds: 3, seconds: 5, connections: 50, profile: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--profile') {
      o.profile = true;
      continue;
    }
    const v = Number(args[++i]);
    if (a === '--rounds') o.rounds = v;
    else if (a === '--seconds') o.seconds = v;
    else if (a === '--connections') o.connections = v;
    else throw new Error(`bench dataplane: unknown argument ${a}`);
  }
  if (!(o.rounds >= 3))
    throw new Error('bench dataplane: --rounds must be at least 3 (medians of ≥ 3 rounds)');
  return o;
}

async function have(cmd: string): Promise<boolean> {
  try {
    await exec('sh', ['-c', `command -v ${cmd}`]);
    return true;
  } catch {
    return false;
  }
}

/** Installs Debian's haproxy, wrk and iperf3 when they are missing (as root, through apt-get). */
async function ensureTools(): Promise<void> {
  const missing: string[] = [];
  for (const [cmd, pkg] of TOOLS) if (!(await have(cmd))) missing.push(pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    throw new Error(
      `bench dataplane needs ${missing.join(', ')}: apt-get install ${missing.join(' ')} (as root)`,
    );
  }
  console.error(`dataplane: apt-get install ${missing.join(' ')}…`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  await exec('apt-get', ['update', '-q'], { env, maxBuffer: 1 << 24 });
  await exec('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], {
    env,
    maxBuffer: 1 << 24,
  });
}

interface Vipdip {
  url: string;
  token: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

async function startVipdip(dir: string, profileDir: string | undefined): Promise<Vipdip> {
  const state = join(dir, '.vipdip');
  const proc = spawn(
    process.execPath,
    [
      ...(profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]),
      join(ROOT, 'bin/vipdip.js'),
      'up',
      '--state',
      state,
      '--listen',
      '127.0.0.1:0',
      '--dns',
      'off',
      '--driver',
      'local',
      '--public-pool',
      POOL,
      '--seed',
      '1',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], cwd: ROOT },
  );
  let out = '';
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`vipdip up did not start:\n${out}`)), 60_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    proc.on('exit', (c) => fail(new Error(`vipdip up exited ${c}:\n${out}`)));
  });
  const token = readFileSync(join(state, 'operator.token'), 'utf8').trim();
  return {
    url,
    token,
    proc,
    stop: () =>
      new Promise<void>((ok) => {
        if (proc.exitCode !== null) return ok();
        proc.once('exit', () => ok());
        proc.kill('SIGTERM');
      }),
  };
}

function topology(): unknown {
  const node = `"${process.execPath}" --import tsx "${join(ROOT, 'bench/dataplane-backend.ts')}"`;
  return {
    subscriptions: [
      {
        name: 'bench',
        virtualNetworks: [
          { name: 'net', addressSpace: [VNET], subnets: [{ name: 's', cidr: '127.231.1.0/24' }] },
        ],
        cloudServices: [
          {
            name: 'bench-dataplane',
            vnet: 'net',
            vms: [
              {
                name: 'http1',
                subnet: 's',
                workload: `command: ${node} http`,
                endpoints: [{ name: 'http', protocol: 'tcp', publicPort: PORTS.http, localPort: 8000 }],
              },
              {
                name: 'iperf1',
                subnet: 's',
                workload: 'command: exec iperf3 --server --bind "$VIPDIP_DIP" --port 5201',
                // iperf3's control and data connections must meet on one server: sourceIP.
                endpoints: [
                  {
                    name: 'iperf',
                    protocol: 'tcp',
                    publicPort: PORTS.iperf,
                    localPort: 5201,
                    distribution: 'sourceIP',
                  },
                ],
              },
              {
                name: 'udp1',
                subnet: 's',
                workload: `command: ${node} udp`,
                endpoints: [{ name: 'echo', protocol: 'udp', publicPort: PORTS.udp, localPort: 7000 }],
              },
            ],
          },
        ],
      },
    ],
  };
}

async function api<T>(v: Vipdip, method: string, path: string, body?: unknown): Promise<T> {
  const res = await fetch(v.url + path, {
    method,
    headers: { authorization: `Bearer ${v.token}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`);
  return JSON.parse(text) as T;
}

function tcpOpen(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.on('connect', () => (s.destroy(), resolve(true)));
    s.on('error', () => resolve(false));
  });
}

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > end) throw new Error(`dataplane: ${what} not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function haproxyConfig(dips: { http: string; iperf: string }): string {
  return `global
  maxconn 4000
  log stdout format raw local0 emerg
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend http
  bind ${HAPROXY_ADDRESS}:${PORTS.http}
  default_backend http
backend http
  server http1 ${dips.http}:8000
frontend iperf
  bind ${HAPROXY_ADDRESS}:${PORTS.iperf}
  default_backend iperf
backend iperf
  server iperf1 ${dips.iperf}:5201
`;
}

async function wrk(url: string, seconds: number, connections: number, close: boolean): Promise<number> {
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
  const { stdout } = await exec('wrk', args, { timeout: (seconds + 30) * 1000 });
  const m = /Requests\/sec:\s+([0-9.]+)/.exec(stdout);
  if (m === null) throw new Error(`wrk said:\n${stdout}`);
  const errors = /Socket errors: (.*)/.exec(stdout);
  if (errors) console.error(`    wrk ${url}${close ? ' (close)' : ''}: socket errors ${errors[1]}`);
  return Number(m[1]);
}

async function iperf(host: string, port: number, seconds: number): Promise<number> {
  const { stdout } = await exec('iperf3', ['-c', host, '-p', String(port), '-t', String(seconds), '-J'], {
    timeout: (seconds + 30) * 1000,
    maxBuffer: 1 << 24,
  });
  const j = JSON.parse(stdout) as { end?: { sum_received?: { bits_per_second?: number } }; error?: string };
  const bps = j.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error(`iperf3: ${j.error ?? 'no result'}`);
  return bps / 1e9;
}

async function udp(host: string, port: number, seconds: number): Promise<number> {
  const { stdout } = await exec(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench/dataplane-udp.ts'), host, String(port), String(seconds)],
    { cwd: ROOT, timeout: (seconds + 30) * 1000 },
  );
  return (JSON.parse(stdout.trim()) as { answersPerSecond: number }).answersPerSecond;
}

/** CPU time (user + system) a process has used, in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return undefined;
  }
}

/** Runs `fn` and returns its result with the CPU the proxy process spent meanwhile. */
async function withCpu<T>(pid: number | undefined, fn: () => Promise<T>): Promise<[T, number | undefined]> {
  const before = cpuMs(pid);
  const r = await fn();
  const after = cpuMs(pid);
  return [r, before === undefined || after === undefined ? undefined : after - before];
}

const ORDERS: Path[][] = [
  ['direct', 'vipdip', 'haproxy'],
  ['vipdip', 'haproxy', 'direct'],
  ['haproxy', 'direct', 'vipdip'],
];

export async function run(args: string[]): Promise<void> {
  const o = parseArgs(args);
  await ensureTools();
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-dp-'));
  const profileDir = o.profile ? join(dir, 'profile') : undefined;
  const v = await startVipdip(dir, profileDir);
  let haproxy: ChildProcess | undefined;
  try {
    await api(v, 'POST', '/v1/apply', topology());
    const vip = (await api<{ vip: string }>(v, 'GET', '/v1/services/bench-dataplane')).vip;
    const dip = async (vm: string) =>
      (await api<{ dip: string }>(v, 'GET', `/v1/services/bench-dataplane/vms/${vm}`)).dip;
    const dips = { http: await dip('http1'), iperf: await dip('iperf1'), udp: await dip('udp1') };
    await waitFor('the HTTP backend', () => tcpOpen(dips.http, 8000));
    await waitFor('the iperf3 server', () => tcpOpen(dips.iperf, 5201));
    await waitFor('the VIP', () => tcpOpen(vip, PORTS.http));
    await waitFor('the UDP backend', async () => (await udp(dips.udp, 7000, 0.2)) > 0);
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(dips));
    haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
    await waitFor('HAProxy', () => tcpOpen(HAPROXY_ADDRESS, PORTS.http));
    const { stdout: hv } = await exec('haproxy', ['-v']);
    const haproxyVersion = /version (\S+)/.exec(hv)?.[1] ?? 'unknown';

    const host: Record<Path, { http: string; iperf: [string, number]; udp: [string, number] | null }> = {
      direct: { http: `http://${dips.http}:8000/`, iperf: [dips.iperf, 5201], udp: [dips.udp, 7000] },
      vipdip: { http: `http://${vip}:${PORTS.http}/`, iperf: [vip, PORTS.iperf], udp: [vip, PORTS.udp] },
      haproxy: {
        http: `http://${HAPROXY_ADDRESS}:${PORTS.http}/`,
        iperf: [HAPROXY_ADDRESS, PORTS.iperf],
        udp: null,
      },
    };
    // The proxy's own CPU per unit of work: a figure the noise of a shared machine bends far less
    // than rates do (a busy neighbour slows every path, but does not make a request cost more CPU).
    const pids: Record<Path, number | undefined> = {
      direct: undefined,
      vipdip: v.proc.pid,
      haproxy: haproxy.pid,
    };
    const cpu: Record<
      'keepAliveUsPerReq' | 'newConnUsPerConn' | 'throughputMsPerGB',
      Record<'vipdip' | 'haproxy', number[]>
    > = {
      keepAliveUsPerReq: { vipdip: [], haproxy: [] },
      newConnUsPerConn: { vipdip: [], haproxy: [] },
      throughputMsPerGB: { vipdip: [], haproxy: [] },
    };
    const samples: Record<Metric, Record<Path, number[]>> = {
      throughputGbps: { direct: [], vipdip: [], haproxy: [] },
      keepAliveRps: { direct: [], vipdip: [], haproxy: [] },
      newConnRps: { direct: [], vipdip: [], haproxy: [] },
      udpRps: { direct: [], vipdip: [], haproxy: [] },
    };
    // A short warm-up of each path, unmeasured (JIT, connection pools, page cache).
    for (const p of ['direct', 'vipdip', 'haproxy'] as Path[])
      await wrk(host[p].http, 1, o.connections, false);
    for (let r = 0; r < o.rounds; r++) {
      const order = ORDERS[r % ORDERS.length]!;
      console.error(`dataplane: round ${r + 1} of ${o.rounds} (${order.join(', ')})`);
      for (const p of order) {
        const h = host[p];
        const [t, tCpu] = await withCpu(pids[p], () => iperf(h.iperf[0], h.iperf[1], o.seconds));
        const [ka, kaCpu] = await withCpu(pids[p], () => wrk(h.http, o.seconds, o.connections, false));
        const [nc, ncCpu] = await withCpu(pids[p], () => wrk(h.http, o.seconds, o.connections, true));
        if (p !== 'direct') {
          if (tCpu !== undefined) cpu.throughputMsPerGB[p].push(tCpu / ((t * o.seconds) / 8));
          if (kaCpu !== undefined) cpu.keepAliveUsPerReq[p].push((kaCpu * 1000) / (ka * o.seconds));
          if (ncCpu !== undefined) cpu.newConnUsPerConn[p].push((ncCpu * 1000) / (nc * o.seconds));
        }
        samples.throughputGbps[p].push(t);
        samples.keepAliveRps[p].push(ka);
        samples.newConnRps[p].push(nc);
        let u: number | undefined;
        if (h.udp !== null) {
          u = await udp(h.udp[0], h.udp[1], o.seconds);
          samples.udpRps[p].push(u);
        }
        console.error(
          `  ${p.padEnd(8)} ${t.toFixed(2)} Gbit/s, ${fmtRate(ka)} req/s keep-alive, ${fmtRate(nc)} new conn/s` +
            (u === undefined ? '' : `, ${fmtRate(u)} UDP req/s`),
        );
      }
    }
    const med = (m: Metric, p: Path) => (samples[m][p].length > 0 ? median(samples[m][p]) : null);
    const medians = Object.fromEntries(
      (Object.keys(samples) as Metric[]).map((m) => [
        m,
        { direct: med(m, 'direct'), vipdip: med(m, 'vipdip'), haproxy: med(m, 'haproxy') },
      ]),
    ) as Record<Metric, Record<Path, number | null>>;
    const ratio = (a: number | null, b: number | null) =>
      a === null || b === null || b === 0 ? null : a / b;
    const ratios = Object.fromEntries(
      (Object.keys(medians) as Metric[]).map((m) => [
        m,
        {
          vipdipOverDirect: ratio(medians[m].vipdip, medians[m].direct),
          vipdipOverHaproxy: ratio(medians[m].vipdip, medians[m].haproxy),
          haproxyOverDirect: ratio(medians[m].haproxy, medians[m].direct),
        },
      ]),
    ) as Record<
      Metric,
      { vipdipOverDirect: number | null; vipdipOverHaproxy: number | null; haproxyOverDirect: number | null }
    >;
    const met = {
      throughput: (ratios.throughputGbps.vipdipOverHaproxy ?? 0) >= TARGETS.throughput,
      keepAlive: (ratios.keepAliveRps.vipdipOverHaproxy ?? 0) >= TARGETS.keepAlive,
      newConnections: (ratios.newConnRps.vipdipOverHaproxy ?? 0) >= TARGETS.newConnections,
    };
    const cpuMedians = Object.fromEntries(
      Object.entries(cpu).map(([k, byPath]) => [
        k,
        {
          vipdip: byPath.vipdip.length > 0 ? median(byPath.vipdip) : null,
          haproxy: byPath.haproxy.length > 0 ? median(byPath.haproxy) : null,
        },
      ]),
    ) as Record<keyof typeof cpu, { vipdip: number | null; haproxy: number | null }>;
    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      loadAverage: loadavg(),
      haproxy: haproxyVersion,
      config: { ...o, wrkThreads: 1, udpFlows: 16, udpWindow: 4 },
      samples,
      medians,
      ratios,
      proxyCpu: { samples: cpu, medians: cpuMedians },
      targets: { vipdipOverHaproxy: TARGETS, met },
    };
    await saveJson('dataplane', 'loopback', results);

    const f = (x: number | null, unit: 'gbps' | 'rate') =>
      x === null ? '–' : unit === 'gbps' ? `${x.toFixed(2)} Gbit/s` : `${fmtRate(x)}/s`;
    const rf = (x: number | null) => (x === null ? '–' : x.toFixed(2));
    const rf2 = (x: number | null) => (x === null ? '–' : x.toFixed(0));
    const rows: [string, Metric, 'gbps' | 'rate'][] = [
      ['TCP throughput, one stream (iperf3)', 'throughputGbps', 'gbps'],
      ['HTTP requests, keep-alive (wrk)', 'keepAliveRps', 'rate'],
      ['new connections, `Connection: close` (wrk)', 'newConnRps', 'rate'],
      ['UDP request/response (16 flows × 4 in flight)', 'udpRps', 'rate'],
    ];
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}, HAProxy ${haproxyVersion} (\`mode tcp\`, default threads), wrk (1 thread, ${o.connections} connections) and iperf3 from Debian; everything on loopback, on the same cores. Medians of ${o.rounds} interleaved rounds of ${o.seconds} s each (the order of the three paths rotates every round). The backends are minimal (a Node HTTP server answering \`ok\`, iperf3's server, a Node UDP echo) and run as workloads of vipdip VMs on their DIPs; the direct path and HAProxy reach the same processes at the same DIPs. vipdip binds each upstream connection to the client's address (the backend sees the real client); HAProxy does not.`,
      '',
      '| measure | direct | vipdip | HAProxy | vipdip / direct | vipdip / HAProxy | HAProxy / direct |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...rows.map(
        ([label, m, unit]) =>
          `| ${label} | ${f(medians[m].direct, unit)} | ${f(medians[m].vipdip, unit)} | ${f(medians[m].haproxy, unit)} | ${rf(ratios[m].vipdipOverDirect)} | ${rf(ratios[m].vipdipOverHaproxy)} | ${rf(ratios[m].haproxyOverDirect)} |`,
      ),
      '',
      `The proxy's own CPU (user + system, from /proc) per unit of work, medians: vipdip ${rf2(cpuMedians.keepAliveUsPerReq.vipdip)} µs and HAProxy ${rf2(cpuMedians.keepAliveUsPerReq.haproxy)} µs per keep-alive request; ${rf2(cpuMedians.newConnUsPerConn.vipdip)} µs and ${rf2(cpuMedians.newConnUsPerConn.haproxy)} µs per new connection; ${rf2(cpuMedians.throughputMsPerGB.vipdip)} ms and ${rf2(cpuMedians.throughputMsPerGB.haproxy)} ms per GB of a single stream. Load average of the machine at the end of the run: ${results.loadAverage.map((x) => x.toFixed(1)).join(', ')}.`,
      '',
      `Targets, vipdip / HAProxy: throughput ≥ ${TARGETS.throughput} (${met.throughput ? 'met' : '**not met**'}), keep-alive requests ≥ ${TARGETS.keepAlive} (${met.keepAlive ? 'met' : '**not met**'}), new connections ≥ ${TARGETS.newConnections} (${met.newConnections ? 'met' : '**not met**'}). HAProxy 2.6 carries no UDP, so the UDP rate is compared with the direct path only.`,
      '',
      'To reproduce: `npm run bench -- dataplane` (add `--profile` for a CPU profile of the vipdip process). See the design note `docs/designs/2026-12-02-the-data-plane.md` for where the time goes.',
    ].join('\n');
    await saveSection('dataplane', 'Data plane: vipdip against a direct path and HAProxy', body);
    console.log(`## dataplane\n\n${body}\n`);
  } finally {
    haproxy?.kill('SIGTERM');
    await v.stop();
    if (profileDir !== undefined) {
      try {
        const [p] = readdirSync(profileDir).filter((f) => f.endsWith('.cpuprofile'));
        if (p !== undefined) {
          renameSync(join(profileDir, p), join(ROOT, 'bench/results/dataplane.cpuprofile'));
          console.error('dataplane: CPU profile of vipdip in bench/results/dataplane.cpuprofile');
        }
      } catch (e) {
        console.error(`dataplane: no CPU profile: ${(e as Error).message}`);
      }
    }
    rmSync(dir, { recursive: true, force: true });
  }
}
