/**
 * Address weather against the demo: `vipdip up --demo` in a child process (local driver, fixed
 * seed), one chaos run at a fixed rate over contoso, and the three probes side by side in this
 * process through the same weather — the VIP of shop (a reserved IP), its DNS name resolved on
 * every connection, and web1's DIP as it was at the start. Reports each probe's availability, its
 * longest outage, and the operations per minute the run sustained.
 *
 * Bounded: the weather lasts --duration (default 2m), the probes send 10 requests/s each to
 * loopback only, and the child is stopped by its PID (SIGINT, then SIGKILL).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDuration, runProbe, type ChaosRunView, type ProbeReport } from '../src/chaos/index.ts';
import { machine, saveJson, saveSection } from './report.ts';
import { api, startUp, stopProc } from './up.ts';

const SEED = 20261203;
const RATES = { maintenance: 2, redeploy: 6, deallocate: 4, vip: 2, crash: 4 };
const PAUSE_MS = 5000;
const PROBE_RATE_PER_S = 10;
/** Probe intervals and timeouts at a tenth of real time, as in a demo. */
const TIME_SCALE = 0.1;
const HEALTH_POLL_MS = 50;

const pct = (x: number) => `${(x * 100).toFixed(2)} %`;

export async function run(args: string[]): Promise<void> {
  const i = args.indexOf('--duration');
  const weatherMs = parseDuration(i >= 0 ? (args[i + 1] ?? '2m') : '2m', '--duration');
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-chaos-'));
  const up = await startUp(dir, ['--demo', '--seed', String(SEED), '--time-scale', String(TIME_SCALE)]);
  try {
    const shop = await api<{ vip: string }>(up, 'GET', '/v1/services/shop');
    const web1 = await api<{ dip: string }>(up, 'GET', '/v1/services/shop/vms/web1');
    // Every backend probed up before the weather.
    await new Promise((r) => setTimeout(r, 3000));
    const started = await api<ChaosRunView>(up, 'POST', '/v1/chaos', {
      subscription: 'contoso',
      seed: SEED,
      rates: RATES,
      pauseMs: PAUSE_MS,
      durationMs: weatherMs,
    });
    console.log(`chaos run ${started.id}: ${JSON.stringify(RATES)} per minute for ${weatherMs / 1000} s`);
    // How long shop had no backend in rotation at all (every web VM out at once: the weather took the
    // whole service), polled from its health route, to read the VIP probe's failures against.
    let noBackendMs = 0;
    let polling = true;
    const poller = (async () => {
      let last = Date.now();
      while (polling) {
        const h = await api<{ endpoints: { name: string; backends: { state: string }[] }[] }>(
          up,
          'GET',
          '/v1/services/shop/health',
        ).catch(() => undefined);
        const now = Date.now();
        const http = h?.endpoints.find((e) => e.name === 'http');
        if (http !== undefined && !http.backends.some((b) => b.state === 'up')) noBackendMs += now - last;
        last = now;
        await new Promise((r) => setTimeout(r, HEALTH_POLL_MS));
      }
    })();
    const probe = (via: 'vip' | 'dns' | 'dip', target: string) =>
      runProbe({
        via,
        target,
        ratePerSec: PROBE_RATE_PER_S,
        durationMs: weatherMs,
        protocol: 'http',
        path: '/',
        timeoutMs: 1000,
        dnsServer: up.dns,
        dnsCache: 'always',
      });
    const [vip, dns, dip] = await Promise.all([
      probe('vip', `${shop.vip}:8080`),
      probe('dns', 'shop.cloudapp.vipdip.test:8080'),
      probe('dip', `${web1.dip}:8000`),
    ]);
    polling = false;
    await poller;
    let end = await api<ChaosRunView>(up, 'GET', `/v1/chaos/${started.id}`);
    for (let n = 0; n < 100 && end.state === 'running'; n++) {
      await new Promise((r) => setTimeout(r, 200));
      end = await api<ChaosRunView>(up, 'GET', `/v1/chaos/${started.id}`);
    }
    const done = Object.values(end.counts).reduce((n, c) => n + c.done, 0);
    const skipped = Object.values(end.counts).reduce((n, c) => n + c.skipped, 0);
    const opsPerMin = done / (weatherMs / 60_000);
    const load = loadavg().map((x) => x.toFixed(1));
    const result = {
      machine: machine(),
      date: new Date().toISOString(),
      seed: SEED,
      ratesPerMin: RATES,
      weatherMs,
      timeScale: TIME_SCALE,
      probeRatePerS: PROBE_RATE_PER_S,
      run: { id: end.id, state: end.state, counts: end.counts, done, skipped, opsPerMin },
      noBackendMs,
      probes: { vip: strip(vip), dns: strip(dns), dip: strip(dip) },
      loadAverage: load,
    };
    await saveJson('chaos', 'demo', result);
    const row = (name: string, r: ProbeReport) =>
      `| ${name} | ${r.requests} | ${r.failures} | ${pct(r.availability)} | ${(r.longestOutageMs / 1000).toFixed(1)} s | ${r.addressChanges} | ${r.backends.length} |`;
    const m = machine();
    const body = [
      `Measured ${result.date.slice(0, 10)} on ${m.cpus} × ${m.cpu}, Node ${m.node}, on a machine shared with other engineers' builds and tests (busier than usual: load average ${load.join(', ')} at the end), so read the figures as what this machine gave, not as the data plane's ceiling.`,
      '',
      `\`vipdip up --demo --seed ${SEED} --time-scale ${TIME_SCALE}\` (local driver) and one chaos run over contoso for ${weatherMs / 1000} s at ${Object.entries(
        RATES,
      )
        .map(([k, v]) => `${k}=${v}/min`)
        .join(
          ', ',
        )}, pause ${PAUSE_MS / 1000} s, seed ${SEED}. Three probes side by side through the same weather, ${PROBE_RATE_PER_S} HTTP requests/s each on a new connection, 1 s timeout: shop's VIP (a reserved IP), its DNS name resolved on every connection, and web1's DIP as it was at the start.`,
      '',
      '| probe | requests | failed | availability | longest outage | address changes | backends seen |',
      '| ----- | -------: | -----: | -----------: | -------------: | --------------: | ------------: |',
      row('`--via vip`', vip),
      row('`--via dns`', dns),
      row('`--via dip`', dip),
      '',
      `The run sustained **${opsPerMin.toFixed(1)} operations per minute** (${done} done, ${skipped} skipped; the schedule draws ${Object.values(RATES).reduce((a, b) => a + b, 0)}/min, and each deallocation and VIP loss adds its own start or restore ${PAUSE_MS / 1000} s later); every one is an ordinary lifecycle operation with the reason \`chaos run ${end.id}: …\`. VIP / DIP availability: ${(vip.availability / Math.max(dip.availability, 1e-9)).toFixed(1)} ×.`,
      '',
      `Shop had no backend in rotation at all for ${(noBackendMs / 1000).toFixed(1)} s of the run (its health route polled every ${HEALTH_POLL_MS} ms): moments when the weather had every web VM out at once (deallocated awaiting its start, redeploying, or crashed), in which no balancer can answer; at ${PROBE_RATE_PER_S} requests/s that is about ${Math.round((noBackendMs / 1000) * PROBE_RATE_PER_S)} of the VIP probe's ${vip.failures} failures. A backend that dies or moves while others remain costs nothing: the data plane retries the connect on another backend and takes a failing one out at once (issue 13).`,
      '',
      'To reproduce: `npm run bench -- chaos` (`--duration 5m` for a longer run). Raw figures: `bench/results/chaos.json`.',
    ].join('\n');
    await saveSection('chaos', 'Chaos: what a client sees through the VIP, DNS and a cached DIP', body);
    console.log(body);
  } finally {
    await stopProc(up.proc, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  }
}

function strip(r: ProbeReport) {
  const { changes: _changes, ...rest } = r;
  return rest;
}
