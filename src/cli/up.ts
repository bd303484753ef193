import type { Command } from 'commander';
import { VipdipError } from '../core/errors.ts';
import { openState } from '../main.ts';

interface UpOptions {
  state: string;
  store?: string;
  driver: string;
  listen: string;
  dns: string;
  demo?: boolean;
  seed?: string;
}

export function registerUp(program: Command): void {
  program
    .command('up')
    .description('run the whole cloud in one process until SIGINT or SIGTERM')
    .option('--state <dir>', 'state directory', '.vipdip')
    .option('--store <url>', 'store URL (default: SQLite in the state directory)')
    .option('--driver <name>', 'data-plane driver: none, local or netns', 'local')
    .option('--listen <host:port>', 'API and dashboard address', '127.0.0.1:7480')
    .option('--dns <host:port>', 'DNS server address, or off', '127.0.0.1:5353')
    .option('--demo', 'apply the demo topology')
    .option('--seed <n>', 'seed of the random source, to reproduce a run')
    .action(async (opts: UpOptions) => {
      if (!['none', 'local', 'netns'].includes(opts.driver)) {
        throw new VipdipError('INVALID_ARGUMENT', `--driver ${opts.driver}: must be none, local or netns`);
      }
      let seed: number | undefined;
      if (opts.seed !== undefined) {
        if (!/^\d{1,10}$/.test(opts.seed) || Number(opts.seed) > 0xffffffff) {
          throw new VipdipError(
            'INVALID_ARGUMENT',
            `--seed ${opts.seed}: must be an integer from 0 to 4294967295`,
          );
        }
        seed = Number(opts.seed);
      }
      const state = await openState({
        stateDir: opts.state,
        ...(opts.store ? { store: opts.store } : {}),
        ...(seed !== undefined ? { seed } : {}),
      });
      const pools = await state.cloud.listPools();
      const subs = await state.cloud.listSubscriptions();
      const vms = await state.cloud.listVms();
      process.stdout.write(
        `vipdip is up: state ${state.dbPath}, seed ${state.seed}\n` +
          `  public pools: ${pools.map((p) => `${p.cidr} (${p.bound}/${p.usable} bound)`).join(', ')}\n` +
          `  ${subs.length} subscriptions, ${vms.length} VMs (${vms.filter((v) => v.state !== 'deallocated').length} allocated)\n` +
          `  the API, data plane and DNS join this process as they land; Ctrl-C stops it\n`,
      );
      await new Promise<void>((resolve) => {
        // Signal handlers alone do not keep the event loop alive.
        const keepAlive = setInterval(() => undefined, 1 << 30);
        const stop = () => {
          clearInterval(keepAlive);
          resolve();
        };
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await state.close();
      process.stdout.write('vipdip stopped; state closed cleanly\n');
    });
}
