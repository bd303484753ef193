/**
 * `vipdip apply -f FILE [--dry-run] [--prune]`: sends a YAML or JSON topology to POST /v1/apply as
 * it is (the server parses and validates it, and lists every problem at once), then shows what
 * changed and what the file no longer names.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ApplyResult, Change } from '../topology/index.ts';
import { connect, stateOption } from './client.ts';
import { CliError } from './errors.ts';
import { outputOption, print, progress, table } from './output.ts';

interface ApplyOptions {
  filename: string;
  dryRun?: boolean;
  prune?: boolean;
  output: string;
  state?: string;
}

function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const what = file === '-' ? 'standard input' : file;
    throw new CliError(
      `cannot read ${what}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? (e as Error).message)}`,
    );
  }
}

const rows = (changes: readonly Change[]) => changes.map((c) => [c.action, c.kind, c.name, c.detail]);
const HEADERS = ['ACTION', 'KIND', 'NAME', 'DETAIL'];
const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;

/** The human report: the changes (or that there are none), then what the file no longer names. */
export function describeApply(r: ApplyResult, pruneAsked: boolean): string {
  let text = '';
  if (r.changes.length === 0) text += r.dryRun ? 'no changes would be made\n' : 'no changes\n';
  else {
    text += table(HEADERS, rows(r.changes));
    text += r.dryRun
      ? `${plural(r.changes.length, 'change')} planned (dry run: nothing was changed)\n`
      : `${plural(r.changes.length, 'change')} applied\n`;
  }
  if (r.wouldDelete.length > 0) {
    text +=
      `\nnot named in the file, so kept${pruneAsked ? '' : ' (apply --prune deletes them)'}:\n` +
      table(HEADERS, rows(r.wouldDelete));
  }
  return text;
}

export function registerApply(program: Command): void {
  stateOption(program.command('apply'))
    .description('create and update everything a topology file names (YAML or JSON); idempotent')
    .requiredOption('-f, --filename <file>', 'the topology file, or - for standard input')
    .option('--dry-run', 'report what would change without changing anything')
    .option('--prune', 'also delete what the file does not name')
    .addOption(outputOption())
    .action(async (opts: ApplyOptions) => {
      const text = readInput(opts.filename);
      const c = connect(opts);
      const p = progress();
      p.update(
        `${opts.dryRun === true ? 'planning' : 'applying'} ${opts.filename === '-' ? 'standard input' : opts.filename}…`,
      );
      const result = await c
        .request<ApplyResult>('POST', '/v1/apply', {
          text,
          contentType: 'application/yaml',
          query: {
            ...(opts.dryRun === true ? { dryRun: 'true' } : {}),
            ...(opts.prune === true ? { prune: 'true' } : {}),
          },
        })
        .finally(() => p.done());
      await print(opts.output, result, () => describeApply(result, opts.prune === true));
    });
}
