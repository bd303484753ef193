/**
 * The `vipdip` command. Each verb lives in its own file; this one parses, dispatches, and turns any
 * failure into one line on stderr and a non-zero exit (a stack trace only with --debug).
 */
import { Command, CommanderError } from 'commander';
import { isVipdipError } from '../core/errors.ts';
import { registerFsck } from './fsck.ts';
import { registerUp } from './up.ts';

export class UsageError extends Error {}

export function buildProgram(): Command {
  const program = new Command('vipdip')
    .description('the cloud VIP/DIP address model: control plane, data plane, DNS, API and dashboard')
    .option('--debug', 'print stack traces of failures')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  registerUp(program);
  registerFsck(program);
  return program;
}

/** Runs the CLI and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander has printed its own one-line message (or the help text).
      return e.exitCode === 0 ? 0 : 2;
    }
    const debug = program.opts<{ debug?: boolean }>().debug === true;
    if (debug && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.stderr.write(`vipdip: ${describe(e)}\n`);
    return isVipdipError(e) ? 1 : 1;
  }
}

function describe(e: unknown): string {
  if (isVipdipError(e)) return e.message;
  if (e instanceof Error) return e.message.split('\n')[0] ?? String(e);
  return String(e);
}
