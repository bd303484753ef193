/**
 * API benchmark: VM lifecycle operations through HTTP against a real `vipdip up` (SQLite store,
 * no data plane), with the load generator in another process.
 *
 * - throughput: 16 concurrent keep-alive clients, each cycling its own VMs;
 * - latency at fixed rates of 500 and 2,000 requests per second (open loop, measured from the
 *   schedule so a slow server cannot hide its queueing).
 *
 * `npm run bench -- api --sizes 16,256,10000`: the size axis. One server per size, each applied a
 * topology of that many VMs in services of 4 (the apply timed), then the same closed loop against
 * each in interleaved rounds: an operation's cost must not grow with the size of the cloud.
 *
 * `npm run bench -- api --store postgres`: the same closed loop against one and against three
 * `vipdip serve` replicas over a throwaway PostgreSQL, the VMs in services of 4, in interleaved
 * rounds, with the database round trips per operation counted by the store (/metrics) and the
 * sessions sampled (runPostgres says more).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { startPostgres } from '../test/support/pg-cluster.ts';
import { ROOT, fmtRate, machine, median, saveJson, saveSection } from './report.ts';

const run_ = promisify(execFile);
/** A latency, or a dash when no request succeeded (a rate far above what the server sustains). */
const ms = (x: number | null) => (typeof x === 'number' && Number.isFinite(x) ? `${x.toFixed(1)} ms` : '–');
const VMS = 256;
const SECONDS = 8;
const WORKERS = 16;
const RATES = [500, 2000];
const TARGET_OPS = 3000;
const TARGET_P99_MS = 10;

interface ClientResult {
  ops: number;
  errors: number;
  /** Requests the server refused early (503 with Retry-After); not in `errors`. */
  refused: number;
  /** Open loop: 409s of the generator's own making (every VM had an operation in flight). */
  conflicts?: number;
  acceptedPerSecond: number;
  /** Open loop: the p99 of how late the generator itself sent (its share of the latency). */
  sendLagP99Ms?: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

interface Server {
  url: string;
  token: string;
  stop: () => Promise<void>;
}

async function startServer(
  dir: string,
  opts: { store?: string; seed?: number; root?: string } = {},
): Promise<Server> {
  const state = join(dir, '.vipdip');
  const proc = spawn(
    process.execPath,
    [
      join(opts.root ?? ROOT, 'bin/vipdip.js'),
      ...(opts.store === undefined ? ['up', '--driver', 'none'] : ['serve', '--store', opts.store]),
      '--state',
      state,
      '--listen',
      '127.0.0.1:0',
      '--dns',
      'off',
      '--seed',
      String(opts.seed ?? 1),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, VIPDIP_STORE: '' } },
  );
  let out = '';
  const url = await new Promise<string>((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`server did not start:\n${out}`)), 30_000);
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok(m[1]!);
      }
    });
    proc.on('exit', (c) => fail(new Error(`server exited ${c}:\n${out}`)));
  });
  const token = readFileSync(join(state, 'operator.token'), 'utf8').trim();
  return {
    url,
    token,
    stop: () =>
      new Promise<void>((ok) => {
        proc.once('exit', () => ok());
        proc.kill('SIGTERM');
      }),
  };
}

function topology(): string {
  const vms = Array.from({ length: VMS }, (_, i) => `          - { name: vm${i}, subnet: s }`).join('\n');
  return `subscriptions:
  - name: bench
    virtualNetworks:
      - name: net
        addressSpace: [127.16.0.0/16]
        subnets: [{ name: s, cidr: 127.16.0.0/16 }]
    cloudServices:
      - name: bench
        vnet: net
        vms:
${vms}
`;
}

async function client(
  url: string,
  token: string,
  mode: string,
  param: number,
  sized?: { vms: number; perService: number },
  seconds = SECONDS,
): Promise<ClientResult> {
  const { stdout } = await run_(
    process.execPath,
    [
      '--import',
      'tsx',
      join(ROOT, 'bench/api-client.ts'),
      url,
      token,
      mode,
      String(param),
      String(seconds),
      String(sized?.vms ?? VMS),
      ...(sized === undefined ? [] : [String(sized.perService)]),
    ],
    { cwd: ROOT, timeout: 120_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as ClientResult;
}

export async function run(args: string[]): Promise<void> {
  const s = args.indexOf('--sizes');
  if (s >= 0) {
    const sizes = (args[s + 1] ?? '').split(',').map(Number);
    if (!sizes.every((n) => Number.isInteger(n) && n >= WORKERS && n % PER_SERVICE === 0)) {
      throw new Error(
        `api: --sizes ${args[s + 1]}: VM counts, each ≥ ${WORKERS} and a multiple of ${PER_SERVICE}`,
      );
    }
    const r = args.indexOf('--rounds');
    return runSizes(sizes, r >= 0 ? Number(args[r + 1]) : SIZE_ROUNDS);
  }
  const i = args.indexOf('--store');
  const store = i >= 0 ? args[i + 1] : 'sqlite';
  if (store === 'postgres') return runPostgres(args);
  if (store !== 'sqlite') throw new Error(`api: --store ${store}: sqlite or postgres`);
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-api-'));
  const server = await startServer(dir);
  try {
    const res = await fetch(`${server.url}/v1/apply`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/yaml' },
      body: topology(),
    });
    if (res.status !== 200) throw new Error(`apply failed: ${res.status} ${await res.text()}`);
    console.error(`api: ${WORKERS} concurrent clients for ${SECONDS} s…`);
    const throughput = await client(server.url, server.token, 'closed', WORKERS);
    console.error(
      `  ${fmtRate(throughput.opsPerSecond)} ops/s, p50 ${ms(throughput.p50Ms)}, p99 ${ms(throughput.p99Ms)}, ${throughput.errors} errors`,
    );
    const rates: (ClientResult & { rate: number })[] = [];
    for (const r of RATES) {
      console.error(`api: fixed rate ${r}/s for ${SECONDS} s…`);
      const x = await client(server.url, server.token, 'rate', r);
      rates.push({ rate: r, ...x });
      console.error(
        `  accepted ${fmtRate(x.acceptedPerSecond)}/s, p50 ${ms(x.p50Ms)}, p99 ${ms(x.p99Ms)} (accepted requests), ${x.refused} refused, ${x.errors} errors, ${x.conflicts ?? 0} conflicts`,
      );
    }
    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      store: 'sqlite',
      vms: VMS,
      throughput,
      rates,
      targets: { opsPerSecond: TARGET_OPS, p99MsAt2000: TARGET_P99_MS },
    };
    await saveJson('api', 'sqlite', results);
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}; \`npm run bench -- api\`: one \`vipdip up\` (SQLite, driver none) and a load generator in another process, both on the same 2 cores. Each request is a VM deallocate or start of one of ${VMS} VMs, ${SECONDS} s per row. Latencies are those of the accepted requests; "refused" counts the requests the server turned away at once with 503 and Retry-After (admission control, \`src/api/admission.ts\`); "errors" counts every other failure (a timeout of 10 s, a status other than 200); the open loop sends each request to a VM with no operation in flight, and when every VM has one (the server queueing by seconds), to one that has: a 409 then (two operations raced on one VM) is the generator's doing and counted as a "conflict", neither accepted nor an error; "generator late" is how late the load generator itself sent its requests, which the open-loop latency includes.`,
      '',
      '| load | sent/s | accepted/s | p50 | p99 | refused | errors | conflicts | generator late, p99 |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      `| ${WORKERS} concurrent clients (keep-alive) | ${fmtRate(throughput.opsPerSecond)} | ${fmtRate(throughput.acceptedPerSecond)} | ${ms(throughput.p50Ms)} | ${ms(throughput.p99Ms)} | ${throughput.refused} | ${throughput.errors} | ${throughput.conflicts ?? 0} | – |`,
      ...rates.map(
        (r) =>
          `| fixed ${r.rate}/s (open loop) | ${fmtRate(r.opsPerSecond)} | ${fmtRate(r.acceptedPerSecond)} | ${ms(r.p50Ms)} | ${ms(r.p99Ms)} | ${r.refused} | ${r.errors} | ${r.conflicts ?? 0} | ${ms(r.sendLagP99Ms ?? null)} |`,
      ),
      '',
      `Targets: ≥ ${TARGET_OPS} lifecycle ops/s (${throughput.acceptedPerSecond >= TARGET_OPS ? 'met' : '**not met**'}); p99 of accepted requests < ${TARGET_P99_MS} ms at 2,000 req/s (${(rates.find((r) => r.rate === 2000)?.p99Ms ?? Infinity) < TARGET_P99_MS ? 'met' : '**not met**'}). Open-loop latency is measured from each request's scheduled time, so a queue in the server (or in the load generator) cannot hide.`,
    ].join('\n');
    await saveSection('api', 'API: lifecycle operations through HTTP', body);
    console.log(`## api\n\n${body}\n`);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ the size axis

const PER_SERVICE = 4;
const SIZE_ROUNDS = 3;

/** `vms` VMs named vm0… in services b0… of PER_SERVICE each, in one /16 subnet. */
function sizedTopology(vms: number): string {
  const services: string[] = [];
  for (let b = 0; b < vms / PER_SERVICE; b++) {
    const list = Array.from(
      { length: PER_SERVICE },
      (_, j) => `{ name: vm${b * PER_SERVICE + j}, subnet: s }`,
    );
    services.push(`      - { name: b${b}, vnet: net, vms: [${list.join(', ')}] }`);
  }
  return `subscriptions:
  - name: bench
    virtualNetworks:
      - name: net
        addressSpace: [127.16.0.0/16]
        subnets: [{ name: s, cidr: 127.16.0.0/16 }]
    cloudServices:
${services.join('\n')}
`;
}

interface SizeRound extends ClientResult {
  vms: number;
  round: number;
}

async function runSizes(sizes: number[], rounds: number): Promise<void> {
  const dirs: string[] = [];
  const servers = new Map<number, Server>();
  const applyMs = new Map<number, number>();
  try {
    for (const n of sizes) {
      const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-api-size-'));
      dirs.push(dir);
      const server = await startServer(dir);
      servers.set(n, server);
      console.error(`api: applying ${n} VMs…`);
      const t0 = performance.now();
      const res = await fetch(`${server.url}/v1/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${server.token}`, 'content-type': 'application/yaml' },
        body: sizedTopology(n),
        signal: AbortSignal.timeout(600_000),
      });
      if (res.status !== 200) throw new Error(`apply of ${n} VMs failed: ${res.status} ${await res.text()}`);
      applyMs.set(n, performance.now() - t0);
      console.error(`  ${(applyMs.get(n)! / 1000).toFixed(1)} s`);
    }
    const all: SizeRound[] = [];
    for (let r = 0; r < rounds; r++) {
      // Interleaved, the order alternating, so that a noisy neighbour hurts every size alike.
      const order = r % 2 === 0 ? sizes : [...sizes].reverse();
      for (const n of order) {
        console.error(`api: round ${r + 1}, ${n} VMs, ${WORKERS} clients for ${SECONDS} s…`);
        const server = servers.get(n)!;
        const x = await client(server.url, server.token, 'closed', WORKERS, {
          vms: n,
          perService: PER_SERVICE,
        });
        all.push({ vms: n, round: r + 1, ...x });
        console.error(
          `  ${fmtRate(x.acceptedPerSecond)} accepted/s (${fmtRate(x.opsPerSecond)} sent), p50 ${ms(x.p50Ms)}, p99 ${ms(x.p99Ms)}, ${x.refused} refused, ${x.errors} errors`,
        );
      }
    }
    const summary = sizes.map((n) => {
      const of = all.filter((x) => x.vms === n);
      return {
        vms: n,
        applySeconds: applyMs.get(n)! / 1000,
        opsPerSecond: median(of.map((x) => x.opsPerSecond)),
        // The measure of the axis: a refusal (503, admission control) costs the server microseconds
        // and is counted in ops/s, so ops/s says as much about how often it refused as about speed.
        acceptedPerSecond: median(of.map((x) => x.acceptedPerSecond)),
        refused: of.reduce((a, x) => a + x.refused, 0),
        p50Ms: median(of.map((x) => x.p50Ms)),
        p99Ms: median(of.map((x) => x.p99Ms)),
        errors: of.reduce((a, x) => a + x.errors, 0),
      };
    });
    const base = summary[0]!;
    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      store: 'sqlite',
      workers: WORKERS,
      seconds: SECONDS,
      perService: PER_SERVICE,
      rounds: all,
      summary,
    };
    await saveJson('api', 'sizes', results);
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}; \`npm run bench -- api --sizes ${sizes.join(',')}\`. One \`vipdip up --driver none\` (SQLite) per size, applied a topology of that many VMs in services of ${PER_SERVICE}; then ${WORKERS} keep-alive clients in another process, each request a deallocate or start of one of the VMs, ${rounds} interleaved rounds of ${SECONDS} s, medians. The machine is shared with other engineers' runs and busier than usual: read ratios within one run, not absolute figures.`,
      '',
      `| VMs | apply | accepted ops/s | vs ${base.vms} VMs | sent/s | refused | p50 | p99 | errors |`,
      '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...summary.map(
        (s) =>
          `| ${s.vms.toLocaleString('en')} | ${s.applySeconds.toFixed(1)} s | ${fmtRate(s.acceptedPerSecond)} | ${(s.acceptedPerSecond / base.acceptedPerSecond).toFixed(2)}× | ${fmtRate(s.opsPerSecond)} | ${s.refused} | ${ms(s.p50Ms)} | ${ms(s.p99Ms)} | ${s.errors} |`,
      ),
      '',
      `Accepted operations are the measure (sent/s counts the 503 refusals too, which cost the server microseconds). Target: accepted ops/s at the largest size ≥ 0.8× the smallest (${summary.at(-1)!.acceptedPerSecond / base.acceptedPerSecond >= 0.8 ? 'met' : '**not met**'}).`,
    ].join('\n');
    await saveSection('api-sizes', 'API: lifecycle operations by size of the cloud', body);
    console.log(`## api (sizes)\n\n${body}\n`);
  } finally {
    for (const s of servers.values()) await s.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------ PostgreSQL: one and three replicas

const PG_ROUNDS = 3;
/** How often the database's sessions are sampled during a round (pg_stat_activity). */
const PG_SAMPLE_MS = 20;
const PG_WARMUP_SECONDS = 4;

/** A store's counters summed over the given replicas (their /metrics). */
async function storeCounters(servers: readonly Server[]): Promise<{ statements: number; retries: number }> {
  const n = { statements: 0, retries: 0 };
  for (const s of servers) {
    const auth = { authorization: `Bearer ${s.token}` };
    const text = await (await fetch(`${s.url}/metrics`, { headers: auth })).text();
    const m = /^vipdip_store_statements_total (\d+)$/m.exec(text);
    if (m === null) throw new Error(`no vipdip_store_statements_total at ${s.url}/metrics`);
    n.statements += Number(m[1]);
    n.retries += Number(/^vipdip_store_retries_total (\d+)$/m.exec(text)?.[1] ?? 0);
  }
  return n;
}

/** What one of the replicas' sessions was doing when sampled, by the statement it ran last. */
function sessionKind(s: { state: string | null; wait: string | null; query: string }): string {
  const q = s.query.trimStart().toLowerCase();
  const stmt = q.includes('event_counter')
    ? 'append events'
    : /\bfor (update|share)\b/.test(q)
      ? 'lock VM and service'
      : q.startsWith('commit')
        ? 'commit'
        : q.startsWith('begin')
          ? 'begin'
          : 'other';
  if (s.state === 'idle') return 'idle in the pool';
  if (s.state === 'idle in transaction') return `${stmt}: done, waiting for the replica`;
  return `${stmt}: ${s.wait === null ? 'running' : `waiting (${s.wait})`}`;
}

interface PgProfile {
  samples: number;
  /** Sessions of the replicas, on average per sample. */
  sessions: number;
  /** Average number of sessions in each state (`sessionKind`), largest first. */
  kinds: Record<string, number>;
  /**
   * Share of the samples in which a transaction held the event counter row: it had run the
   * append statement (and was not waiting for the row) and had not yet committed.
   */
  counterHeld: number;
  /** Share of the samples in which a session waited for a row lock of the VM and service statement. */
  serviceWaits: number;
}

/**
 * Samples pg_stat_activity of one database every PG_SAMPLE_MS until stopped: where the replicas'
 * sessions spend their time, and how much of it the event counter row is held.
 */
function sampleSessions(url: string): { stop: () => Promise<PgProfile> } {
  let stopped = false;
  const kinds = new Map<string, number>();
  let samples = 0;
  let sessions = 0;
  let held = 0;
  let serviceWaits = 0;
  const done = (async () => {
    const c = new pg.Client({ connectionString: url, application_name: 'vipdip-bench-sampler' });
    await c.connect();
    try {
      while (!stopped) {
        const r = await c.query<{ state: string | null; wait: string | null; query: string }>(
          `select state, wait_event_type || '/' || wait_event as wait, left(query, 200) as query
           from pg_stat_activity
           where datname = current_database() and application_name = 'vipdip' and backend_type = 'client backend'`,
        );
        samples++;
        sessions += r.rows.length;
        let holder = false;
        for (const s of r.rows) {
          const k = sessionKind(s);
          kinds.set(k, (kinds.get(k) ?? 0) + 1);
          if (
            k === 'append events: running' ||
            k === 'append events: done, waiting for the replica' ||
            k === 'commit: running' ||
            k.startsWith('commit: waiting')
          )
            holder = true;
          if (k.startsWith('lock VM and service: waiting (Lock')) serviceWaits++;
        }
        if (holder) held++;
        await new Promise((r) => setTimeout(r, PG_SAMPLE_MS));
      }
    } finally {
      await c.end();
    }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      const per = (n: number) => (samples === 0 ? 0 : n / samples);
      return {
        samples,
        sessions: per(sessions),
        kinds: Object.fromEntries(
          [...kinds].sort((a, b) => b[1] - a[1]).map(([k, n]) => [k, Number(per(n).toFixed(2))]),
        ),
        counterHeld: per(held),
        serviceWaits: per(serviceWaits),
      };
    },
  };
}

/**
 * Scans of the events table so far: the replicas' feeds reading what they missed (appending
 * events scans nothing). PostgreSQL publishes its statistics within a second or so.
 */
async function eventReads(url: string): Promise<number> {
  const c = new pg.Client({ connectionString: url, application_name: 'vipdip-bench-sampler' });
  await c.connect();
  try {
    await c.query('select pg_stat_clear_snapshot()');
    const r = await c.query<{ n: string }>(
      `select coalesce(seq_scan, 0) + coalesce(idx_scan, 0) as n from pg_stat_user_tables where relname = 'events'`,
    );
    return Number(r.rows[0]?.n ?? 0);
  } finally {
    await c.end();
  }
}

interface PgRound extends ClientResult {
  build: string;
  replicas: number;
  /** Statements per operation, summed over every replica (their followers' reads included). */
  statementsPerOp: number;
  retriesPerOp: number;
  /** Reads of the events table (the feed catching up), per operation. */
  eventReadsPerOp: number;
  profile: PgProfile;
  loadAverage: number;
}

interface PgGroup {
  build: string;
  replicas: number;
  servers: Server[];
  dbUrl: string;
}

/**
 * `--store postgres [--one-service] [--rounds N] [--baseline DIR]`: one against three replicas,
 * the VMs in services of PER_SERVICE (`--one-service`: all in one service, the figure before
 * 2026-12-05). `--baseline DIR` runs the same pair from another checkout (built) in the same
 * interleaved rounds, for a before/after in one sitting.
 */
async function runPostgres(args: string[]): Promise<void> {
  const oneService = args.includes('--one-service');
  const r = args.indexOf('--rounds');
  const roundsWanted = r >= 0 ? Number(args[r + 1]) : PG_ROUNDS;
  const b = args.indexOf('--baseline');
  const builds = [{ build: 'this', root: ROOT }];
  if (b >= 0) builds.unshift({ build: 'baseline', root: args[b + 1] ?? '' });
  // Commits wait for no WAL flush, as SQLite's synchronous=NORMAL does not sync the WAL at commit:
  // both survive a crashed process, neither promises the last commits through a power loss.
  const settings = { fsync: 'on', full_page_writes: 'on', synchronous_commit: 'off' };
  const cluster = await startPostgres({ settings });
  const dirs: string[] = [];
  const all: Server[] = [];
  const serve = async (url: string, seed: number, root: string) => {
    const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-api-pg-'));
    dirs.push(dir);
    const s = await startServer(dir, { store: url, seed, root });
    all.push(s);
    return s;
  };
  const sized = oneService ? undefined : { vms: VMS, perService: PER_SERVICE };
  const topo = oneService ? topology() : sizedTopology(VMS);
  try {
    const groups: PgGroup[] = [];
    for (const { build, root } of builds) {
      for (const replicas of [1, 3]) {
        const dbUrl = await cluster.createDatabase(`bench_${build}_${replicas}`);
        const seeds = Array.from({ length: replicas }, (_, k) => 10 * replicas + k + 1);
        const servers = await Promise.all(seeds.map((seed) => serve(dbUrl, seed, root)));
        const res = await fetch(`${servers[0]!.url}/v1/apply`, {
          method: 'POST',
          headers: { authorization: `Bearer ${servers[0]!.token}`, 'content-type': 'application/yaml' },
          body: topo,
        });
        if (res.status !== 200) throw new Error(`apply failed: ${res.status} ${await res.text()}`);
        groups.push({ build, replicas, servers, dbUrl });
        // Unmeasured: each process compiles its routes' schemas and warms its JIT on first use,
        // which three replicas would otherwise pay three times inside the first measured round.
        console.error(`api (postgres): warming up ${build}, ${replicas} replica(s)…`);
        await client(
          servers.map((s) => s.url).join(','),
          servers[0]!.token,
          'closed',
          WORKERS,
          sized,
          PG_WARMUP_SECONDS,
        );
      }
    }
    const rounds: PgRound[] = [];
    for (let k = 0; k < roundsWanted; k++) {
      // Interleaved, the order alternating, so that a noisy neighbour hurts every group alike.
      const order = k % 2 === 0 ? groups : [...groups].reverse();
      for (const g of order) {
        console.error(
          `api (postgres): round ${k + 1}, ${g.build}, ${g.replicas} replica(s), ${WORKERS} clients for ${SECONDS} s…`,
        );
        const before = await storeCounters(g.servers);
        const readsBefore = await eventReads(g.dbUrl);
        const sampler = sampleSessions(g.dbUrl);
        const x = await client(
          g.servers.map((s) => s.url).join(','),
          g.servers[0]!.token,
          'closed',
          WORKERS,
          sized,
        );
        const profile = await sampler.stop();
        const after = await storeCounters(g.servers);
        const readsAfter = await eventReads(g.dbUrl);
        const round: PgRound = {
          build: g.build,
          replicas: g.replicas,
          ...x,
          statementsPerOp: (after.statements - before.statements) / x.ops,
          retriesPerOp: (after.retries - before.retries) / x.ops,
          eventReadsPerOp: (readsAfter - readsBefore) / x.ops,
          profile,
          loadAverage: loadavg()[0]!,
        };
        rounds.push(round);
        console.error(
          `  ${fmtRate(x.opsPerSecond)} ops/s, p50 ${ms(x.p50Ms)}, p99 ${ms(x.p99Ms)}, ${x.errors} errors, ${round.statementsPerOp.toFixed(1)} statements/op, counter row held ${(100 * profile.counterHeld).toFixed(0)} %, load ${round.loadAverage.toFixed(1)}`,
        );
        console.error(`  sessions: ${JSON.stringify(profile.kinds)}`);
      }
    }
    const summary = (g: PgGroup) => {
      const of = rounds.filter((x) => x.build === g.build && x.replicas === g.replicas);
      const held = median(of.map((x) => x.profile.counterHeld));
      const opsPerSecond = median(of.map((x) => x.opsPerSecond));
      return {
        build: g.build,
        replicas: g.replicas,
        opsPerSecond,
        // A refusal (503, admission control) costs the server microseconds and is counted in ops/s.
        acceptedPerSecond: median(of.map((x) => x.acceptedPerSecond)),
        refused: of.reduce((a, x) => a + x.refused, 0),
        p50Ms: median(of.map((x) => x.p50Ms)),
        p99Ms: median(of.map((x) => x.p99Ms)),
        errors: of.reduce((a, x) => a + x.errors, 0),
        statementsPerOp: median(of.map((x) => x.statementsPerOp)),
        retriesPerOp: median(of.map((x) => x.retriesPerOp)),
        eventReadsPerOp: median(of.map((x) => x.eventReadsPerOp)),
        counterHeld: held,
        /** Time the counter row is held per operation (each operation is one transaction). */
        counterHeldMsPerOp: (1000 * held) / opsPerSecond,
        serviceWaits: median(of.map((x) => x.profile.serviceWaits)),
        sessions: median(of.map((x) => x.profile.sessions)),
      };
    };
    const summaries = groups.map(summary);
    const ratioOf = (build: string) => {
      const one = summaries.find((s) => s.build === build && s.replicas === 1)!;
      const three = summaries.find((s) => s.build === build && s.replicas === 3)!;
      return three.opsPerSecond / one.opsPerSecond;
    };
    const loads = rounds.map((x) => x.loadAverage);
    const results = {
      date: new Date().toISOString(),
      machine: machine(),
      store: 'postgres',
      postgres: (await cluster.query('show server_version')).rows[0] as unknown,
      settings,
      vms: VMS,
      perService: oneService ? VMS : PER_SERVICE,
      workers: WORKERS,
      seconds: SECONDS,
      builds,
      loadAverage: { min: Math.min(...loads), max: Math.max(...loads) },
      rounds,
      summaries,
      ratio: Object.fromEntries(builds.map(({ build }) => [build, ratioOf(build)])),
    };
    await saveJson('api', oneService ? 'postgres-one-service' : 'postgres', results);
    const ratio = ratioOf('this');
    const label = (s: (typeof summaries)[number]) =>
      `${b >= 0 ? `${s.build === 'this' ? 'after' : 'before'}, ` : ''}${s.replicas} × \`vipdip serve\``;
    const row = (s: (typeof summaries)[number]) =>
      `| ${label(s)} | ${fmtRate(s.opsPerSecond)} | ${ms(s.p50Ms)} | ${ms(s.p99Ms)} | ${s.errors} | ${s.statementsPerOp.toFixed(1)} | ${s.eventReadsPerOp.toFixed(2)} | ${s.sessions.toFixed(1)} | ${(100 * s.counterHeld).toFixed(0)} % | ${s.counterHeldMsPerOp.toFixed(2)} ms | ${s.serviceWaits.toFixed(2)} |`;
    const spread = oneService
      ? `one of ${VMS} VMs, all in one cloud service`
      : `one of ${VMS} VMs in ${VMS / PER_SERVICE} cloud services of ${PER_SERVICE}`;
    const body = [
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}, PostgreSQL ${String((results.postgres as { server_version?: string }).server_version ?? '?')} (a throwaway cluster on loopback, synchronous_commit=off: like SQLite's synchronous=NORMAL, a commit does not wait for the disk); \`npm run bench -- api ${args.join(' ')}\`. ${WORKERS} concurrent keep-alive clients in another process, each request a VM deallocate or start on ${spread}, spread over the replicas; ${roundsWanted} interleaved rounds of ${SECONDS} s after a warm-up of ${PG_WARMUP_SECONDS} s, medians; load average ${results.loadAverage.min.toFixed(1)}–${results.loadAverage.max.toFixed(1)} during the rounds. Everything (replicas, PostgreSQL, load) shares the same 2 cores.`,
      '',
      '| replicas | ops/s | p50 | p99 | errors | database round trips per op | of which event reads | sessions | counter row held | held per op | sessions waiting for a service row |',
      '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
      ...summaries.map(row),
      '',
      `Three replicas keep **${ratio.toFixed(2)}×** the ops/s of one${b >= 0 ? ` (before: ${ratioOf('baseline').toFixed(2)}×)` : ''} (target ≥ 1.0: ${ratio >= 1 ? 'met' : '**not met**'}). Round trips are the statements the replicas send, counted by the store (BEGIN and COMMIT included); with three replicas they include each replica reading the others' events as it follows the log. The last four columns sample \`pg_stat_activity\` every ${PG_SAMPLE_MS} ms: the replicas' sessions on average, the share of samples in which a transaction held the event counter row (from its append statement to the end of its commit), that share divided by the operations per second, and the sessions waiting on the lock of the VM-and-service statement.`,
    ].join('\n');
    await saveSection(
      oneService ? 'api-postgres-one-service' : 'api-postgres',
      oneService
        ? 'API over PostgreSQL: one and three replicas, one service'
        : 'API over PostgreSQL: one and three replicas',
      body,
    );
    console.log(`## api (postgres)\n\n${body}\n`);
  } finally {
    for (const s of all) await s.stop();
    cluster.destroy();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  }
}
