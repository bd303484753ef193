/** Chooses a driver by name: the one place that knows which drivers this build has. */
import { VipdipError } from '../core/index.ts';
import type { TimeSource } from '../lb/index.ts';
import type { DataPlaneDriver, DriverLimits, DriverName, WorkloadCommand } from './driver.ts';
import { LocalDriver } from './local.ts';
import { NetnsDriver } from './netns/driver.ts';
import { worldPrefix } from './netns/world.ts';
import { NoneDriver } from './none.ts';

export interface DriverOptions {
  time?: TimeSource;
  limits?: Partial<DriverLimits>;
  /** The state directory (absolute): the netns driver names its namespaces after it. */
  stateDir?: string;
  /** The netns driver's namespace prefix when it is not named after a state directory (agentWorldPrefix). */
  prefix?: string;
  /** How the netns driver starts its prober inside the world. */
  proberCommand?: WorkloadCommand;
}

export function createDriver(name: string, opts: DriverOptions = {}): DataPlaneDriver {
  switch (name as DriverName) {
    case 'none':
      return new NoneDriver();
    case 'local':
      return new LocalDriver(opts);
    case 'netns':
      return new NetnsDriver({
        prefix: opts.prefix ?? worldPrefix(opts.stateDir ?? process.cwd()),
        ...(opts.limits !== undefined ? { limits: opts.limits } : {}),
        ...(opts.time !== undefined ? { time: opts.time } : {}),
        ...(opts.proberCommand !== undefined ? { proberCommand: opts.proberCommand } : {}),
      });
    default:
      throw new VipdipError('INVALID_ARGUMENT', `--driver ${name}: must be none, local or netns`);
  }
}
