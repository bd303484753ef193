/**
 * `vipdip client [--state DIR] -- CMD …`: runs CMD inside the netns driver's internet namespace, the
 * outside world of its cloud, so `vipdip client -- curl http://VIP:8080/` is how a person on the host
 * tries a VIP. The root namespace never gets a route into the world; this enters it instead.
 * `--agent NAME --control URL` enters the world of a standalone `vipdip agent --driver netns` instead
 * (named after that agent's identity: agentWorldPrefix).
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { agentWorldPrefix, worldNames, worldPrefix } from '../dataplane/netns/world.ts';
import { DEFAULT_STATE_DIR } from './client.ts';
import { CliError, UsageError } from './errors.ts';

export function registerNetnsClient(program: Command): void {
  program
    .command('client')
    .description(
      "run a command in the netns driver's internet namespace: vipdip client -- curl http://VIP:PORT/",
    )
    .option(
      '--state <dir>',
      'the state directory of the `vipdip up --driver netns` to enter',
      DEFAULT_STATE_DIR,
    )
    .option('--agent <name>', 'enter the world of the standalone `vipdip agent --driver netns` of this name')
    .option('--control <url>', "with --agent: the agent's control plane (default: VIPDIP_URL)")
    .argument('<command...>', 'the command and its arguments (after --)')
    .action((argv: string[], opts: { state: string; agent?: string; control?: string }) => {
      const control = opts.control ?? process.env.VIPDIP_URL?.trim();
      let prefix: string;
      let which: string;
      if (opts.agent !== undefined) {
        if (control === undefined || control === '')
          throw new UsageError(
            '--agent needs --control URL (or VIPDIP_URL): the control plane the agent follows',
          );
        try {
          prefix = agentWorldPrefix(control, opts.agent);
        } catch {
          throw new UsageError(`--control ${control}: expected an http:// or https:// URL`);
        }
        which = `agent ${opts.agent} of ${control}: is \`vipdip agent --driver netns\` running under that name?`;
      } else {
        if (opts.control !== undefined) throw new UsageError('--control goes with --agent NAME');
        prefix = worldPrefix(resolve(opts.state));
        which = `state ${resolve(opts.state)}: is \`vipdip up --driver netns\` running on it?`;
      }
      if (process.platform !== 'linux') throw new CliError('the netns driver runs on Linux only');
      if (process.getuid?.() !== 0) throw new CliError('entering a network namespace needs root');
      const names = worldNames(prefix);
      const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      if (list.error !== undefined) throw new CliError('ip (iproute2) is missing');
      if (!list.stdout.split('\n').some((l) => l.split(' ')[0] === names.internet)) {
        throw new CliError(`no netns world for ${which}`);
      }
      if (argv.length === 0) throw new UsageError('give a command after --');
      const r = spawnSync('ip', ['netns', 'exec', names.internet, ...argv], { stdio: 'inherit' });
      if (r.error !== undefined) throw new CliError(r.error.message);
      process.exitCode = r.status ?? 1;
    });
}
