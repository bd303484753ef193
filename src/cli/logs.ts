/**
 * `vipdip logs SERVICE/VM [-s SUB] [-t] [-f] [-o json]`: the last output lines of a VM's workload, as
 * the agent that runs it keeps them (GET /v1/services/:s/vms/:vm/logs). The lines go to stdout, one
 * per line; the workload's status goes to stderr, so that a pipe sees only the workload's own words.
 * --follow asks again every second and prints what is new.
 */
import type { Command } from 'commander';
import { connect, path, stateOption } from './client.ts';
import { CliError } from './errors.ts';
import { parseVmRef } from './names.ts';
import { outputOption } from './output.ts';

interface LogsBody {
  vm: string;
  workload: string | null;
  status: string;
  pid: number | null;
  restarts: number;
  lines: { time: string; stream: 'stdout' | 'stderr'; text: string }[];
  stale?: boolean;
  agent?: string | null;
}

interface LogsOptions {
  subscription?: string;
  timestamps?: boolean;
  follow?: boolean;
  output: string;
  state?: string;
}

const FOLLOW_EVERY_MS = 1000;

export function registerLogs(program: Command): void {
  stateOption(program.command('logs'))
    .description("the last output lines of a VM's workload")
    .argument('<service/vm>', 'the VM, as SERVICE/VM')
    .option('-s, --subscription <name>', 'the subscription the service must belong to')
    .option('-t, --timestamps', 'start each line with the time it was written')
    .option('-f, --follow', 'keep printing new lines as they come (Ctrl-C stops)')
    .addOption(outputOption(['table', 'json']))
    .action(async (target: string, opts: LogsOptions) => {
      const ref = parseVmRef(target, 'logs');
      const c = connect(opts);
      const url = path`/v1/services/${ref.service}/vms/${ref.vm}/logs`;
      const get = async () => {
        const body = await c.get<LogsBody>(url);
        if (opts.subscription !== undefined) {
          const svc = await c.get<{ subscription: string }>(path`/v1/services/${ref.service}`);
          if (svc.subscription !== opts.subscription) {
            throw new CliError(
              `not found: cloud service ${ref.service} does not exist in subscription ${opts.subscription}`,
            );
          }
        }
        return body;
      };
      const first = await get();
      if (opts.output === 'json') {
        process.stdout.write(`${JSON.stringify(first, null, 2)}\n`);
        return;
      }
      const line = (l: LogsBody['lines'][number]) =>
        process.stdout.write(`${opts.timestamps === true ? `${l.time} ` : ''}${l.text}\n`);
      if (first.workload === null) {
        process.stderr.write(`${ref.service}/${ref.vm} has no workload\n`);
        return;
      }
      process.stderr.write(
        `${ref.service}/${ref.vm}: ${first.workload} ${first.status}` +
          (first.pid !== null ? ` (pid ${first.pid})` : '') +
          `, ${first.restarts} restart${first.restarts === 1 ? '' : 's'}` +
          (first.stale === true ? `; agent ${first.agent ?? '?'} has not reported lately` : '') +
          '\n',
      );
      first.lines.forEach(line);
      if (opts.follow !== true) return;
      let last = first.lines.at(-1);
      const same = (a: LogsBody['lines'][number], b: LogsBody['lines'][number]) =>
        a.time === b.time && a.text === b.text && a.stream === b.stream;
      process.once('SIGINT', () => process.exit(130));
      for (;;) {
        await new Promise((r) => setTimeout(r, FOLLOW_EVERY_MS));
        const now = await get();
        const at = last === undefined ? -1 : now.lines.findIndex((l) => same(l, last!));
        // The kept lines are a window: when the last one printed has left it, everything is new.
        for (const l of now.lines.slice(at + 1)) line(l);
        last = now.lines.at(-1) ?? last;
      }
    });
}
