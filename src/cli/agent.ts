/**
 * `vipdip agent --control URL [--host NAME]... [--no-lb]`: the data plane of some hosts, in a process
 * of its own. It follows the control plane over the API (snapshots, and the event stream for
 * changes), runs the workloads of the VMs placed on its hosts (every host without --host), runs the
 * load balancer for every VIP and ILPIP unless --no-lb, and reports health and workloads back with
 * the operator token. On one machine only one agent can run the load balancer of the local driver
 * (the listeners bind the VIPs); the others take --no-lb.
 *
 * With `--driver netns` (Linux, root) its VMs are real hosts in a netns world of its own, built from
 * the VNets the API lists: the world's prefix is the agent's identity (agentWorldPrefix of the
 * control URL and --name), so `vipdip client --agent NAME --control URL -- CMD` enters it, and a
 * restart of the same agent removes what a killed one left behind.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import {
  Agent,
  AGENT_HEARTBEAT_MS,
  defaultSandboxRoot,
  RemoteSource,
  sandboxLimits,
} from '../agent/index.ts';
import { agentWorldPrefix, createDriver, NetnsDriver } from '../dataplane/index.ts';
import { scaledTime } from '../lb/index.ts';
import { DEFAULT_INTERNAL_ZONE } from '../lifecycle/index.ts';
import { resolveConnection } from './client.ts';
import { parseListen } from './control-plane.ts';
import { CliError, UsageError } from './errors.ts';
import { parseTimeScale, VIPDIP_BIN } from './up-options.ts';

interface AgentCliOptions {
  control: string;
  host: string[];
  name?: string;
  driver: string;
  lb: boolean;
  state?: string;
  timeScale: string;
  dns?: string;
  internalZone: string;
}

const collect = (v: string, prev: string[]) => [...prev, v];

export function registerAgent(program: Command): void {
  program
    .command('agent')
    .description('run the data plane of some hosts (or all) against a control plane, until SIGINT or SIGTERM')
    .requiredOption('--control <url>', "the control plane's API, such as http://127.0.0.1:7480")
    .option(
      '--host <name>',
      'serve the VMs of this host (repeat for several; default: every host)',
      collect,
      [],
    )
    .option('--name <name>', 'the name this agent reports under (default: the machine name and its hosts)')
    .option('--driver <name>', 'data-plane driver: local, netns or none', 'local')
    .option('--no-lb', 'run workloads only, not the load balancer (listeners and probes)')
    .option('--state <dir>', 'a state directory whose operator.token to use without VIPDIP_TOKEN')
    .option('--time-scale <factor>', 'run probe, idle and report intervals this many times real time', '1')
    .option(
      '--dns <host:port>',
      "with --driver netns: answer DNS in the world, relayed to this server (the control plane's --dns)",
    )
    .option('--internal-zone <name>', "with --dns: the VMs' search domain", DEFAULT_INTERNAL_ZONE)
    .action(async (opts: AgentCliOptions) => {
      const scale = parseTimeScale(opts.timeScale);
      let url: URL;
      try {
        url = new URL(opts.control);
        if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error();
      } catch {
        throw new UsageError(`--control ${opts.control}: expected an http:// or https:// URL`);
      }
      const conn = resolveConnection(opts.state === undefined ? {} : { state: opts.state }, {
        ...process.env,
        VIPDIP_URL: url.toString(),
      });
      const name = (
        opts.name ?? `${hostname()}${opts.host.length > 0 ? `-${opts.host.join('+')}` : ''}`
      ).slice(0, 64);
      if (!/^[A-Za-z0-9][A-Za-z0-9._+-]*$/.test(name)) {
        throw new UsageError(`--name ${name}: letters, digits, '.', '_', '+' and '-' only`);
      }
      const time = scaledTime(scale);
      const netns = opts.driver === 'netns';
      if (netns && (!opts.lb || opts.host.length > 0)) {
        // A world is one machine's whole cloud: its VIPs lead to every VM's namespace in it, and two
        // agents' worlds never meet, so a VM whose workload another agent ran would answer nothing.
        throw new UsageError(
          `--driver netns ${opts.lb ? '--host' : '--no-lb'}: a netns agent runs a whole world of its own, every host and the load balancer`,
        );
      }
      if (opts.dns !== undefined && !netns) throw new UsageError('--dns goes with --driver netns');
      let dns: { host: string; port: number } | undefined;
      try {
        dns = opts.dns === undefined ? undefined : parseListen(opts.dns, '--dns');
      } catch {
        throw new UsageError(`--dns ${opts.dns}: expected HOST:PORT, such as 127.0.0.1:5353`);
      }
      if (dns?.port === 0) throw new UsageError(`--dns ${opts.dns}: the DNS server's port, not 0`);
      const driver = createDriver(opts.driver, {
        time,
        prefix: agentWorldPrefix(conn.url, name),
        // The prober runs inside the netns world: the built-in prober of this same vipdip.
        proberCommand: { command: process.execPath, args: [VIPDIP_BIN, 'workload', 'netns-prober'] },
      });
      const source = new RemoteSource({
        url: conn.url,
        token: conn.token,
        agent: name,
        log: (l) => process.stderr.write(`vipdip agent ${name}: ${l}\n`),
      });
      // Hosts are checked against the fabric first: a typo must not make an agent that serves nothing.
      const res = await fetch(`${conn.url}/v1/hosts`, {
        headers: { authorization: `Bearer ${conn.token}` },
      }).catch((e: unknown) => {
        throw new CliError(`cannot connect to ${conn.url}: ${(e as Error).message}`);
      });
      if (res.status === 401 || res.status === 403) {
        throw new CliError(
          `${conn.url} refused the token from ${conn.tokenSource}: an agent needs the operator token`,
        );
      }
      if (!res.ok) throw new CliError(`${conn.url}/v1/hosts answered HTTP ${res.status}`);
      const known = new Set(((await res.json()) as { name: string }[]).map((h) => h.name));
      const unknown = opts.host.filter((h) => !known.has(h));
      if (unknown.length > 0) {
        throw new UsageError(`--host ${unknown.join(', ')}: no such host (hosts: ${[...known].join(', ')})`);
      }
      const agent = new Agent({
        name,
        source,
        driver,
        time,
        scope: { hosts: opts.host.length > 0 ? new Set(opts.host) : null, lb: opts.lb },
        vipdipBin: VIPDIP_BIN,
        heartbeatMs: Math.max(50, AGENT_HEARTBEAT_MS * scale),
        sandbox: {
          root: defaultSandboxRoot(`${conn.url} ${name}`),
          limits: sandboxLimits(process.env),
          log: (l) => process.stderr.write(`vipdip agent ${name}: ${l}\n`),
        },
      });
      if (dns !== undefined && driver instanceof NetnsDriver) {
        // The world's gateways answer DNS for its VMs, relayed to the control plane's server.
        try {
          await driver.serveDns({ address: dns.host, port: dns.port, searchZone: opts.internalZone });
        } catch (e) {
          await driver.close();
          throw e;
        }
      }
      await agent.start();
      process.stdout.write(
        `vipdip agent ${name} is up: control plane ${conn.url}, driver ${driver.name}, ` +
          `${opts.host.length > 0 ? `hosts ${opts.host.join(', ')}` : 'every host'}, ` +
          `load balancer ${opts.lb ? `on (${driver.status().listeners.length} listeners)` : 'off'}\n` +
          (driver instanceof NetnsDriver
            ? `  netns world ${driver.names.world}; try a VIP with ` +
              `vipdip client --agent ${name} --control ${conn.url} -- curl http://VIP:PORT/\n`
            : '') +
          '  Ctrl-C stops it\n',
      );
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
      await agent.stop();
      process.stdout.write(`vipdip agent ${name} stopped\n`);
    });
}
