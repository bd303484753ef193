/**
 * `vipdip client [--state DIR] -- CMD …`: runs CMD inside the netns driver's internet namespace, the
 * outside world of its cloud, so `vipdip client -- curl http://VIP:8080/` is how a person on the host
 * tries a VIP. The root namespace never gets a route into the world; this enters it instead.
 */
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { worldNames, worldPrefix } from '../dataplane/netns/world.ts';
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
    .argument('<command...>', 'the command and its arguments (after --)')
    .action((argv: string[], opts: { state: string }) => {
      if (process.platform !== 'linux') throw new CliError('the netns driver runs on Linux only');
      if (process.getuid?.() !== 0) throw new CliError('entering a network namespace needs root');
      const names = worldNames(worldPrefix(resolve(opts.state)));
      const list = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      if (list.error !== undefined) throw new CliError('ip (iproute2) is missing');
      if (!list.stdout.split('\n').some((l) => l.split(' ')[0] === names.internet)) {
        throw new CliError(
          `no netns world for state ${resolve(opts.state)}: is \`vipdip up --driver netns\` running on it?`,
        );
      }
      if (argv.length === 0) throw new UsageError('give a command after --');
      const r = spawnSync('ip', ['netns', 'exec', names.internet, ...argv], { stdio: 'inherit' });
      if (r.error !== undefined) throw new CliError(r.error.message);
      process.exitCode = r.status ?? 1;
    });
}
