import type { Command } from 'commander';
import {
  controlPlaneFlags,
  startControlPlane,
  untilSignal,
  type ControlPlaneOptions,
} from './control-plane.ts';

/**
 * `vipdip serve`: the control plane alone (API, dashboard, and DNS when --dns is given), with no
 * data plane. Several of them over one PostgreSQL store are replicas of one cloud.
 */
export function registerServe(program: Command): void {
  controlPlaneFlags(
    program
      .command('serve')
      .description('run the API server (and DNS with --dns) without the data plane, until SIGINT or SIGTERM'),
    { dns: 'off' },
  ).action(async (opts: ControlPlaneOptions) => {
    const cp = await startControlPlane(opts);
    process.stdout.write(
      `vipdip serve: API and dashboard on ${cp.url}, state ${cp.state.location}, seed ${cp.state.seed}\n` +
        (await cp.banner()) +
        '  no data plane (vipdip up runs one)\n' +
        '  Ctrl-C stops it\n',
    );
    await untilSignal();
    await cp.close();
    process.stdout.write('vipdip stopped; state closed cleanly\n');
  });
}
