import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { Tokens, OPERATOR_TOKEN_FILE } from '../api/auth.ts';
import { dashboardBuilt } from '../api/dashboard.ts';
import { buildServer } from '../api/server.ts';
import { VipdipError } from '../core/errors.ts';
import { openState } from '../main.ts';
import {
  DEFAULT_INTERNAL_ZONE,
  DEFAULT_PUBLIC_ZONE,
  DEFAULT_TTL_SECONDS,
  checkZoneConfig,
  serviceFqdn,
  startDnsServer,
  type DnsServer,
} from '../dns/index.ts';
import { applyTopology, parseTopology } from '../topology/index.ts';
import {
  Agent,
  AGENT_HEARTBEAT_MS,
  InProcessSource,
  REPORT_STALE_MS,
  StatusRegistry,
} from '../agent/index.ts';
import { systemClock, parseCidr } from '../core/index.ts';
import { createDriver, type DataPlaneDriver } from '../dataplane/index.ts';
import { scaledTime } from '../lb/index.ts';
import type { Cloud } from '../lifecycle/index.ts';
import { DEFAULT_LOCAL_POOL } from '../main.ts';
import { parseTimeScale, VIPDIP_BIN } from './up-options.ts';

interface UpOptions {
  state: string;
  store?: string;
  driver: string;
  listen: string;
  dns: string;
  demo?: boolean;
  seed?: string;
  tlsCert?: string;
  tlsKey?: string;
  insecureHttp?: boolean;
  publicZone: string;
  internalZone: string;
  dnsTtl: string;
  publicPool: string;
  timeScale: string;
}

export { VIPDIP_BIN };

/**
 * Refuses to start a traffic-carrying driver on a stored address plan it cannot carry (a state made
 * with --driver none, say): every VNet address space and public pool must pass the driver's check.
 */
async function checkStoredPlan(cloud: Cloud, driver: DataPlaneDriver): Promise<void> {
  for (const p of await cloud.listPools())
    driver.checkAddressPlan(parseCidr(p.cidr), `public pool ${p.cidr}`);
  for (const v of await cloud.listVnets()) {
    for (const c of v.addressSpace) {
      driver.checkAddressPlan(parseCidr(c), `virtual network ${v.name} of subscription ${v.subscription}`);
    }
  }
}

/** Lines that tell a person what to try: one curl per TCP endpoint of every service with a VIP. */
async function tryLines(cloud: Cloud): Promise<string> {
  const [services, vms] = await Promise.all([cloud.listServices(), cloud.listVms()]);
  const lines: string[] = [];
  for (const s of services) {
    if (s.vip === null) continue;
    const ports = new Map<number, string[]>();
    for (const vm of vms) {
      if (vm.service !== s.name) continue;
      for (const e of vm.endpoints) {
        if (e.protocol !== 'tcp') continue;
        ports.set(e.publicPort, [...(ports.get(e.publicPort) ?? []), vm.name]);
      }
    }
    for (const [port, members] of [...ports].sort((a, b) => a[0] - b[0])) {
      lines.push(`  try: curl http://${s.vip}:${port}/   (${s.name}: ${members.join(', ')})\n`);
    }
  }
  return lines.join('');
}

export const DEMO_TOPOLOGY = join(dirname(fileURLToPath(import.meta.url)), '../../examples/demo.yaml');
/** Where `npm run build:web` (run by npm ci) puts the dashboard. */
export const DASHBOARD_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../dist/web');

/** Parses HOST:PORT (IPv6 as [::1]:PORT); port 0 picks a free one. */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  if (m === null || Number(m[2]) > 65535) {
    throw new VipdipError('INVALID_ARGUMENT', `${flag} ${text}: expected HOST:PORT, such as 127.0.0.1:7480`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

const isLoopback = (host: string) => host === 'localhost' || host === '::1' || /^127\./.test(host);

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('run the whole cloud in one process until SIGINT or SIGTERM')
    .option('--state <dir>', 'state directory', '.vipdip')
    .option('--store <url>', 'store URL (default: SQLite in the state directory)')
    .option('--driver <name>', 'data-plane driver: none, local or netns', 'local')
    .option('--listen <host:port>', 'API and dashboard address', '127.0.0.1:7480')
    .option('--dns <host:port>', 'DNS server address, or off', '127.0.0.1:5353')
    .option('--demo', 'apply the demo topology')
    .option('--seed <n>', 'seed of the random source, to reproduce a run')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this key (PEM)')
    .option('--insecure-http', 'allow plain HTTP on a non-loopback address')
    .option('--public-zone <name>', 'DNS zone of the VIPs and ILPIPs', DEFAULT_PUBLIC_ZONE)
    .option('--internal-zone <name>', 'DNS zone of the DIPs', DEFAULT_INTERNAL_ZONE)
    .option('--dns-ttl <seconds>', 'TTL of the DNS answers', String(DEFAULT_TTL_SECONDS))
    .option('--public-pool <cidr>', 'public pool to create when the state has none', DEFAULT_LOCAL_POOL)
    .option(
      '--time-scale <factor>',
      'run probe intervals, probe and idle timeouts this many times real time (tests and demos; 1 = real)',
      '1',
    )
    .action(async (opts: UpOptions) => {
      const timeScale = parseTimeScale(opts.timeScale);
      const time = scaledTime(timeScale);
      // The driver first: an unknown or unavailable one (netns) fails before anything is opened.
      const driver = createDriver(opts.driver, { time });
      parseCidr(opts.publicPool);
      let seed: number | undefined;
      if (opts.seed !== undefined) {
        if (!/^\d{1,10}$/.test(opts.seed) || Number(opts.seed) > 0xffffffff) {
          throw new VipdipError(
            'INVALID_ARGUMENT',
            `--seed ${opts.seed}: must be an integer from 0 to 4294967295`,
          );
        }
        seed = Number(opts.seed);
      }
      const listen = parseListen(opts.listen, '--listen');
      const dns = opts.dns === 'off' ? undefined : parseListen(opts.dns, '--dns');
      if (!/^\d{1,5}$/.test(opts.dnsTtl)) {
        throw new VipdipError(
          'INVALID_ARGUMENT',
          `--dns-ttl ${opts.dnsTtl}: must be a whole number of seconds`,
        );
      }
      const zones = checkZoneConfig({
        publicZone: opts.publicZone,
        internalZone: opts.internalZone,
        ttlSeconds: Number(opts.dnsTtl),
        nsAddress: null,
      });
      if ((opts.tlsCert === undefined) !== (opts.tlsKey === undefined)) {
        throw new VipdipError('INVALID_ARGUMENT', '--tls-cert and --tls-key go together');
      }
      const tls =
        opts.tlsCert === undefined
          ? undefined
          : { cert: readFileSync(opts.tlsCert), key: readFileSync(opts.tlsKey!) };
      if (!isLoopback(listen.host) && tls === undefined && opts.insecureHttp !== true) {
        throw new VipdipError(
          'INVALID_ARGUMENT',
          `--listen ${opts.listen} is not a loopback address: give --tls-cert and --tls-key, or --insecure-http to send tokens in clear`,
        );
      }

      const state = await openState({
        stateDir: opts.state,
        ...(opts.store ? { store: opts.store } : {}),
        ...(seed !== undefined ? { seed } : {}),
        publicZone: zones.publicZone,
        internalZone: zones.internalZone,
        defaultPublicPools: [opts.publicPool],
        checkAddressPlan: (cidr, what) => driver.checkAddressPlan(cidr, what),
      });
      try {
        await checkStoredPlan(state.cloud, driver);
      } catch (e) {
        await state.close();
        throw e;
      }
      const tokens = new Tokens(state.store);
      const tokenFile = join(dirname(state.dbPath), OPERATOR_TOKEN_FILE);
      if (await tokens.ensureOperatorToken(tokenFile)) {
        process.stdout.write(`created the operator token in ${tokenFile} (mode 0600)\n`);
      }
      if (opts.demo === true) {
        const r = await applyTopology(state.cloud, parseTopology(readFileSync(DEMO_TOPOLOGY, 'utf8')), {
          operator: true,
        });
        process.stdout.write(`demo topology applied: ${r.changes.length} changes\n`);
      }
      // Agents report every few seconds; at a time scale, as much faster as everything else.
      const registry = new StatusRegistry(systemClock, Math.max(150, REPORT_STALE_MS * timeScale));
      const app = await buildServer({
        cloud: state.cloud,
        tokens,
        dashboard: { dir: DASHBOARD_DIR },
        registry,
        ...(tls ? { https: tls } : {}),
        onInternalError: (e) =>
          process.stderr.write(
            `vipdip: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
          ),
      });
      const url = await app.listen({ host: listen.host, port: listen.port });
      let dnsServer: DnsServer | undefined;
      try {
        if (dns !== undefined) {
          dnsServer = await startDnsServer({
            cloud: state.cloud,
            host: dns.host,
            port: dns.port,
            publicZone: zones.publicZone,
            internalZone: zones.internalZone,
            ttlSeconds: zones.ttlSeconds,
          });
        }
      } catch (e) {
        await app.close();
        await state.close();
        throw new VipdipError('INVALID_ARGUMENT', `--dns ${opts.dns}: ${(e as Error).message}`);
      }
      // One agent serves every host: the load balancer, the probes and every workload, in this process.
      let agent: Agent | undefined;
      if (driver.carriesTraffic) {
        agent = new Agent({
          name: 'up',
          source: new InProcessSource(state.cloud, registry),
          driver,
          time,
          scope: { hosts: null, lb: true },
          vipdipBin: VIPDIP_BIN,
          heartbeatMs: Math.max(50, AGENT_HEARTBEAT_MS * timeScale),
        });
        await agent.start();
      }
      const services = await state.cloud.listServices();
      process.stdout.write(
        `vipdip is up: API and dashboard on ${url}, state ${state.dbPath}, seed ${state.seed}\n` +
          services.map((s) => `  ${s.name.padEnd(12)} VIP ${s.vip ?? '(none)'}  ${s.dnsName}\n`).join('') +
          (dashboardBuilt(DASHBOARD_DIR)
            ? `  dashboard: open ${url}/ and sign in with the operator token (${tokenFile})\n`
            : `  dashboard: not built (run npm run build:web, which npm ci runs); ${url}/ says so\n`) +
          (driver.carriesTraffic
            ? `  driver ${driver.name}: ${driver.status().listeners.length} listeners on loopback` +
              (timeScale !== 1 ? `, time at ${timeScale} × real` : '') +
              '\n' +
              (await tryLines(state.cloud))
            : `  driver ${driver.name}: control plane only, addresses carry no traffic\n`) +
          (dnsServer !== undefined
            ? `  DNS on ${dnsServer.address}:${dnsServer.port} (UDP and TCP): try dig @${dnsServer.address} -p ${dnsServer.port} ${services[0] ? serviceFqdn(services[0].name, zones.publicZone) : `ns.${zones.internalZone}`}\n`
            : '  DNS off\n') +
          '  Ctrl-C stops it\n',
      );
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      // Workloads and listeners first (a workload gets SIGTERM, then SIGKILL after a grace period),
      // then in-flight requests finish before the store closes.
      await agent?.stop();
      registry.close();
      await dnsServer?.close();
      await app.close();
      await state.close();
      process.stdout.write('vipdip stopped; state closed cleanly\n');
    });
}
