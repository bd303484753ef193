/**
 * `vipdip image add NAME --command CMD [--env K=V]… [--replace]`, `image list`, `image delete NAME`:
 * the workload images a VM may name (SPEC §4, §8). Adding, changing and deleting are the operator's;
 * a tenant's token lists the names it may choose from.
 */
import type { Command } from 'commander';
import type { Image } from '../core/api-shapes.ts';
import { connect, path, stateOption } from './client.ts';
import { UsageError } from './errors.ts';
import { outputOption, print, table } from './output.ts';

interface ImageOptions {
  output: string;
  state?: string;
}

interface AddOptions extends ImageOptions {
  command?: string;
  env: string[];
  replace?: boolean;
}

const collect = (v: string, prev: string[]) => [...prev, v];

/**
 * `--env K=V` as given (the value may hold `=`), into a mapping; the server checks the names. Kept
 * here, not imported from lifecycle/: a client verb loads none of the server's modules.
 */
export function parseEnvAssignments(list: readonly string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const a of list) {
    const i = a.indexOf('=');
    if (i <= 0) throw new UsageError(`image add: --env ${a}: write it as NAME=VALUE`);
    env[a.slice(0, i)] = a.slice(i + 1);
  }
  return env;
}

export function registerImage(program: Command): void {
  const image = program.command('image').description('workload images: what a VM may run');

  stateOption(image.command('add'))
    .description('register an image: a command line run by /bin/sh, sandboxed (operator)')
    .argument('<name>', 'its name: lower-case letters, digits and hyphens')
    .option('--command <cmd>', 'the command line it runs')
    .option('--env <K=V>', 'an environment variable it runs with (repeatable)', collect, [])
    .option('--replace', 'change the image if it exists (its VMs restart)')
    .addOption(outputOption())
    .action(async (name: string, opts: AddOptions) => {
      if (opts.command === undefined || opts.command.trim() === '') {
        throw new UsageError('image add: give the command line with --command CMD');
      }
      const env = parseEnvAssignments(opts.env);
      const c = connect(opts);
      const body = { command: opts.command, env };
      const made =
        opts.replace === true
          ? await c.request<Image>('PUT', path`/v1/images/${name}`, { json: body })
          : await c.post<Image>('/v1/images', { name, ...body });
      await print(
        opts.output,
        made,
        () => `image ${made.name} ${opts.replace === true ? 'changed' : 'added'}\n`,
      );
    });

  stateOption(image.command('list'))
    .description('the images a VM may name: the built-ins and the operator’s')
    .addOption(outputOption())
    .action(async (opts: ImageOptions) => {
      const all = await connect(opts).get<Image[]>('/v1/images');
      await print(opts.output, all, () =>
        table(
          ['NAME', 'KIND', 'COMMAND', 'ENV'],
          all.map((m) => [
            m.name,
            m.builtin ? 'built-in' : 'operator',
            m.builtin ? '' : (m.command ?? '(hidden)'),
            Object.keys(m.env ?? {}).join(','),
          ]),
        ),
      );
    });

  stateOption(image.command('delete'))
    .description('delete an image no VM names (operator)')
    .argument('<name>', 'its name')
    .action(async (name: string, opts: ImageOptions) => {
      await connect(opts).delete(path`/v1/images/${name}`);
      process.stdout.write(`image ${name} deleted\n`);
    });
}
