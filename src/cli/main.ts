/**
 * The `vipdip` command. Each verb lives in its own file; this one parses, dispatches, and turns any
 * failure into one line on stderr and a non-zero exit (a stack trace only with --debug): 2 for a
 * command line that cannot be right, 1 for everything else.
 */
import { Command, CommanderError } from 'commander';
import { isVipdipError } from '../core/errors.ts';
import { registerApply } from './apply.ts';
import { registerChaos } from './chaos.ts';
import { ApiProblemError, CliError, oneLine, UsageError } from './errors.ts';
import { registerEvents } from './events.ts';
import { registerGet } from './get.ts';
import { registerHost } from './host.ts';
import { registerLogs } from './logs.ts';
import { quietOnClosedPipe } from './output.ts';
import { registerReservedIp } from './reserved-ip.ts';
import { registerService } from './service.ts';
import { registerSubscription } from './subscription.ts';
import { registerToken } from './token.ts';
import { registerVm } from './vm.ts';

export { UsageError };

/** The verbs that talk to a server over HTTP and need nothing of the control plane's code. */
const CLIENT_VERBS = new Set([
  'apply',
  'get',
  'vm',
  'host',
  'reserved-ip',
  'events',
  'token',
  'subscription',
  'service',
  'logs',
  'chaos',
]);

/**
 * Builds the program. `up`, `serve` and `fsck` carry the whole control plane (store, server), which takes
 * seconds to load, so they are registered only when the command line may need them: for a client
 * verb a CLI call costs a process start, not the server's code.
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('vipdip')
    .description('the cloud VIP/DIP address model: control plane, data plane, DNS, API and dashboard')
    .option('--debug', 'print stack traces of failures')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // Commander's parse errors in the same one-line form as every other failure.
      outputError: (s, write) => write(s.replace(/^error: /, 'vipdip: ')),
    });
  const verb = argv.slice(2).find((a) => !a.startsWith('-'));
  // The agent needs the data plane's code but none of the control plane's (store, server).
  if (verb === 'agent' || verb === undefined) {
    const { registerAgent } = await import('./agent.ts');
    registerAgent(program);
  }
  if (verb === undefined || (!CLIENT_VERBS.has(verb) && verb !== 'agent')) {
    const [{ registerUp }, { registerServe }, { registerFsck }] = await Promise.all([
      import('./up.ts'),
      import('./serve.ts'),
      import('./fsck.ts'),
    ]);
    registerUp(program);
    registerServe(program);
    registerFsck(program);
  }
  registerApply(program);
  registerGet(program);
  registerVm(program);
  registerHost(program);
  registerReservedIp(program);
  registerService(program);
  registerEvents(program);
  registerLogs(program);
  registerToken(program);
  registerSubscription(program);
  registerChaos(program);
  return program;
}

/** Runs the CLI and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  quietOnClosedPipe();
  const program = await buildProgram(argv);
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its own one-line message (or the help text).
      return e.exitCode === 0 ? 0 : 2;
    }
    const debug = program.opts<{ debug?: boolean }>().debug === true;
    if (debug && e instanceof ApiProblemError)
      process.stderr.write(`${JSON.stringify(e.problem, null, 2)}\n`);
    if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.stderr.write(`vipdip: ${oneLine(describe(e))}\n`);
    return e instanceof CliError ? e.exitCode : 1;
  }
}

function describe(e: unknown): string {
  if (isVipdipError(e)) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0] ?? String(e);
  return String(e);
}
