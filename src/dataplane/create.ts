/** Chooses a driver by name: the one place that knows which drivers this build has. */
import { VipdipError } from '../core/index.ts';
import type { TimeSource } from '../lb/index.ts';
import type { DataPlaneDriver, DriverLimits, DriverName } from './driver.ts';
import { LocalDriver } from './local.ts';
import { NoneDriver } from './none.ts';

export interface DriverOptions {
  time?: TimeSource;
  limits?: Partial<DriverLimits>;
}

export function createDriver(name: string, opts: DriverOptions = {}): DataPlaneDriver {
  switch (name as DriverName) {
    case 'none':
      return new NoneDriver();
    case 'local':
      return new LocalDriver(opts);
    case 'netns':
      throw new VipdipError(
        'DRIVER_UNSUPPORTED',
        'the netns driver (network namespaces and nftables, Linux as root) is not available in this build; use --driver local (addresses in 127.0.0.0/8) or --driver none',
      );
    default:
      throw new VipdipError('INVALID_ARGUMENT', `--driver ${name}: must be none, local or netns`);
  }
}
