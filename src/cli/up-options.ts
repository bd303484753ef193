/** What `up` and `agent` share, kept apart from up.ts so that `agent` does not load the control plane. */
import { join } from 'node:path';
import { VipdipError } from '../core/index.ts';
import { packageRoot } from './package-root.ts';

/** The vipdip entry point, which the agent runs the built-in workloads with. */
export const VIPDIP_BIN = join(packageRoot(), 'bin/vipdip.js');

/** `--time-scale`: a number in (0, 1]; durations of probes, idle timeouts and reports are multiplied by it. */
export function parseTimeScale(text: string): number {
  const n = Number(text);
  if (!/^(0?\.[0-9]+|1(\.0*)?)$/.test(text) || !(n > 0 && n <= 1)) {
    throw new VipdipError('INVALID_ARGUMENT', `--time-scale ${text}: must be a number in (0, 1]`);
  }
  return n;
}
