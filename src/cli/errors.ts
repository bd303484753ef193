/**
 * The failures a client verb reports. Each carries a one-line message (main.ts prints it after
 * `vipdip: `) and the exit code it means: 2 for a command line that cannot be right, 1 for the rest.
 */
import type { Problem } from '../core/api-shapes.ts';

/** A failure worth one line on stderr and exit 1. */
export class CliError extends Error {
  readonly exitCode: number = 1;
}

/** The command line is wrong (exit 2), as Commander's own parse errors are. */
export class UsageError extends CliError {
  override readonly exitCode = 2;
}

/**
 * An API problem as the CLI receives it: the title and detail it prints are checked (client.ts); the
 * rest may be missing from a body that a proxy, not vipdip, sent. The whole body is kept for --debug.
 */
export type ProblemBody = Pick<Problem, 'title' | 'detail'> & Partial<Problem>;

/** The API refused or failed a request (RFC 9457 problem); prints as `<title>: <detail>`. */
export class ApiProblemError extends CliError {
  constructor(readonly problem: ProblemBody) {
    super(`${problem.title}: ${problem.detail}`);
  }
}

/** The server could not be reached at all. */
export class UnreachableError extends CliError {}

/** The one line main.ts prints for any failure: no newline inside, whatever the source. */
export function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, '; ').trim();
}
