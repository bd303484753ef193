/**
 * `vipdip host maintenance HOST` or `--rack NAME`: service healing. Every allocated VM on the host
 * (or rack) moves elsewhere, and the table shows each one's old → new host and DIP.
 */
import type { Command } from 'commander';
import type { Vm } from '../core/api-shapes.ts';
import { connect, path, stateOption } from './client.ts';
import { UsageError } from './errors.ts';
import { arrow, outputOption, print, progress, table } from './output.ts';

interface MaintenanceOptions {
  rack?: string;
  output: string;
  state?: string;
}

export function registerHost(program: Command): void {
  const host = program.command('host').description('the fabric: host maintenance');
  stateOption(host.command('maintenance'))
    .description('move every allocated VM off a host (or a whole rack); DIPs are redrawn unless static')
    .argument('[host]', 'the host')
    .option('--rack <name>', 'every host of this rack')
    .addOption(outputOption())
    .action(async (name: string | undefined, opts: MaintenanceOptions) => {
      if ((name === undefined) === (opts.rack === undefined)) {
        throw new UsageError('host maintenance: give a host, or --rack NAME (one of them)');
      }
      const c = connect(opts);
      const what = name !== undefined ? `host ${name}` : `rack ${opts.rack}`;
      // The answer holds the VMs as they are after the move; the listing before holds where they were.
      const before =
        opts.output === 'table' ? new Map((await c.get<Vm[]>('/v1/vms')).map((v) => [key(v), v])) : null;
      const p = progress();
      p.update(`maintenance of ${what}…`);
      const moved = await c
        .post<Vm[]>(
          name !== undefined
            ? path`/v1/hosts/${name}/maintenance`
            : path`/v1/racks/${opts.rack!}/maintenance`,
        )
        .finally(() => p.done());
      await print(opts.output, moved, () => {
        if (moved.length === 0) return `no allocated VM on ${what}: nothing moved\n`;
        const rows = moved.map((v) => {
          const old = before?.get(key(v));
          return [
            key(v),
            arrow(old?.host, v.host),
            arrow(old?.dip, v.dip) + (v.staticDip !== null ? ' (static)' : ''),
          ];
        });
        return (
          table(['VM', 'HOST', 'DIP'], rows) +
          `moved ${moved.length} VM${moved.length === 1 ? '' : 's'} off ${what}\n`
        );
      });
    });
}

const key = (v: Vm) => `${v.service}/${v.name}`;
