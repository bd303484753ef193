/**
 * CLI start-up benchmark (issue 12): what a person waits for, whole processes, beside `node -e 0`
 * measured in the same rounds.
 *
 * - `vipdip --version`, `vipdip --help`;
 * - `vipdip get vms` against a running `up --demo` (7 VMs), and `get vms -o json` against one holding
 *   1,000 VMs (applied through the API on loopback);
 * - `vipdip up --demo` from spawn to ready: the API healthy, the DNS answering (dig on its port) and
 *   every demo VIP answering an HTTP request through the local data plane;
 * - a whoami workload, started as the agent starts it, from spawn to listening.
 *
 * Wall time is measured here from spawn to exit (or to ready); peak RSS is the process's maximum
 * resident set from GNU time (`/usr/bin/time -f %M`), which wraps every command alike, `node -e 0`
 * included. One warm-up round, then ROUNDS rounds, the order of the commands rotating each round so
 * that a busy neighbour hurts them alike; medians.
 *
 * `npm run bench -- cli --before REV` measures the CLI of git revision REV too (extracted with git
 * archive into a temporary directory, using this checkout's node_modules): the "before" column.
 * `--tsc` measures the same sources compiled by tsc, one file per module, against the shipped
 * esbuild bundle (the choice scripts/build.mjs explains).
 *
 * Addresses: the demo's VNets (127.16.0.0/16, 127.32.0.0/16), its public pool moved to
 * 127.124.0.0/16; the 1,000-VM topology in 127.20.0.0/16 with the `none` driver (no sockets).
 */
import { execFile, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { ROOT, machine, median, saveJson, saveSection } from './report.ts';

const exec = promisify(execFile);
/** Rounds measured after the warm-up (`--rounds N` for a quick look; the figures want at least 5). */
let ROUNDS = 7;
const TIME = '/usr/bin/time';
const DEMO_POOL = '127.124.0.0/16';
const BIG_VMS = 1000;
const READY_TIMEOUT_MS = 60_000;
/** The issue's targets: ratios to `node -e 0`, and absolute times. */
const TARGETS = { versionHelpRatio: 2, getVmsRatio: 3, upReadyS: 2.5, workloadListeningS: 0.3 };

interface Sample {
  wallMs: number;
  rssKb: number | null;
  /** User + system CPU of the whole process (GNU time, 10 ms steps): steadier than wall time on a busy machine. */
  cpuMs: number | null;
}

/** A command under test: argv (node's), environment, and optionally a readiness wait instead of its exit. */
interface Case {
  name: string;
  argv: string[];
  env?: Record<string, string>;
}

const hasTime = existsSync(TIME);
let seq = 0;
const scratch = mkdtempSync(join(tmpdir(), 'vipdip-bench-cli-'));

/** Spawns node with `argv` under GNU time; resolves at exit with the wall time and peak RSS. */
function timeToExit(c: Case): Promise<Sample> {
  const rssFile = join(scratch, `rss-${seq++}`);
  const [cmd, args] = hasTime
    ? [TIME, ['-f', '%M %U %S', '-o', rssFile, process.execPath, ...c.argv]]
    : [process.execPath, c.argv];
  return new Promise((ok, fail) => {
    const t0 = performance.now();
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...c.env } });
    let err = '';
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const kill = setTimeout(() => p.kill('SIGKILL'), 60_000);
    p.once('exit', (code) => {
      const wallMs = performance.now() - t0;
      clearTimeout(kill);
      if (code !== 0) return fail(new Error(`${c.name} exited ${code}: ${err}`));
      ok({ wallMs, ...readTime(rssFile) });
    });
  });
}

/** GNU time's last line: peak RSS (KB), user and system CPU (s). */
function readTime(file: string): { rssKb: number | null; cpuMs: number | null } {
  if (!hasTime) return { rssKb: null, cpuMs: null };
  const [kb, user, sys] = (readFileSync(file, 'utf8').trim().split('\n').pop() ?? '').split(' ').map(Number);
  rmSync(file, { force: true });
  const cpu = (user ?? NaN) + (sys ?? NaN);
  return {
    rssKb: Number.isFinite(kb) ? kb! : null,
    cpuMs: Number.isFinite(cpu) ? Math.round(cpu * 1000) : null,
  };
}

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as { port: number };
  await new Promise((ok) => s.close(ok));
  return port;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An HTTP GET answered with 200, within 1 s. */
function httpOk(url: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = request(url, { agent: false, timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => ok(res.statusCode === 200));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => ok(false));
    req.end();
  });
}

/** Polls `check` every `everyMs` until it is true; false after READY_TIMEOUT_MS. */
async function until(check: () => Promise<boolean> | boolean, everyMs = 5): Promise<void> {
  const end = Date.now() + READY_TIMEOUT_MS;
  while (!(await check())) {
    if (Date.now() > end) throw new Error('not ready in time');
    await sleep(everyMs);
  }
}

/**
 * `vipdip up --demo` on a fresh state: spawn → API healthy, DNS answering, every VIP answering.
 * GNU time runs up itself, so the peak RSS is up's, through the demo's start and a clean stop.
 */
async function upReady(bin: string): Promise<Sample & { phases: Record<string, number> }> {
  const dir = mkdtempSync(join(scratch, 'up-'));
  const state = join(dir, '.vipdip');
  const rssFile = join(scratch, `rss-${seq++}`);
  const argv = [bin, 'up', '--demo', '--state', state, '--listen', '127.0.0.1:0', '--dns', '127.0.0.1:0'];
  argv.push('--public-pool', DEMO_POOL, '--seed', '7');
  const [cmd, args] = hasTime
    ? [TIME, ['-f', '%M %U %S', '-o', rssFile, process.execPath, ...argv]]
    : [process.execPath, argv];
  const t0 = performance.now();
  const p = spawn(cmd, args, {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, VIPDIP_STORE: '' },
  });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  p.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((ok) => p.once('exit', () => ok()));
  const phases: Record<string, number> = {};
  const mark = (k: string) => (phases[k] = performance.now() - t0);
  try {
    let api = '';
    await until(() => {
      api = /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1] ?? '';
      return api !== '' || p.exitCode !== null;
    });
    if (api === '') throw new Error(`up --demo exited:\n${out}`);
    await until(() => httpOk(`${api}/healthz`));
    mark('apiHealthy');
    const dns = /DNS on 127\.0\.0\.1:(\d+)/.exec(out)?.[1];
    if (dns === undefined) throw new Error(`no DNS line:\n${out}`);
    const vips = [...out.matchAll(/try: curl (http:\/\/127\.124\.\d+\.\d+:\d+\/)/g)].map((m) => m[1]!);
    const shopVip = /shop +VIP (127\.\d+\.\d+\.\d+)/.exec(out)?.[1];
    if (vips.length < 3 || shopVip === undefined) throw new Error(`the demo's VIPs are not listed:\n${out}`);
    await until(async () => {
      const r = await exec('dig', [
        '+short',
        '+time=1',
        '+tries=1',
        '@127.0.0.1',
        '-p',
        dns,
        'shop.cloudapp.vipdip.test',
      ]).catch(() => ({ stdout: '' }));
      return r.stdout.trim() === shopVip;
    }, 10);
    mark('dnsAnswering');
    for (const v of vips) await until(() => httpOk(v));
    mark('everyVipAnswering');
    const wallMs = performance.now() - t0;
    // SIGTERM to up itself, the child of GNU time (before revisions had no `vipdip down`).
    stopChild(p.pid!);
    await exited;
    return { wallMs, ...readTime(rssFile), phases };
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Sends SIGTERM to the process `pid` runs (GNU time's child), or to `pid` itself without GNU time. */
function stopChild(pid: number): void {
  let target = pid;
  if (hasTime) {
    const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/);
    target = Number(children[0]);
  }
  process.kill(target, 'SIGTERM');
}

/** A whoami workload as the agent starts it (`node BIN workload whoami`): spawn → its port accepts. */
async function workloadListening(bin: string): Promise<Sample> {
  const port = await freePort();
  const rssFile = join(scratch, `rss-${seq++}`);
  const argv = [bin, 'workload', 'whoami'];
  const [cmd, args] = hasTime
    ? [TIME, ['-f', '%M %U %S', '-o', rssFile, process.execPath, ...argv]]
    : [process.execPath, argv];
  const t0 = performance.now();
  const p = spawn(cmd, args, {
    stdio: ['pipe', 'ignore', 'ignore'],
    env: {
      ...process.env,
      VIPDIP_SERVICE: 'shop',
      VIPDIP_VM: 'web1',
      VIPDIP_DIP: '127.0.0.1',
      VIPDIP_PORT_HTTP: String(port),
    },
  });
  const exited = new Promise<void>((ok) => p.once('exit', () => ok()));
  try {
    await until(() => httpOk(`http://127.0.0.1:${port}/`), 2);
    const wallMs = performance.now() - t0;
    p.stdin.end(); // the agent's lifeline: the workload exits when it closes
    await exited;
    return { wallMs, ...readTime(rssFile) };
  } finally {
    if (p.exitCode === null) p.kill('SIGKILL');
  }
}

interface Server {
  url: string;
  token: string;
  stop(): Promise<void>;
}

async function startServer(bin: string, args: string[]): Promise<Server> {
  const dir = mkdtempSync(join(scratch, 'srv-'));
  const state = join(dir, '.vipdip');
  const p = spawn(
    process.execPath,
    [bin, 'up', '--state', state, '--listen', '127.0.0.1:0', '--dns', 'off', '--driver', 'none', ...args],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, VIPDIP_STORE: '' },
    },
  );
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((ok) => p.once('exit', () => ok()));
  await until(() => /API and dashboard on /.test(out) || p.exitCode !== null);
  const url = /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1];
  if (url === undefined) throw new Error(`server did not start:\n${out}`);
  return {
    url,
    token: readFileSync(join(state, 'operator.token'), 'utf8').trim(),
    stop: async () => {
      p.kill('SIGTERM');
      await exited;
    },
  };
}

/** `n` VMs in services of 4 in one /16 (as bench/api.ts's size axis), for the none driver. */
function bigTopology(n: number): string {
  const services: string[] = [];
  for (let b = 0; b < n / 4; b++) {
    const vms = Array.from({ length: 4 }, (_, j) => `{ name: vm${b * 4 + j}, subnet: s }`);
    services.push(`      - { name: b${b}, vnet: net, vms: [${vms.join(', ')}] }`);
  }
  return `subscriptions:
  - name: bench
    virtualNetworks:
      - name: net
        addressSpace: [127.20.0.0/16]
        subnets: [{ name: s, cidr: 127.20.0.0/16 }]
    cloudServices:
${services.join('\n')}
`;
}

/** The CLI of git revision `rev`, extracted beside this checkout's node_modules. */
async function extractRevision(rev: string): Promise<string> {
  const dir = mkdtempSync(join(scratch, 'before-'));
  await exec('sh', ['-c', `git -C "${ROOT}" archive "${rev}" | tar -x -C "${dir}"`]);
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  return join(dir, 'bin/vipdip.js');
}

/**
 * The same sources compiled by tsc, one file per module (the alternative to the esbuild bundle the
 * package ships), laid out as a package: its own bin, package.json, and links to node_modules, the
 * built dashboard and the examples. Returns its bin and the seconds tsc took.
 */
async function buildWithTsc(): Promise<{ bin: string; buildS: number }> {
  const dir = join(scratch, 'tsc');
  const t0 = performance.now();
  await exec(process.execPath, [
    join(ROOT, 'node_modules/typescript/bin/tsc'),
    ...['-p', join(ROOT, 'tsconfig.json'), '--noEmit', 'false', '--outDir', dir],
    ...['--rewriteRelativeImportExtensions', '--sourceMap'],
  ]);
  const buildS = (performance.now() - t0) / 1000;
  for (const x of ['node_modules', 'dist', 'examples', 'package.json'])
    symlinkSync(join(ROOT, x), join(dir, x));
  mkdirSync(join(dir, 'bin'));
  // bin/vipdip.js's dispatch, on the tsc output (the agent starts workloads through this bin too).
  writeFileSync(
    join(dir, 'bin/vipdip.js'),
    `#!/usr/bin/env node
const verb = process.argv[2];
if (process.argv.includes('--debug') || ['up', 'serve', 'agent', 'fsck'].includes(verb ?? '')) process.setSourceMapsEnabled(true);
if (verb === 'workload') {
  const { runBuiltin } = await import('../src/agent/builtins/main.js');
  const code = await runBuiltin(process.argv.slice(3));
  if (code !== 0) process.exit(code);
} else {
  const { main } = await import('../src/cli/main.js');
  process.exitCode = await main(process.argv);
}
`,
  );
  return { bin: join(dir, 'bin/vipdip.js'), buildS };
}

/** A way of running the CLI, measured side by side: this checkout's bundle, tsc's output, an older revision. */
interface Variant {
  key: 'bundle' | 'tsc' | 'before';
  label: string;
  bin: string;
}

interface Row {
  what: string;
  samples: Record<Variant['key'] | 'node', Sample[]>;
}

const med = (xs: Sample[]) =>
  xs.length === 0
    ? null
    : {
        wallMs: median(xs.map((x) => x.wallMs)),
        rssKb: xs.some((x) => x.rssKb === null) ? null : median(xs.map((x) => x.rssKb!)),
        cpuMs: xs.some((x) => x.cpuMs === null) ? null : median(xs.map((x) => x.cpuMs!)),
      };

export async function run(args: string[]): Promise<void> {
  const i = args.indexOf('--before');
  const beforeRev = i >= 0 ? args[i + 1] : undefined;
  if (i >= 0 && beforeRev === undefined) throw new Error('--before needs a git revision');
  const r = args.indexOf('--rounds');
  if (r >= 0) ROUNDS = Number(args[r + 1]);
  if (!Number.isInteger(ROUNDS) || ROUNDS < 1) throw new Error('--rounds takes a whole number of rounds');
  if (!hasTime) console.error(`cli: ${TIME} is missing (Debian package time): no peak RSS figures`);

  const bundle = join(ROOT, 'bin/vipdip.js');
  const variants: Variant[] = [{ key: 'bundle', label: 'esbuild bundle (shipped)', bin: bundle }];
  let tscBuildS: number | null = null;
  if (args.includes('--tsc')) {
    console.error('cli: compiling with tsc…');
    const t = await buildWithTsc();
    tscBuildS = t.buildS;
    variants.push({ key: 'tsc', label: 'tsc, a file per module', bin: t.bin });
  }
  if (beforeRev !== undefined) {
    variants.push({
      key: 'before',
      label: `before (${beforeRev}, tsx)`,
      bin: await extractRevision(beforeRev),
    });
  }
  const load0 = loadavg();

  const demo = await startServer(bundle, ['--demo']);
  const big = await startServer(bundle, []);
  const res = await fetch(`${big.url}/v1/apply`, {
    method: 'POST',
    headers: { authorization: `Bearer ${big.token}`, 'content-type': 'application/yaml' },
    body: bigTopology(BIG_VMS),
    signal: AbortSignal.timeout(600_000),
  });
  if (res.status !== 200) throw new Error(`apply of ${BIG_VMS} VMs: ${res.status} ${await res.text()}`);
  const demoEnv = { VIPDIP_URL: demo.url, VIPDIP_TOKEN: demo.token };
  const bigEnv = { VIPDIP_URL: big.url, VIPDIP_TOKEN: big.token };

  type Measure = (bin: string) => Promise<Sample>;
  const exitCase =
    (argv: string[], env?: Record<string, string>): Measure =>
    (bin) =>
      timeToExit({ name: `vipdip ${argv.join(' ')}`, argv: [bin, ...argv], ...(env ? { env } : {}) });
  const rows: { what: string; measure: Measure; target: string; inBefore: boolean }[] = [
    {
      what: '`vipdip --version`',
      measure: exitCase(['--version']),
      target: `≤ ${TARGETS.versionHelpRatio}× node`,
      inBefore: false,
    },
    {
      what: '`vipdip --help`',
      measure: exitCase(['--help']),
      target: `≤ ${TARGETS.versionHelpRatio}× node`,
      inBefore: true,
    },
    {
      what: '`vipdip get vms` (demo, 7 VMs)',
      measure: exitCase(['get', 'vms'], demoEnv),
      target: `≤ ${TARGETS.getVmsRatio}× node`,
      inBefore: true,
    },
    {
      what: `\`vipdip get vms -o json\` (${BIG_VMS.toLocaleString('en')} VMs)`,
      measure: exitCase(['get', 'vms', '-o', 'json'], bigEnv),
      target: `≤ ${TARGETS.getVmsRatio}× node`,
      inBefore: true,
    },
    {
      what: '`vipdip up --demo`: spawn → ready',
      measure: upReady,
      target: `≤ ${TARGETS.upReadyS} s`,
      inBefore: true,
    },
    {
      what: 'whoami workload: spawn → listening',
      measure: workloadListening,
      target: `≤ ${TARGETS.workloadListeningS * 1000} ms`,
      inBefore: true,
    },
  ];
  const nodeCase = () => timeToExit({ name: 'node -e 0', argv: ['-e', '0'] });
  const results: Row[] = rows.map((r) => ({
    what: r.what,
    samples: { node: [], bundle: [], tsc: [], before: [] },
  }));
  const upPhases: Record<string, number>[] = [];
  try {
    for (let round = 0; round <= ROUNDS; round++) {
      const warm = round === 0;
      console.error(`cli: ${warm ? 'warm-up' : `round ${round} of ${ROUNDS}`}…`);
      for (let k = 0; k < rows.length; k++) {
        const row = rows[k]!;
        const out = results[k]!.samples;
        // node -e 0 and every variant, in an order that rotates each round.
        const jobs: [Sample[], () => Promise<Sample>][] = [[out.node, nodeCase]];
        for (const v of variants) {
          if (v.key === 'before' && !row.inBefore) continue;
          jobs.push([out[v.key], () => row.measure(v.bin)]);
        }
        for (let j = 0; j < jobs.length; j++) {
          const [into, go] = jobs[(j + round) % jobs.length]!;
          const s = await go();
          if (warm) continue;
          into.push(s);
          if ('phases' in s && into === out.bundle) upPhases.push(s.phases as Record<string, number>);
        }
      }
    }
  } finally {
    await demo.stop();
    await big.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
  const load1 = loadavg();

  const summary = results.map((r) => ({
    what: r.what,
    medians: Object.fromEntries(Object.entries(r.samples).map(([k, xs]) => [k, med(xs)])),
    samples: r.samples,
  }));
  const upPhaseMedians = Object.fromEntries(
    Object.keys(upPhases[0] ?? {}).map((k) => [k, median(upPhases.map((p) => p[k]!))]),
  );
  await saveJson('cli', 'startup', {
    date: new Date().toISOString(),
    machine: machine(),
    loadAverage: { start: load0, end: load1 },
    variants: variants.map(({ key, label }) => ({ key, label })),
    tscBuildSeconds: tscBuildS,
    rounds: ROUNDS,
    targets: TARGETS,
    upPhasesMs: upPhaseMedians,
    results: summary,
  });

  const s = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(2)} s` : `${ms.toFixed(0)} ms`);
  const mb = (kb: number | null | undefined) => (kb == null ? '–' : `${(kb / 1024).toFixed(0)} MB`);
  const shown = [...variants].reverse(); // before, tsc, then the shipped bundle next to node
  const lines = [
    `| command | ${shown.map((v) => v.label).join(' | ')} | \`node -e 0\` | shipped ÷ node | target | peak RSS: ${shown.map((v) => v.key).join(' / ')} / node |`,
    `| --- | ${shown.map(() => '---:').join(' | ')} | ---: | ---: | --- | ---: |`,
  ];
  summary.forEach((r, k) => {
    const m = r.medians;
    const n = m.node!;
    const a = m.bundle!;
    lines.push(
      `| ${r.what} | ${shown.map((v) => (m[v.key] ? s(m[v.key]!.wallMs) : '–')).join(' | ')} | ${s(n.wallMs)} | ${(a.wallMs / n.wallMs).toFixed(1)}× | ${rows[k]!.target} | ${[...shown.map((v) => mb(m[v.key]?.rssKb)), mb(n.rssKb)].join(' / ')} |`,
    );
  });
  const cpuLines = [
    `| command | ${shown.map((v) => v.label).join(' | ')} | \`node -e 0\` |`,
    `| --- | ${shown.map(() => '---:').join(' | ')} | ---: |`,
    ...summary.map((r) => {
      const c = (x: { cpuMs: number | null } | null | undefined) => (x?.cpuMs == null ? '–' : s(x.cpuMs));
      return `| ${r.what} | ${shown.map((v) => c(r.medians[v.key])).join(' | ')} | ${c(r.medians.node)} |`;
    }),
  ];
  const mc = machine();
  const phases = Object.entries(upPhaseMedians)
    .map(([k, v]) => `${k} ${s(v)}`)
    .join(', ');
  const cmd = `npm run bench -- cli${args.includes('--tsc') ? ' --tsc' : ''}${beforeRev ? ` --before ${beforeRev}` : ''}`;
  await saveSection(
    'cli',
    'CLI: start-up of each command, beside `node -e 0`',
    `Measured ${new Date().toISOString().slice(0, 10)} on ${mc.cpus} × ${mc.cpu}, Node ${mc.node}; \`${cmd}\`. Whole processes: wall time from spawn to exit (or to ready), peak RSS from GNU time; one warm-up round, then ${ROUNDS} rounds with the order rotating, medians. Each column is the same sources run another way, in the same rounds: the esbuild bundle the package ships (\`dist/lib\`)${tscBuildS !== null ? `, tsc's one file per module (compiled in ${tscBuildS.toFixed(1)} s here; the bundle builds in a fraction of a second)` : ''}${beforeRev ? `, and revision ${beforeRev}, whose bin registered tsx and transpiled the sources at every start (its client verbs still loaded the server's code; it had no \`--version\`)` : ''}. \`get vms\` runs against \`up --demo --driver none\` (7 VMs), \`-o json\` against a server holding ${BIG_VMS.toLocaleString('en')} VMs. \`up --demo\` is a fresh state with the local driver, ready when \`/healthz\` answers, \`dig\` on its DNS port answers the shop's VIP and every demo VIP answers an HTTP request (median phases, shipped: ${phases}). The workload is \`node bin/vipdip.js workload whoami\` as the agent starts it, ready when its port answers HTTP. Load average: ${load0.map((x) => x.toFixed(1)).join(' ')} at the start, ${load1.map((x) => x.toFixed(1)).join(' ')} at the end, on 2 cores shared with other engineers' runs: read the ratios within the run, not the absolute times.\n\n${lines.join('\n')}\n\nCPU time (user + system, medians of the same runs), steadier than wall time when the machine is busy; for \`up --demo\` and the workload it covers the process's whole life, through a clean stop:\n\n${cpuLines.join('\n')}\n`,
  );
  console.log(lines.join('\n'));
  console.log(cpuLines.join('\n'));
}
