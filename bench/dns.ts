/**
 * The DNS server: how many queries per second it answers for names it holds, and how soon after an
 * address change its answers show the new address.
 *
 * - throughput: a load client in a child process (this file, run with `--load-client`) keeps a
 *   fixed number of UDP queries in flight against the server on 127.0.0.1, bounded by count and
 *   time; each in-flight slot is its own connected socket, so an answer finds its slot without
 *   reading its ID, and a sample of the answers is decoded and checked;
 * - change to answer: a VM is redeployed (which redraws its DIP) and, from the moment
 *   `cloud.vmOperation` returns, the DIP's name is queried until the answer shows the new DIP.
 */
import { createSocket, type Socket } from 'node:dgram';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode, RECURSION_DESIRED, type StringAnswer } from 'dns-packet';
import { SeededRandom, systemClock } from '../src/core/index.ts';
import { startDnsServer, type DnsServer } from '../src/dns/index.ts';
import { Cloud } from '../src/lifecycle/index.ts';
import { SqliteStore } from '../src/store/index.ts';
import { machine, median, saveJson, saveSection } from './report.ts';

const SEED = 20260105;
const REPEATS = 3;
const IN_FLIGHT = 64;
const WARMUP_MS = 500;
const MEASURE_MS = 3000;
const MAX_QUERIES_PER_RUN = 1_000_000;
/** An answer not back within this long counts as lost, and its slot asks again. */
const LOST_AFTER_MS = 250;
/** One answer in this many is decoded and checked by the load client. */
const CHECK_EVERY = 16;
const CHANGES = 200;
const CHANGE_TIMEOUT_MS = 2000;
const TARGET_QPS = 30_000;
const TARGET_CHANGE_P99_MS = 20;

interface LoadConfig {
  port: number;
  names: string[];
  inFlight: number;
  warmupMs: number;
  measureMs: number;
  maxQueries: number;
}

interface LoadResult {
  answered: number;
  /** CPU time the server's process spent per answer (user + system), measured by the parent. */
  serverCpuUsPerAnswer?: number;
  seconds: number;
  qps: number;
  lost: number;
  checked: number;
  bad: number;
  /** Answers over the whole run, warm-up included. */
  total: number;
}

// ---------------------------------------------------------------- the load client (child process)

async function loadClient(cfg: LoadConfig): Promise<LoadResult> {
  const queries = cfg.names.map((name, i) =>
    encode({ type: 'query', id: i + 1, flags: RECURSION_DESIRED, questions: [{ type: 'A', name }] }),
  );
  let sent = 0;
  let answered = 0;
  let lost = 0;
  let checked = 0;
  let bad = 0;
  let measuring = false;
  let stopped = false;
  let windowAnswered = 0;
  const sockets: Socket[] = [];
  const sentAt: number[] = [];
  const send = (slot: number) => {
    if (stopped || sent >= cfg.maxQueries) return;
    sentAt[slot] = performance.now();
    sockets[slot]!.send(queries[sent++ % queries.length]!);
  };
  for (let slot = 0; slot < cfg.inFlight; slot++) {
    const s = createSocket('udp4');
    s.on('message', (msg) => {
      answered++;
      if (measuring) windowAnswered++;
      if (answered % CHECK_EVERY === 0) {
        checked++;
        const r = decode(msg);
        if (((r.flags ?? 0) & 0xf) !== 0 || r.answers?.[0]?.type !== 'A') bad++;
      }
      send(slot);
    });
    await new Promise<void>((ok) => s.connect(cfg.port, '127.0.0.1', ok));
    sockets.push(s);
  }
  const watchdog = setInterval(() => {
    const now = performance.now();
    for (let slot = 0; slot < sockets.length; slot++) {
      if (now - sentAt[slot]! > LOST_AFTER_MS) {
        lost++;
        send(slot);
      }
    }
  }, LOST_AFTER_MS / 2);
  for (let slot = 0; slot < sockets.length; slot++) send(slot);
  await new Promise((ok) => setTimeout(ok, cfg.warmupMs));
  measuring = true;
  const t0 = performance.now();
  await new Promise((ok) => setTimeout(ok, cfg.measureMs));
  measuring = false;
  const seconds = (performance.now() - t0) / 1000;
  stopped = true;
  clearInterval(watchdog);
  for (const s of sockets) s.close();
  return {
    answered: windowAnswered,
    seconds,
    qps: windowAnswered / seconds,
    lost,
    checked,
    bad,
    total: answered,
  };
}

const SELF = fileURLToPath(import.meta.url);
if (
  process.argv[1] !== undefined &&
  resolve(process.argv[1]) === SELF &&
  process.argv[2] === '--load-client'
) {
  const result = await loadClient(JSON.parse(process.argv[3] ?? '{}') as LoadConfig);
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

function runLoadClient(cfg: LoadConfig): Promise<LoadResult> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', SELF, '--load-client', JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.on('error', fail);
    child.on('exit', (code) => {
      if (code !== 0) fail(new Error(`the load client exited with ${code}`));
      else ok(JSON.parse(out) as LoadResult);
    });
  });
}

// ---------------------------------------------------------------- change to answer (this process)

/** Asks for `name` until the answer is `want`; resolves with the number of stale answers seen. */
function queryUntil(socket: Socket, port: number, name: string, want: string): Promise<number> {
  let id = 0;
  let stale = 0;
  return new Promise<number>((ok, fail) => {
    const done = (e?: Error) => {
      clearTimeout(timer);
      socket.removeListener('message', onMessage);
      if (e === undefined) ok(stale);
      else fail(e);
    };
    const timer = setTimeout(
      () => done(new Error(`${name} did not answer ${want} within ${CHANGE_TIMEOUT_MS} ms`)),
      CHANGE_TIMEOUT_MS,
    );
    const ask = () =>
      socket.send(encode({ type: 'query', id: ++id, questions: [{ type: 'A', name }] }), port, '127.0.0.1');
    const onMessage = (msg: Buffer) => {
      const r = decode(msg);
      if (r.id !== id) return; // a late answer to an earlier change
      const a = r.answers?.find((x): x is StringAnswer => x.type === 'A');
      if (a?.data === want) done();
      else {
        stale++;
        ask();
      }
    };
    socket.on('message', onMessage);
    ask();
  });
}

const percentile = (sorted: number[], p: number) =>
  sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;

interface ChangeResult {
  changes: number;
  p50: number;
  p99: number;
  max: number;
  staleAnswers: number;
  /** The server's table rebuild (read from the store and build), p50 and p99. */
  rebuildP50: number;
  rebuildP99: number;
}

async function changeToAnswer(cloud: Cloud, server: DnsServer, vms: string[]): Promise<ChangeResult> {
  const latencies: number[] = [];
  const rebuilds: number[] = [];
  let staleAnswers = 0;
  const socket = createSocket('udp4');
  try {
    for (let i = 0; i < CHANGES; i++) {
      const vm = vms[i % vms.length]!;
      const after = await cloud.vmOperation({ service: 'shop', vm }, 'redeploy');
      const t0 = performance.now();
      staleAnswers += await queryUntil(socket, server.port, `${vm}.shop.internal.vipdip.test`, after!.dip!);
      latencies.push(performance.now() - t0);
      rebuilds.push(server.stats().lastRebuildMs);
    }
  } finally {
    socket.close();
  }
  latencies.sort((a, b) => a - b);
  rebuilds.sort((a, b) => a - b);
  return {
    changes: CHANGES,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies.at(-1)!,
    staleAnswers,
    rebuildP50: percentile(rebuilds, 50),
    rebuildP99: percentile(rebuilds, 99),
  };
}

// ---------------------------------------------------------------- the benchmark

export async function run(_args: string[]): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-dns-'));
  const store = await SqliteStore.open(join(dir, 'state.db'));
  let server: DnsServer | undefined;
  try {
    const cloud = await Cloud.open(store, {
      random: new SeededRandom(SEED),
      clock: systemClock,
      defaultPublicPools: ['127.100.0.0/16'],
    });
    await cloud.createSubscription('contoso');
    await cloud.createVnet('contoso', {
      name: 'shop-net',
      addressSpace: ['127.16.0.0/16'],
      subnets: [{ name: 'front', cidr: '127.16.1.0/24' }],
    });
    await cloud.createService('contoso', { name: 'shop', vnet: 'shop-net' });
    const vms = ['web1', 'web2', 'web3', 'web4'];
    for (const vm of vms) await cloud.createVm('shop', { name: vm, subnet: 'front', ilpip: vm === 'web4' });
    server = await startDnsServer({ cloud, host: '127.0.0.1', port: 0 });
    const names = [
      'shop.cloudapp.vipdip.test',
      'web4.shop.cloudapp.vipdip.test',
      ...vms.map((vm) => `${vm}.shop.internal.vipdip.test`),
    ];

    console.error(`dns: UDP queries/s, ${IN_FLIGHT} in flight from a child process…`);
    const runs: LoadResult[] = [];
    for (let r = 0; r < REPEATS; r++) {
      const cpu0 = process.cpuUsage();
      const res = await runLoadClient({
        port: server.port,
        names,
        inFlight: IN_FLIGHT,
        warmupMs: WARMUP_MS,
        measureMs: MEASURE_MS,
        maxQueries: MAX_QUERIES_PER_RUN,
      });
      // The whole run, warm-up included, over every answer of the run (the client's total).
      const cpu = process.cpuUsage(cpu0);
      res.serverCpuUsPerAnswer = (cpu.user + cpu.system) / res.total;
      console.error(
        `  ${res.qps.toFixed(0)} q/s (server CPU ${res.serverCpuUsPerAnswer.toFixed(1)} µs per answer) (${res.answered} answers in ${res.seconds.toFixed(2)} s, ${res.lost} lost, ${res.bad}/${res.checked} checked answers wrong)`,
      );
      runs.push(res);
    }
    const qps = median(runs.map((r) => r.qps));

    console.error(`dns: change-to-answer latency over ${CHANGES} redeploys…`);
    const change = await changeToAnswer(cloud, server, vms);
    console.error(
      `  p50 ${change.p50.toFixed(2)} ms, p99 ${change.p99.toFixed(2)} ms, max ${change.max.toFixed(2)} ms, ${change.staleAnswers} stale answers; table rebuild p50 ${change.rebuildP50.toFixed(2)} ms, p99 ${change.rebuildP99.toFixed(2)} ms`,
    );

    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      seed: SEED,
      throughput: {
        inFlight: IN_FLIGHT,
        names,
        runs,
        qps,
        target: TARGET_QPS,
        met: qps >= TARGET_QPS && runs.every((r) => r.bad === 0),
      },
      changeToAnswer: {
        operation: 'redeploy (the DIP is redrawn)',
        ...change,
        target: { p99Ms: TARGET_CHANGE_P99_MS },
        met: change.p99 < TARGET_CHANGE_P99_MS && change.staleAnswers === 0,
      },
    };
    await saveJson('dns', 'server', results);
    const ms = (x: number) => `${x.toFixed(2)} ms`;
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}; \`npm run bench -- dns\`.`,
      '',
      `Throughput: a load client in a child process keeps ${IN_FLIGHT} UDP queries in flight against the server on 127.0.0.1, cycling over ${names.length} names the server holds (A records for a VIP, an ILPIP and four DIPs); ${WARMUP_MS} ms of warm-up, then ${MEASURE_MS / 1000} s measured; median of ${REPEATS} runs. Both processes share the machine's cores.`,
      '',
      '| run | answers/s | answers | lost (re-asked after 250 ms) | checked answers wrong |',
      '| --- | ---: | ---: | ---: | ---: |',
      ...runs.map(
        (r, i) => `| ${i + 1} | ${r.qps.toFixed(0)} | ${r.answered} | ${r.lost} | ${r.bad} of ${r.checked} |`,
      ),
      '',
      `Median **${qps.toFixed(0)} queries/s** (target ≥ ${TARGET_QPS.toLocaleString('en')}: ${results.throughput.met ? 'met' : '**not met**'}).`,
      '',
      `Change to answer: ${CHANGES} redeploys of one of ${vms.length} VMs (each redraws the DIP); the time from \`cloud.vmOperation\` returning to the first answer for \`VM.shop.internal.vipdip.test\` that shows the new DIP, asked from the same process: p50 **${ms(change.p50)}**, p99 **${ms(change.p99)}**, max ${ms(change.max)}; stale answers seen: ${change.staleAnswers} (target p99 < ${TARGET_CHANGE_P99_MS} ms and none stale: ${results.changeToAnswer.met ? 'met' : '**not met**'}).`,
    ].join('\n');
    await saveSection('dns', 'DNS: queries per second and change-to-answer latency', body);
    console.log(`## dns\n\n${body}\n`);
  } finally {
    await server?.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
