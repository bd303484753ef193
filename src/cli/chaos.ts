/**
 * `vipdip chaos start|stop|status|probe`: address weather on demand (SPEC §9). start, stop and status
 * talk to the server that runs the weather; probe sends traffic to a VIP, a DNS name or a DIP on
 * loopback and reports what a client saw.
 */
import { Option, type Command } from 'commander';
import {
  CHAOS_KINDS,
  DEFAULT_PROBE_TIMEOUT_MS,
  formatDuration,
  formatRates,
  parseDuration,
  parseRates,
  PROBE_VIAS,
  runProbe,
  type ProbeReport,
  type ProbeVia,
} from '../chaos/index.ts';
import type { ChaosRun } from '../core/api-shapes.ts';
import { VipdipError } from '../core/errors.ts';
import { connect, path, stateOption, type Client } from './client.ts';
import { CliError, UsageError } from './errors.ts';
import { outputOption, print, table } from './output.ts';

interface StartOptions {
  subscription?: string;
  fabric?: boolean;
  service?: string;
  rate: string;
  duration?: string;
  seed?: string;
  pause?: string;
  output: string;
  state?: string;
}

interface ProbeCliOptions {
  via: string;
  rate: string;
  duration: string;
  protocol: string;
  path: string;
  timeout: string;
  dnsServer: string;
  dnsCache: string;
  minAvailability?: string;
  output: string;
}

/** A bad flag value is a usage error (exit 2), with the domain's message. */
function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof VipdipError) throw new UsageError(e.detail);
    throw e;
  }
}

const clock = (iso: string | null) => (iso === null ? '-' : iso.slice(11, 19));

function overWhat(r: ChaosRun): string {
  const where = r.subscription === null ? 'the whole fabric' : `subscription ${r.subscription}`;
  return r.services === null ? where : `${where} (services ${r.services.join(', ')})`;
}

function describeRun(r: ChaosRun): string {
  const now = Date.now();
  const since = Date.parse(r.startedAt);
  const lines = [
    `chaos run ${r.id} over ${overWhat(r)}: ${r.state}` +
      (r.state === 'running' || r.state === 'stopping'
        ? ` since ${clock(r.startedAt)} (${formatDuration(now - since)})` +
          (r.endsAt !== null ? `, weather until ${clock(r.endsAt)}` : ', until stopped')
        : ` (${clock(r.startedAt)}–${clock(r.endedAt)})`) +
      (r.note !== null ? ` — ${r.note}` : ''),
    `seed ${r.seed}; ${formatRates(r.rates)}; pause ${formatDuration(r.pauseMs)}; events say "${r.reason}: …"`,
    r.next !== null
      ? `next: #${r.next.seq} ${r.next.action} ${r.next.target} at ${clock(r.next.at)} (in ${formatDuration(Math.max(0, Date.parse(r.next.at) - now))})`
      : 'next: nothing',
  ];
  const kinds = CHAOS_KINDS.filter(
    (k) => (r.rates[k] ?? 0) > 0 || r.counts[k].done + r.counts[k].skipped > 0,
  );
  const counts = table(
    ['KIND', 'DONE', 'SKIPPED', 'FAILED'],
    kinds.map((k) => [k, r.counts[k].done, r.counts[k].skipped, r.counts[k].failed]),
  );
  const recent = r.recent.slice(-10);
  return (
    lines.join('\n') +
    '\n\n' +
    counts +
    (recent.length === 0
      ? ''
      : '\n' +
        table(
          ['#', 'TIME', 'ACTION', 'TARGET', 'OUTCOME', 'DETAIL'],
          recent.map((s) => [s.seq, clock(s.time), s.action, s.target, s.outcome, s.detail]),
        ))
  );
}

async function ownSubscription(c: Client): Promise<string | undefined> {
  const me = await c.get<{ kind: string; subscription: string | null }>('/v1/whoami');
  return me.subscription ?? undefined;
}

export function registerChaos(program: Command): void {
  const chaos = program
    .command('chaos')
    .description('address weather on demand: maintenance, redeploys, deallocations, VIP loss, crashes');

  stateOption(chaos.command('start'))
    .description('start a chaos run over a subscription (or the whole fabric, operator only)')
    .option('-s, --subscription <name>', 'the subscription whose VMs the weather hits (a tenant: its own)')
    .option('--fabric', 'every subscription (operator only)')
    .option('--service <names>', 'only these services of the subscription, comma-separated')
    .requiredOption(
      '--rate <rates>',
      `operations per minute (or /s, /h) of each kind: ${CHAOS_KINDS.map((k) => `${k}=N/min`).join(',')}`,
    )
    .option('--duration <d>', 'how long the weather lasts (90s, 5m, 1h); default until `chaos stop`')
    .option(
      '--seed <n>',
      'the seed of the schedule: the same seed over the same topology, the same operations',
    )
    .option('--pause <d>', 'how long a deallocated VM (or a service without its VIP) stays down', '5s')
    .addOption(outputOption())
    .action(async (opts: StartOptions) => {
      const rates = usage(() => parseRates(opts.rate));
      const durationMs =
        opts.duration === undefined ? null : usage(() => parseDuration(opts.duration!, '--duration'));
      const pauseMs = usage(() => parseDuration(opts.pause ?? '5s', '--pause'));
      if (opts.seed !== undefined && (!/^\d{1,10}$/.test(opts.seed) || Number(opts.seed) > 0xffffffff)) {
        throw new UsageError(`--seed ${opts.seed}: must be an integer from 0 to 4294967295`);
      }
      if (opts.fabric === true && opts.subscription !== undefined) {
        throw new UsageError('chaos start: give -s SUB or --fabric, not both');
      }
      const c = connect(opts);
      let subscription = opts.subscription;
      if (subscription === undefined && opts.fabric !== true) {
        subscription = await ownSubscription(c);
        if (subscription === undefined) {
          throw new UsageError('chaos start: give -s SUBSCRIPTION, or --fabric for every subscription');
        }
      }
      const services = opts.service
        ?.split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
      if (services !== undefined && subscription === undefined) {
        throw new UsageError('--service: give the subscription too (-s SUB)');
      }
      const run = await c.post<ChaosRun>('/v1/chaos', {
        ...(subscription !== undefined ? { subscription } : {}),
        ...(services !== undefined ? { services } : {}),
        ...(opts.seed !== undefined ? { seed: Number(opts.seed) } : {}),
        rates,
        pauseMs,
        durationMs,
      });
      await print(
        opts.output,
        run,
        () =>
          `started chaos run ${run.id} over ${overWhat(run)}: ${formatRates(run.rates)}, ` +
          `${run.durationMs === null ? 'until `vipdip chaos stop`' : `for ${formatDuration(run.durationMs)}`}, seed ${run.seed}\n` +
          `  vipdip chaos status ${run.id}    vipdip events --follow    vipdip chaos stop ${run.id}\n`,
      );
    });

  stateOption(chaos.command('stop'))
    .description('stop a chaos run (the running one, when there is one); what it took is given back')
    .argument('[id]', 'the run')
    .addOption(outputOption())
    .action(async (id: string | undefined, opts: { output: string; state?: string }) => {
      const c = connect(opts);
      const runId = id ?? (await theRunning(c)).id;
      const run = await c.post<ChaosRun>(path`/v1/chaos/${runId}/stop`);
      await print(opts.output, run, () => `${describeRun(run)}`);
    });

  stateOption(chaos.command('status'))
    .description('what ran and what is next: one run, or every run this server knows')
    .argument('[id]', 'the run')
    .addOption(outputOption())
    .action(async (id: string | undefined, opts: { output: string; state?: string }) => {
      const c = connect(opts);
      if (id !== undefined) {
        const run = await c.get<ChaosRun>(path`/v1/chaos/${id}`);
        await print(opts.output, run, () => describeRun(run));
        return;
      }
      const runs = await c.get<ChaosRun[]>('/v1/chaos');
      await print(opts.output, runs, () => {
        if (runs.length === 0) {
          return 'no chaos run on this server (runs live in the memory of the server that started them, and end with it)\n';
        }
        const running = runs.filter((r) => r.state === 'running');
        return (
          (running.length === 1 ? describeRun(running[0]!) + '\n' : '') +
          table(
            ['ID', 'OVER', 'STATE', 'STARTED', 'STEPS', 'RATES'],
            runs.map((r) => [
              r.id,
              overWhat(r),
              r.state,
              clock(r.startedAt),
              CHAOS_KINDS.reduce((n, k) => n + r.counts[k].done, 0),
              formatRates(r.rates),
            ]),
          )
        );
      });
    });

  chaos
    .command('probe')
    .description(
      'send requests at a rate to a VIP, a DNS name or a DIP (loopback only) and report what a client saw',
    )
    .argument(
      '<target>',
      'HOST:PORT: a VIP or DIP, or a DNS name (resolved once for vip and dip, per connection for dns)',
    )
    .addOption(
      new Option('--via <how>', 'how the client finds the address').choices(PROBE_VIAS).makeOptionMandatory(),
    )
    .option('--rate <n>', 'requests per second (N or N/s)', '10/s')
    .option('--duration <d>', 'how long to probe (30s, 5m)', '30s')
    .addOption(
      new Option('--protocol <p>', 'an HTTP GET, or a TCP connection only')
        .choices(['http', 'tcp'])
        .default('http'),
    )
    .option('--path <path>', 'the HTTP path', '/')
    .option('--timeout <d>', 'a request slower than this fails', `${DEFAULT_PROBE_TIMEOUT_MS}ms`)
    .option('--dns-server <host:port>', "vipdip's DNS server", '127.0.0.1:5353')
    .addOption(
      new Option(
        '--dns-cache <mode>',
        '--via dns: resolve for every connection, or keep an answer for its TTL',
      )
        .choices(['always', 'ttl'])
        .default('always'),
    )
    .option('--min-availability <percent>', 'exit 1 when the availability is below this')
    .addOption(outputOption(['table', 'json']))
    .action(async (target: string, opts: ProbeCliOptions) => {
      const m = /^(\d{1,6}(?:\.\d{1,3})?)(?:\/s)?$/.exec(opts.rate);
      if (m === null) throw new UsageError(`--rate ${opts.rate}: expected requests per second, such as 20/s`);
      const min = opts.minAvailability === undefined ? undefined : Number(opts.minAvailability);
      if (min !== undefined && !(min >= 0 && min <= 100)) {
        throw new UsageError(`--min-availability ${opts.minAvailability}: a percentage from 0 to 100`);
      }
      const abort = new AbortController();
      const onSignal = () => abort.abort();
      process.once('SIGINT', onSignal);
      let report: ProbeReport;
      try {
        report = await runProbe({
          via: opts.via as ProbeVia,
          target,
          ratePerSec: Number(m[1]),
          durationMs: usage(() => parseDuration(opts.duration, '--duration')),
          protocol: opts.protocol as 'http' | 'tcp',
          path: opts.path,
          timeoutMs: usage(() => parseDuration(opts.timeout, '--timeout')),
          dnsServer: opts.dnsServer,
          dnsCache: opts.dnsCache as 'always' | 'ttl',
          signal: abort.signal,
        }).catch((e: unknown) => {
          if (e instanceof VipdipError) throw new UsageError(e.detail);
          throw e;
        });
      } finally {
        process.removeListener('SIGINT', onSignal);
      }
      await print(opts.output, report, () => describeProbe(report));
      if (min !== undefined && report.availability * 100 < min) {
        throw new CliError(
          `availability ${(report.availability * 100).toFixed(3)} % is below --min-availability ${min} %`,
        );
      }
    });
}

async function theRunning(c: Client): Promise<ChaosRun> {
  const running = (await c.get<ChaosRun[]>('/v1/chaos')).filter((r) => r.state === 'running');
  if (running.length === 1) return running[0]!;
  throw new UsageError(
    running.length === 0
      ? 'chaos stop: no chaos run is running on this server'
      : `chaos stop: several runs are running (${running.map((r) => r.id).join(', ')}): name one`,
  );
}

const pct = (x: number) => `${(x * 100).toFixed(3)} %`;

export function describeProbe(r: ProbeReport): string {
  const errs = Object.entries(r.errors)
    .sort((a, b) => b[1] - a[1])
    .map(([why, n]) => `${why} ×${n}`)
    .join(', ');
  return (
    `probe via ${r.via} ${r.target} (${r.protocol}${r.address !== null && r.address !== r.target.split(':')[0] ? `, first ${r.address}` : ''}) for ${formatDuration(r.durationMs)}\n` +
    `  requests ${r.requests}, failed ${r.failures}, availability ${pct(r.availability)}\n` +
    `  longest outage ${formatDuration(r.longestOutageMs)} (${r.outages} outage${r.outages === 1 ? '' : 's'}), ` +
    `address changes ${r.addressChanges}, backends seen ${r.backends.length}\n` +
    (errs !== '' ? `  failures: ${errs}\n` : '') +
    table(
      ['MINUTE', 'REQUESTS', 'FAILED', 'AVAILABILITY'],
      r.perMinute.map((b) => [b.minute, b.requests, b.failures, pct(b.availability)]),
    )
  );
}
