/**
 * What the client verbs print: human tables by default, or exactly the API's JSON (`-o json`) or
 * the same data as YAML (`-o yaml`). Progress goes to stderr, and only when it is a terminal, so a
 * pipe sees nothing but the answer.
 */
import { Option } from 'commander';

export const FORMATS = ['table', 'json', 'yaml'] as const;
export type Format = (typeof FORMATS)[number];

/** The `-o` option, limited to the formats a verb supports (Commander refuses the rest: exit 2). */
export function outputOption(formats: readonly Format[] = FORMATS): Option {
  return new Option('-o, --output <format>', 'output format').choices(formats).default('table');
}

/** A table cell: null, undefined and the empty string print as `-`. */
export function cell(v: unknown): string {
  if (v === null || v === undefined || v === '') return '-';
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? '-';
}

/** Left-aligned columns two spaces apart, a header in capitals, no trailing blanks. */
export function table(headers: readonly string[], rows: readonly (readonly unknown[])[]): string {
  const text = rows.map((r) => headers.map((_h, i) => cell(r[i])));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => r[i]!.length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...text.map(line)].join('\n') + '\n';
}

export function out(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

/**
 * Prints data in the chosen format: the API's JSON as it came, YAML of the same data, or the
 * verb's own table.
 */
export async function print(
  format: string,
  data: unknown,
  asTable: () => string | Promise<string>,
): Promise<void> {
  if (format === 'json') out(JSON.stringify(data, null, 2));
  else if (format === 'yaml') {
    // Loaded on demand: most calls never need it, and it costs a noticeable part of a CLI start.
    const { stringify } = await import('yaml');
    process.stdout.write(stringify(data));
  } else process.stdout.write(await asTable());
}

/** `old → new`, with `-` for null. */
export const arrow = (a: unknown, b: unknown): string => `${cell(a)} → ${cell(b)}`;

export interface Progress {
  update(message: string): void;
  /** Clears the progress line. */
  done(): void;
}

/** A one-line progress indicator on a terminal's stderr; silent when stderr is not a terminal. */
export function progress(stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  let shown = false;
  return {
    update(message) {
      if (!tty) return;
      stream.write(`\r${message}\x1b[K`);
      shown = true;
    },
    done() {
      if (tty && shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
}

/** A reader gone away (`vipdip events -o json | head`) ends the command quietly, not with EPIPE. */
export function quietOnClosedPipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
    throw e;
  });
}
