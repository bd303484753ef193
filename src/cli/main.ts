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
import { registerImage } from './image.ts';
import { registerLogs } from './logs.ts';
import { quietOnClosedPipe } from './output.ts';
import { registerReservedIp } from './reserved-ip.ts';
import { registerService } from './service.ts';
import { registerSubscription } from './subscription.ts';
import { registerToken } from './token.ts';
import { registerVm } from './vm.ts';
import { registerDown } from './down.ts';
import { registerNetnsClient } from './netns-client.ts';
import { packageVersion } from './package-root.ts';
import { registerStatus } from './status.ts';

export { UsageError };

/**
 * The verbs that run a server or open a store (the control plane, the data plane, the store's
 * checks). Their code takes most of a second to load, so each is loaded only when it is the verb
 * being run; otherwise (`--help`, a client verb) it is listed with this description only. Every other
 * verb is a client verb: it talks to a server over HTTP and loads nothing of the server
 * (test/integration/cli-graph.test.ts checks every one).
 */
export const SERVER_VERBS: Record<
  string,
  { description: string; load: () => Promise<(p: Command) => void> }
> = {
  agent: {
    description: 'run the data plane of some hosts (or all) against a control plane, until SIGINT or SIGTERM',
    load: async () => (await import('./agent.ts')).registerAgent,
  },
  up: {
    description: 'run the whole cloud in one process until SIGINT or SIGTERM',
    load: async () => (await import('./up.ts')).registerUp,
  },
  serve: {
    description: 'run the API server (and DNS with --dns) without the data plane, until SIGINT or SIGTERM',
    load: async () => (await import('./serve.ts')).registerServe,
  },
  fsck: {
    description: 'check invariants I1–I6 against a state; exit 0 when clean, 1 with findings',
    load: async () => (await import('./fsck.ts')).registerFsck,
  },
};

/** The verb a command line runs: its first word that is not an option (`help VERB` runs VERB's help). */
export function verbOf(argv: readonly string[]): string | undefined {
  const words = argv.slice(2).filter((a) => !a.startsWith('-'));
  return words[0] === 'help' && words[1] !== undefined ? words[1] : words[0];
}

/** Builds the program, loading the code of a server verb only when it is the one being run. */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('vipdip')
    .description('the cloud VIP/DIP address model: control plane, data plane, DNS, API and dashboard')
    .version(`vipdip ${packageVersion()}`, '-V, --version', 'print the version')
    .option('--debug', 'print stack traces of failures')
    .exitOverride()
    .configureOutput({
      writeErr: (s) => process.stderr.write(s),
      // Commander's parse errors in the same one-line form as every other failure.
      outputError: (s, write) => write(s.replace(/^error: /, 'vipdip: ')),
    });
  const verb = verbOf(argv);
  for (const [name, v] of Object.entries(SERVER_VERBS)) {
    if (name === verb) (await v.load())(program);
    else program.command(name).description(v.description);
  }
  registerApply(program);
  registerGet(program);
  registerVm(program);
  registerHost(program);
  registerImage(program);
  registerReservedIp(program);
  registerService(program);
  registerEvents(program);
  registerLogs(program);
  registerToken(program);
  registerSubscription(program);
  registerStatus(program);
  registerDown(program);
  registerChaos(program);
  registerNetnsClient(program);
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
