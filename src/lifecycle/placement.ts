import { VipdipError } from '../core/errors.ts';
import type { Random } from '../core/random.ts';

export interface HostInfo {
  readonly id: number;
  readonly name: string;
  readonly rack: string;
}

/**
 * Spreads VMs: the least-loaded host not excluded, ties broken at random so that placement is
 * neither biased to one host nor predictable without the seed.
 */
export function pickHost(
  hosts: readonly HostInfo[],
  loads: ReadonlyMap<number, number>,
  exclude: ReadonlySet<number>,
  random: Random,
): HostInfo {
  let best: HostInfo[] = [];
  let bestLoad = Infinity;
  for (const h of hosts) {
    if (exclude.has(h.id)) continue;
    const load = loads.get(h.id) ?? 0;
    if (load < bestLoad) {
      best = [h];
      bestLoad = load;
    } else if (load === bestLoad) best.push(h);
  }
  if (best.length === 0) {
    throw new VipdipError('NO_HOST', 'no host is available to place the VM on');
  }
  return best[best.length === 1 ? 0 : random.int(best.length)]!;
}
