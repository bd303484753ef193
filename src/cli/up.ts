/**
 * `vipdip up`: the whole cloud in one process — the control plane that `vipdip serve` runs, plus one
 * data-plane agent serving every host (the load balancer, the probes and every workload).
 */
import { chmodSync, existsSync, mkdirSync, rmdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import {
  Agent,
  AGENT_HEARTBEAT_MS,
  defaultSandboxRoot,
  InProcessSource,
  REPORT_STALE_MS,
  sandboxLimits,
  StatusRegistry,
} from '../agent/index.ts';
import { parseCidr, systemClock } from '../core/index.ts';
import { NetnsDriver, createDriver, type DataPlaneDriver } from '../dataplane/index.ts';
import { scaledTime } from '../lb/index.ts';
import type { Cloud } from '../lifecycle/index.ts';
import { DEFAULT_LOCAL_POOL, DEFAULT_STATE_DIR } from '../main.ts';
import {
  DEMO_TOPOLOGY_NETNS,
  controlPlaneFlags,
  startControlPlane,
  untilSignal,
  type ControlPlaneOptions,
} from './control-plane.ts';
import { packageVersion } from './package-root.ts';
import { acquireUpLock, type UpLock } from './up-lock.ts';
import { parseTimeScale, VIPDIP_BIN } from './up-options.ts';

interface UpOptions extends ControlPlaneOptions {
  driver: string;
  publicPool?: string;
  timeScale: string;
}

/** The netns driver's default public pool: the benchmarking range, which no real network routes. */
export const DEFAULT_NETNS_POOL = '198.18.0.0/24';

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

/**
 * Lines that tell a person what to try: one curl per TCP endpoint of every service with a VIP; for
 * the netns driver, run inside the internet namespace by `vipdip client`.
 */
async function tryLines(cloud: Cloud, via = ''): Promise<string> {
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
      lines.push(`  try: ${via}curl http://${s.vip}:${port}/   (${s.name}: ${members.join(', ')})\n`);
    }
  }
  return lines.join('');
}

/** `HOST:PORT`, with an IPv6 host in brackets. */
const hostPort = (host: string, port: number) =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;

/**
 * Takes the lock of the state directory (creating the directory, mode 0700, as opening the state
 * would), so that a second `up` of the same state is refused before it opens anything.
 */
function lockState(stateDir: string): UpLock {
  const dir = resolve(stateDir);
  const created = !existsSync(dir);
  if (created) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  const lock = acquireUpLock(dir, { startedAt: new Date().toISOString(), version: packageVersion() });
  return {
    path: lock.path,
    update: (more) => lock.update(more),
    release: () => {
      lock.release();
      // A start refused before the state was opened (a bad --listen, say) leaves no empty directory.
      if (created) {
        try {
          rmdirSync(dir);
        } catch {
          // Not empty: the state was made, and stays.
        }
      }
    },
  };
}

export function registerUp(program: Command): void {
  controlPlaneFlags(
    program
      .command('up')
      .description('run the whole cloud in one process until SIGINT or SIGTERM')
      .option('--driver <name>', 'data-plane driver: none, local or netns', 'local')
      .option(
        '--public-pool <cidr>',
        `public pool to create when the state has none (default ${DEFAULT_LOCAL_POOL}, ${DEFAULT_NETNS_POOL} for netns)`,
      )
      .option(
        '--time-scale <factor>',
        'run probe intervals, probe and idle timeouts this many times real time (tests and demos; 1 = real)',
        '1',
      ),
    { dns: '127.0.0.1:5353' },
  ).action(async (opts: UpOptions) => {
    const timeScale = parseTimeScale(opts.timeScale);
    const time = scaledTime(timeScale);
    // The driver first: an unknown or unavailable one (netns) fails before anything is opened.
    const netns = opts.driver === 'netns';
    const driver = createDriver(opts.driver, {
      time,
      stateDir: resolve(opts.state ?? DEFAULT_STATE_DIR),
      // The prober runs inside the netns world: the built-in prober of this same vipdip.
      proberCommand: { command: process.execPath, args: [VIPDIP_BIN, 'workload', 'netns-prober'] },
    });
    const publicPool = opts.publicPool ?? (netns ? DEFAULT_NETNS_POOL : DEFAULT_LOCAL_POOL);
    parseCidr(publicPool);
    // Listening from the start: a SIGTERM (vipdip down) while starting stops it as soon as it is up.
    const stop = untilSignal();
    const lock = lockState(opts.state);
    // Agents report every few seconds; at a time scale, as much faster as everything else.
    const registry = new StatusRegistry(systemClock, Math.max(150, REPORT_STALE_MS * timeScale));
    let cp: Awaited<ReturnType<typeof startControlPlane>>;
    try {
      cp = await startControlPlane(opts, {
        defaultPublicPools: [publicPool],
        ...(netns ? { demoTopology: DEMO_TOPOLOGY_NETNS } : {}),
        checkAddressPlan: (cidr, what) => driver.checkAddressPlan(cidr, what),
        registry,
        onOpen: (state) => checkStoredPlan(state.cloud, driver),
      });
    } catch (e) {
      registry.close();
      lock.release();
      throw e;
    }
    // One agent serves every host: the load balancer, the probes and every workload, in this process.
    let agent: Agent | undefined;
    try {
      // The netns world answers DNS too (on its gateways), relayed to this DNS server; VMs resolve through it.
      if (driver instanceof NetnsDriver && cp.dns !== undefined) {
        await driver.serveDns({ address: cp.dns.address, port: cp.dns.port, searchZone: opts.internalZone });
      }
      if (driver.carriesTraffic) {
        agent = new Agent({
          name: 'up',
          source: new InProcessSource(cp.state.cloud, registry),
          driver,
          time,
          scope: { hosts: null, lb: true },
          vipdipBin: VIPDIP_BIN,
          heartbeatMs: Math.max(50, AGENT_HEARTBEAT_MS * timeScale),
          sandbox: {
            root: defaultSandboxRoot(resolve(opts.state)),
            limits: sandboxLimits(process.env),
            log: (l) => process.stderr.write(`vipdip: ${l}\n`),
          },
        });
        await agent.start();
        const running = agent;
        cp.chaos.crashWith((t) => running.crashWorkload(t.service, t.vm));
      }
    } catch (e) {
      await agent?.stop();
      registry.close();
      await cp.close();
      lock.release();
      throw e;
    }
    lock.update({
      api: cp.url,
      dns: cp.dns === undefined ? null : hostPort(cp.dns.address, cp.dns.port),
      driver: driver.name,
      store: cp.state.location,
    });
    process.stdout.write(
      `vipdip is up: API and dashboard on ${cp.url}, state ${cp.state.location}, seed ${cp.state.seed}\n` +
        (await cp.banner()) +
        (driver.carriesTraffic
          ? `  driver ${driver.name}: ${driver.status().listeners.length} ` +
            (netns ? 'VIP endpoints in the world namespace (nftables)' : 'listeners on loopback') +
            (timeScale !== 1 ? `, time at ${timeScale} × real` : '') +
            '\n' +
            (await tryLines(
              cp.state.cloud,
              netns ? `vipdip client${opts.state !== undefined ? ` --state ${opts.state}` : ''} -- ` : '',
            ))
          : `  driver ${driver.name}: control plane only, addresses carry no traffic\n`) +
        '  Ctrl-C stops it\n',
    );
    await stop;
    // Workloads and listeners first (a workload gets SIGTERM, then SIGKILL after a grace period),
    // then in-flight requests finish before the store closes; the lock goes last, which tells
    // `vipdip down` that the state is closed.
    try {
      await agent?.stop();
      registry.close();
      await cp.close();
    } finally {
      lock.release();
    }
    process.stdout.write('vipdip stopped; state closed cleanly\n');
  });
}
