/**
 * How many VMs each host carries, kept in memory and following the log, so that placing a VM
 * (start, redeploy) costs the same however many VMs the cloud has. Counting them in the store on
 * every start scanned every VM: at 10,000 VMs that one query was about half of a start's time.
 *
 * The loads only steer placement (the least-loaded host, R5's spread): a replica that has not yet
 * applied another replica's last commits places on slightly older figures, which is harmless, and
 * the log brings it level. A transaction's own placements count at once (`TxLoads`), so that one
 * apply of many VMs spreads them as the store would.
 */
import type { HostInfo } from './placement.ts';

/** The `vm.host` event's payload: the host a VM left and the one it went to. */
export interface HostMove {
  old: string | null;
  new: string | null;
}

/** A transaction's own placements, by host name, on top of the committed loads. */
export type TxLoads = Map<string, number>;

/** Adds one move to a count by host name. */
export function countMove(counts: Map<string, number>, move: HostMove): void {
  if (move.old !== null) counts.set(move.old, (counts.get(move.old) ?? 0) - 1);
  if (move.new !== null) counts.set(move.new, (counts.get(move.new) ?? 0) + 1);
}

/** The move a `vm.host` event records (its old and new payloads, as stored). */
export function hostMoveOf(e: {
  type: string;
  old: string | null;
  new: string | null;
}): HostMove | undefined {
  if (e.type !== 'vm.host') return undefined;
  const host = (json: string | null) =>
    json === null ? null : ((JSON.parse(json) as { host?: string | null }).host ?? null);
  return { old: host(e.old), new: host(e.new) };
}

export class HostLoads {
  private readonly byName = new Map<string, number>();

  /** The loads as the store counts them (at open, in the snapshot the indexes are built from). */
  static from(hosts: readonly HostInfo[], loads: ReadonlyMap<number, number>): HostLoads {
    const l = new HostLoads();
    for (const h of hosts) l.byName.set(h.name, loads.get(h.id) ?? 0);
    return l;
  }

  /** Applies committed events in log order; only `vm.host` moves a VM. */
  apply(events: readonly { type: string; old: string | null; new: string | null }[]): void {
    for (const e of events) {
      const move = hostMoveOf(e);
      if (move !== undefined) countMove(this.byName, move);
    }
  }

  get(name: string): number {
    return this.byName.get(name) ?? 0;
  }

  /** Loads by host id for `pickHost`, with a transaction's own placements on top. */
  forHosts(hosts: readonly HostInfo[], own?: ReadonlyMap<string, number>): Map<number, number> {
    return new Map(hosts.map((h) => [h.id, Math.max(0, this.get(h.name) + (own?.get(h.name) ?? 0))]));
  }
}
