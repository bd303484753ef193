/**
 * API benchmark: VM lifecycle operations through HTTP against a real `vipdip up` (SQLite store,
 * no data plane), with the load generator in another process.
 *
 * - throughput: 16 concurrent keep-alive clients, each cycling its own VMs;
 * - latency at fixed rates of 500 and 2,000 requests per second (open loop, measured from the
 *   schedule so a slow server cannot hide its queueing).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ROOT, fmtRate, machine, saveJson, saveSection } from './report.ts';

const run_ = promisify(execFile);
const VMS = 256;
const SECONDS = 8;
const WORKERS = 16;
const RATES = [500, 2000];
const TARGET_OPS = 3000;
const TARGET_P99_MS = 10;

interface ClientResult {
  ops: number;
  errors: number;
  seconds: number;
  opsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
}

async function startServer(dir: string): Promise<{ url: string; token: string; stop: () => Promise<void> }> {
  const state = join(dir, '.vipdip');
  const proc = spawn(
    process.execPath,
    [
      join(ROOT, 'bin/vipdip.js'),
      'up',
      '--state',
      state,
      '--listen',
      '127.0.0.1:0',
      '--driver',
      'none',
      '--dns',
      'off',
      '--seed',
      '1',
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
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

async function client(url: string, token: string, mode: string, param: number): Promise<ClientResult> {
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
      String(SECONDS),
      String(VMS),
    ],
    { cwd: ROOT, timeout: 120_000 },
  );
  return JSON.parse(stdout.trim().split('\n').pop()!) as ClientResult;
}

export async function run(_args: string[]): Promise<void> {
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
      `  ${fmtRate(throughput.opsPerSecond)} ops/s, p50 ${throughput.p50Ms.toFixed(1)} ms, p99 ${throughput.p99Ms.toFixed(1)} ms, ${throughput.errors} errors`,
    );
    const rates: (ClientResult & { rate: number })[] = [];
    for (const r of RATES) {
      console.error(`api: fixed rate ${r}/s for ${SECONDS} s…`);
      const x = await client(server.url, server.token, 'rate', r);
      rates.push({ rate: r, ...x });
      console.error(`  p50 ${x.p50Ms.toFixed(1)} ms, p99 ${x.p99Ms.toFixed(1)} ms, ${x.errors} errors`);
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
      `Measured ${results.date.slice(0, 10)} on ${results.machine.cpus} × ${results.machine.cpu}, Node ${results.machine.node}: one \`vipdip up\` (SQLite, driver none) and a load generator in another process, both on the same 2 cores. Each request is a VM deallocate or start.`,
      '',
      '| load | ops/s | p50 | p99 | errors |',
      '| --- | ---: | ---: | ---: | ---: |',
      `| ${WORKERS} concurrent clients (keep-alive) | ${fmtRate(throughput.opsPerSecond)} | ${throughput.p50Ms.toFixed(1)} ms | ${throughput.p99Ms.toFixed(1)} ms | ${throughput.errors} |`,
      ...rates.map(
        (r) =>
          `| fixed ${r.rate}/s (open loop) | ${fmtRate(r.opsPerSecond)} | ${r.p50Ms.toFixed(1)} ms | ${r.p99Ms.toFixed(1)} ms | ${r.errors} |`,
      ),
      '',
      `Targets: ≥ ${TARGET_OPS} lifecycle ops/s (${throughput.opsPerSecond >= TARGET_OPS ? 'met' : '**not met**'}); p99 < ${TARGET_P99_MS} ms at 2,000 req/s (${(rates.find((r) => r.rate === 2000)?.p99Ms ?? Infinity) < TARGET_P99_MS ? 'met' : '**not met**'}). At a rate above what the server sustains, open-loop latency measures the queue that builds up.`,
    ].join('\n');
    await saveSection('api', 'API: lifecycle operations through HTTP', body);
    console.log(`## api\n\n${body}\n`);
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
