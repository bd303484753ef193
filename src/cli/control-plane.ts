/**
 * What `vipdip up` and `vipdip serve` share: their flags, and starting the control plane (state,
 * tokens, the API server and, when asked, DNS) from them. `up` adds the data plane; `serve` is the
 * control plane alone, as run several times over one PostgreSQL.
 */
import { lookup } from 'node:dns/promises';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';
import type { Command } from 'commander';
import { StatusRegistry } from '../agent/index.ts';
import { Tokens, OPERATOR_TOKEN_FILE } from '../api/auth.ts';
import { dashboardBuilt } from '../api/dashboard.ts';
import { buildServer } from '../api/server.ts';
import { ChaosRuns } from '../chaos/index.ts';
import { systemClock } from '../core/clock.ts';
import type { Api } from '../api/context.ts';
import { VipdipError } from '../core/errors.ts';
import { openState, type OpenState, type StateOptions } from '../main.ts';
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
import { packageRoot } from './package-root.ts';

export interface ControlPlaneOptions {
  state: string;
  store?: string;
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
}

export const DEMO_TOPOLOGY = join(packageRoot(), 'examples/demo.yaml');
/** The demo for the netns driver: RFC 1918 DIPs and VIPs from 198.18.0.0/24. */
export const DEMO_TOPOLOGY_NETNS = join(packageRoot(), 'examples/demo-netns.yaml');
/** Where `npm run build:web` (run by npm ci) puts the dashboard. */
export const DASHBOARD_DIR = join(packageRoot(), 'dist/web');

/** What the command that starts the control plane adds to it (`up`: the data plane's needs). */
export interface ControlPlaneExtras {
  /** The driver's check of the address plan, for new pools and VNets (see CloudOptions). */
  checkAddressPlan?: StateOptions['checkAddressPlan'];
  /** Pools created when the state has none (the driver's default). */
  defaultPublicPools?: readonly string[];
  /** Where agents' reports go; one of its own (closed with it) when not given. */
  registry?: StatusRegistry;
  /** Runs once the state is open, before anything is served (a check of the stored plan, say). */
  onOpen?: (state: OpenState) => Promise<void>;
  /** How `--listen` names resolve (the system's resolver unless a test gives its own). */
  lookupAll?: LookupAll;
  /** The topology `--demo` applies (examples/demo.yaml unless the driver needs another plan). */
  demoTopology?: string;
}

/** Parses HOST:PORT (IPv6 as [::1]:PORT); port 0 picks a free one. */
export function parseListen(text: string, flag: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$/.exec(text);
  if (m === null || Number(m[2]) > 65535) {
    throw new VipdipError('INVALID_ARGUMENT', `${flag} ${text}: expected HOST:PORT, such as 127.0.0.1:7480`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

/** Whether an address (not a name) is a loopback one: 127.0.0.0/8, ::1, or 127/8 mapped into IPv6. */
export const isLoopbackAddress = (a: string): boolean =>
  isIP(a) === 4
    ? a.startsWith('127.')
    : isIP(a) === 6 && (['::1', '0:0:0:0:0:0:0:1'].includes(a.toLowerCase()) || /^::ffff:127\./i.test(a));

export type LookupAll = (host: string) => Promise<string[]>;
const lookupAll: LookupAll = async (host) => (await lookup(host, { all: true })).map((a) => a.address);

/**
 * The addresses `--listen` names, and whether every one of them is loopback. Decided on the resolved
 * addresses, never on the text: `127.attacker.example` is a name like any other.
 */
export async function listenAddresses(
  host: string,
  resolveAll: LookupAll = lookupAll,
): Promise<{ addresses: string[]; loopback: boolean }> {
  let addresses: string[];
  try {
    addresses = isIP(host) !== 0 ? [host] : await resolveAll(host);
  } catch (e) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `--listen ${host}: the name does not resolve (${(e as NodeJS.ErrnoException).code ?? 'lookup failed'})`,
    );
  }
  return { addresses, loopback: addresses.length > 0 && addresses.every(isLoopbackAddress) };
}

/** The flags of the control plane, with `--dns` defaulting to `dns` (`off` for none). */
export function controlPlaneFlags(cmd: Command, defaults: { dns: string }): Command {
  return cmd
    .option('--state <dir>', 'state directory', '.vipdip')
    .option(
      '--store <url>',
      'store: sqlite:PATH, PATH or postgres://USER@HOST:PORT/DB (default: VIPDIP_STORE, else SQLite in the state directory)',
    )
    .option('--listen <host:port>', 'API and dashboard address', '127.0.0.1:7480')
    .option('--dns <host:port>', 'DNS server address, or off', defaults.dns)
    .option('--demo', 'apply the demo topology')
    .option('--seed <n>', 'seed of the random source, to reproduce a run')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this key (PEM)')
    .option('--insecure-http', 'allow plain HTTP on a non-loopback address')
    .option('--public-zone <name>', 'DNS zone of the VIPs and ILPIPs', DEFAULT_PUBLIC_ZONE)
    .option('--internal-zone <name>', 'DNS zone of the DIPs', DEFAULT_INTERNAL_ZONE)
    .option('--dns-ttl <seconds>', 'TTL of the DNS answers', String(DEFAULT_TTL_SECONDS));
}

export interface ControlPlane {
  state: OpenState;
  app: Api;
  url: string;
  dns: DnsServer | undefined;
  publicZone: string;
  /** The chaos runs this process owns (`up` gives them its agent's way to crash workloads). */
  chaos: ChaosRuns;
  /** The lines `up` and `serve` print about the state, the services and DNS. */
  banner(): Promise<string>;
  /** Stops DNS and the server (in-flight requests finish), then closes the state. */
  close(): Promise<void>;
}

/** Validates the flags, opens the state and starts the API server and DNS. */
export async function startControlPlane(
  opts: ControlPlaneOptions,
  extras: ControlPlaneExtras = {},
): Promise<ControlPlane> {
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
    throw new VipdipError('INVALID_ARGUMENT', `--dns-ttl ${opts.dnsTtl}: must be a whole number of seconds`);
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
      : { cert: readPem('--tls-cert', opts.tlsCert), key: readPem('--tls-key', opts.tlsKey!) };
  const resolved = await listenAddresses(listen.host, extras.lookupAll);
  if (!resolved.loopback && tls === undefined && opts.insecureHttp !== true) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `--listen ${opts.listen} is not a loopback address: give --tls-cert and --tls-key, or --insecure-http to send tokens in clear` +
        (isIP(listen.host) === 0 ? ` (${listen.host} resolves to ${resolved.addresses.join(', ')})` : ''),
    );
  }

  const state = await openState({
    stateDir: opts.state,
    ...(opts.store ? { store: opts.store } : {}),
    ...(seed !== undefined ? { seed } : {}),
    publicZone: zones.publicZone,
    internalZone: zones.internalZone,
    ...(extras.defaultPublicPools ? { defaultPublicPools: extras.defaultPublicPools } : {}),
    ...(extras.checkAddressPlan ? { checkAddressPlan: extras.checkAddressPlan } : {}),
  });
  let app: Api | undefined;
  let dnsServer: DnsServer | undefined;
  const registry = extras.registry ?? new StatusRegistry(systemClock);
  const closeRegistry = () => {
    if (extras.registry === undefined) registry.close();
  };
  try {
    await extras.onOpen?.(state);
    const tokens = new Tokens(state.store);
    const tokenFile = join(state.tokenDir, OPERATOR_TOKEN_FILE);
    if (await tokens.ensureOperatorToken(tokenFile)) {
      process.stdout.write(`created the operator token in ${tokenFile} (mode 0600)\n`);
    }
    if (opts.demo === true) {
      const r = await applyTopology(
        state.cloud,
        parseTopology(readFileSync(extras.demoTopology ?? DEMO_TOPOLOGY, 'utf8')),
        {
          operator: true,
        },
      );
      process.stdout.write(`demo topology applied: ${r.changes.length} changes\n`);
    }
    const chaos = new ChaosRuns({
      cloud: state.cloud,
      clock: systemClock,
      onError: (e) => process.stderr.write(`vipdip: chaos: ${(e as Error).message}\n`),
    });
    app = await buildServer({
      cloud: state.cloud,
      chaos,
      tokens,
      dashboard: { dir: DASHBOARD_DIR },
      registry,
      ...(tls ? { https: tls } : {}),
      onInternalError: (e) =>
        process.stderr.write(
          `vipdip: internal error: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`,
        ),
    });
    // A name is served on the address it was checked with, not looked up again (a second answer
    // could differ); `localhost` keeps Fastify's own handling (both 127.0.0.1 and ::1).
    const host =
      isIP(listen.host) !== 0 || listen.host === 'localhost' ? listen.host : resolved.addresses[0]!;
    const url = await app.listen({ host, port: listen.port });
    if (dns !== undefined) {
      try {
        dnsServer = await startDnsServer({
          cloud: state.cloud,
          host: dns.host,
          port: dns.port,
          publicZone: zones.publicZone,
          internalZone: zones.internalZone,
          ttlSeconds: zones.ttlSeconds,
        });
      } catch (e) {
        throw new VipdipError('INVALID_ARGUMENT', `--dns ${opts.dns}: ${(e as Error).message}`);
      }
    }
    const server = app;
    return {
      state,
      app: server,
      url,
      dns: dnsServer,
      publicZone: zones.publicZone,
      chaos,
      banner: async () => {
        const services = await state.cloud.listServices();
        return (
          services.map((s) => `  ${s.name.padEnd(12)} VIP ${s.vip ?? '(none)'}  ${s.dnsName}\n`).join('') +
          (dashboardBuilt(DASHBOARD_DIR)
            ? `  dashboard: open ${url}/ and sign in with the operator token (${tokenFile})\n`
            : `  dashboard: not built (run npm run build:web, which npm ci runs); ${url}/ says so\n`) +
          (dnsServer !== undefined
            ? `  DNS on ${dnsServer.address}:${dnsServer.port} (UDP and TCP): try dig @${dnsServer.address} -p ${dnsServer.port} ${services[0] ? serviceFqdn(services[0].name, zones.publicZone) : `ns.${zones.internalZone}`}\n`
            : '  DNS off\n')
        );
      },
      close: async () => {
        await dnsServer?.close();
        await server.close();
        closeRegistry();
        await state.close();
      },
    };
  } catch (e) {
    await dnsServer?.close();
    await app?.close();
    closeRegistry();
    await state.close();
    throw e;
  }
}

/** A PEM file named by a flag; an unreadable one is a bad argument that names the flag. */
function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (e as Error).message;
    throw new VipdipError('INVALID_ARGUMENT', `${flag} ${path}: ${why}`);
  }
}

/** Resolves on the first SIGINT or SIGTERM. */
export function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
}
