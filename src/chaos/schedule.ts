/**
 * The schedule of a chaos run, drawn from a seed: pure, so that the same seed over the same topology
 * gives the same sequence of operations, whatever the clock or the outcome of each operation.
 *
 * Each kind of weather is a Poisson process at its own rate; together they are one process at the sum
 * of the rates, whose every arrival picks its kind in proportion to the rates and then its target.
 * Targets come from the topology as it was when the run started. A deallocation (of a VM, or of a
 * whole service to take its VIP away) schedules its own undoing `pauseMs` later, and what is away is
 * not picked again until it is back, so the weather never strands what it took.
 */
import { SeededRandom } from '../core/random.ts';
import { CHAOS_KINDS, type ChaosKind, type ChaosRates } from './spec.ts';

/** What the schedule needs to know of the cloud, as it is when the run starts. */
export interface ChaosTopology {
  hosts: readonly { name: string; rack: string }[];
  services: readonly { subscription: string; name: string; reservedIp: boolean }[];
  vms: readonly {
    subscription: string;
    service: string;
    name: string;
    /** running or stopped: it holds a DIP. */
    allocated: boolean;
    /** It runs a workload that a crash can kill. */
    workload: boolean;
  }[];
}

export interface VmTarget {
  subscription: string;
  service: string;
  vm: string;
}
export interface ServiceTarget {
  subscription: string;
  service: string;
}

/** One operation of the schedule, `at` milliseconds after the run started. */
export type ChaosStep = { seq: number; at: number } & (
  | { action: 'host-maintenance'; host: string }
  | { action: 'rack-maintenance'; rack: string }
  | { action: 'redeploy' | 'deallocate' | 'start' | 'crash'; target: VmTarget }
  | { action: 'release-vip' | 'restore-vip'; target: ServiceTarget }
);
export type ChaosAction = ChaosStep['action'];

/** The actions that undo an earlier one: they run even after the run's end, and at once on a stop. */
export const isFollowUp = (s: ChaosStep): boolean => s.action === 'start' || s.action === 'restore-vip';

/** Which kind of weather an action belongs to. */
export function kindOf(action: ChaosAction): ChaosKind {
  switch (action) {
    case 'host-maintenance':
    case 'rack-maintenance':
      return 'maintenance';
    case 'deallocate':
    case 'start':
      return 'deallocate';
    case 'release-vip':
    case 'restore-vip':
      return 'vip';
    default:
      return action;
  }
}

/** `host rack1-host2`, `contoso/shop/web1`: what a step acts on, for people. */
export function describeTarget(s: ChaosStep): string {
  if (s.action === 'host-maintenance') return `host ${s.host}`;
  if (s.action === 'rack-maintenance') return `rack ${s.rack}`;
  const t = s.target;
  return 'vm' in t ? `${t.subscription}/${t.service}/${t.vm}` : `${t.subscription}/${t.service}`;
}

export interface ScheduleOptions {
  seed: number;
  topology: ChaosTopology;
  /** Per minute. */
  rates: ChaosRates;
  pauseMs: number;
  /** No new weather is drawn at or after this; follow-ups still come. Null: until stopped. */
  durationMs: number | null;
}

/** One in this many maintenance draws takes a whole rack (when there are several racks). */
const RACK_ONE_IN = 4;
const TWO_32 = 0x100000000;

const vmKey = (t: VmTarget) => `${t.subscription}/${t.service}/${t.vm}`;
const serviceKey = (t: ServiceTarget) => `${t.subscription}/${t.service}`;

export class ChaosSchedule {
  private readonly random: SeededRandom;
  private readonly totalPerMs: number;
  private readonly kinds: { kind: ChaosKind; rate: number }[];
  private readonly racks: string[];
  /** Follow-ups not yet handed out, by time (then by seq). */
  private pending: ChaosStep[] = [];
  /** VMs and services deallocated by this schedule and not yet started again. */
  private readonly awayVms = new Set<string>();
  private readonly awayServices = new Set<string>();
  private drawAt: number | undefined;
  private last = 0;
  private seq = 0;

  constructor(private readonly opts: ScheduleOptions) {
    this.random = new SeededRandom(opts.seed);
    this.kinds = CHAOS_KINDS.map((kind) => ({ kind, rate: opts.rates[kind] ?? 0 })).filter((k) => k.rate > 0);
    this.totalPerMs = this.kinds.reduce((n, k) => n + k.rate, 0) / 60_000;
    this.racks = [...new Set(opts.topology.hosts.map((h) => h.rack))];
  }

  /** The next step, or undefined once the duration is over and every follow-up has been handed out. */
  next(): ChaosStep | undefined {
    if (this.drawAt === undefined && this.totalPerMs > 0) this.drawAt = this.last + this.gap();
    const due = this.pending[0];
    const drawAt = this.drawAt ?? Infinity;
    const open = this.opts.durationMs === null || drawAt < this.opts.durationMs;
    if (due !== undefined && (due.at <= drawAt || !open)) return this.handOut(due);
    if (!open || this.drawAt === undefined) return undefined;
    this.drawAt = undefined;
    this.last = drawAt;
    return this.draw(drawAt) ?? this.next();
  }

  /** The follow-ups still owed (what a stop runs at once to give back what the weather took). */
  drain(): ChaosStep[] {
    const out = this.pending.map((s) => ({ ...s, seq: this.seq++ }));
    this.pending = [];
    for (const s of out) this.settle(s);
    return out;
  }

  /** The first `n` steps: the same seed and topology always give the same list. */
  static take(opts: ScheduleOptions, n: number): ChaosStep[] {
    const s = new ChaosSchedule(opts);
    const out: ChaosStep[] = [];
    for (let i = 0; i < n; i++) {
      const step = s.next();
      if (step === undefined) break;
      out.push(step);
    }
    return out;
  }

  private handOut(step: ChaosStep): ChaosStep {
    this.pending.shift();
    this.settle(step);
    return { ...step, seq: this.seq++ };
  }

  private settle(step: ChaosStep): void {
    if (step.action === 'start') this.awayVms.delete(vmKey(step.target));
    if (step.action === 'restore-vip') {
      this.awayServices.delete(serviceKey(step.target));
      for (const v of this.opts.topology.vms) {
        if (v.subscription === step.target.subscription && v.service === step.target.service)
          this.awayVms.delete(vmKey({ subscription: v.subscription, service: v.service, vm: v.name }));
      }
    }
  }

  /** A uniform number in (0, 1). */
  private unit(): number {
    return (this.random.int(TWO_32) + 0.5) / TWO_32;
  }

  /** Exponential inter-arrival time of the merged process, in ms. */
  private gap(): number {
    return -Math.log(this.unit()) / this.totalPerMs;
  }

  private pick<T>(list: readonly T[]): T | undefined {
    return list.length === 0 ? undefined : list[this.random.int(list.length)];
  }

  /** Draws the kind, then its target; a kind with nothing to act on yields no step (undefined). */
  private draw(at: number): ChaosStep | undefined {
    let x = this.unit() * this.kinds.reduce((n, k) => n + k.rate, 0);
    let kind = this.kinds[this.kinds.length - 1]!.kind;
    for (const k of this.kinds) {
      if (x < k.rate) {
        kind = k.kind;
        break;
      }
      x -= k.rate;
    }
    const { topology, pauseMs } = this.opts;
    const present = topology.vms.filter(
      (v) =>
        v.allocated &&
        !this.awayVms.has(vmKey({ subscription: v.subscription, service: v.service, vm: v.name })),
    );
    const asTarget = (v: (typeof present)[number]): VmTarget => ({
      subscription: v.subscription,
      service: v.service,
      vm: v.name,
    });
    switch (kind) {
      case 'maintenance': {
        if (this.racks.length > 1 && this.random.int(RACK_ONE_IN) === 0) {
          return { seq: this.seq++, at, action: 'rack-maintenance', rack: this.pick(this.racks)! };
        }
        const host = this.pick(topology.hosts);
        return host === undefined
          ? undefined
          : { seq: this.seq++, at, action: 'host-maintenance', host: host.name };
      }
      case 'redeploy': {
        const v = this.pick(present);
        return v === undefined ? undefined : { seq: this.seq++, at, action: 'redeploy', target: asTarget(v) };
      }
      case 'crash': {
        const v = this.pick(present.filter((p) => p.workload));
        return v === undefined ? undefined : { seq: this.seq++, at, action: 'crash', target: asTarget(v) };
      }
      case 'deallocate': {
        const v = this.pick(present);
        if (v === undefined) return undefined;
        const target = asTarget(v);
        this.awayVms.add(vmKey(target));
        this.later({ seq: -1, at: at + pauseMs, action: 'start', target });
        return { seq: this.seq++, at, action: 'deallocate', target };
      }
      case 'vip': {
        const candidates = topology.services.filter(
          (s) =>
            !s.reservedIp &&
            !this.awayServices.has(serviceKey({ subscription: s.subscription, service: s.name })) &&
            present.some((v) => v.subscription === s.subscription && v.service === s.name),
        );
        const s = this.pick(candidates);
        if (s === undefined) return undefined;
        const target = { subscription: s.subscription, service: s.name };
        this.awayServices.add(serviceKey(target));
        for (const v of present)
          if (v.subscription === s.subscription && v.service === s.name) this.awayVms.add(vmKey(asTarget(v)));
        this.later({ seq: -1, at: at + pauseMs, action: 'restore-vip', target });
        return { seq: this.seq++, at, action: 'release-vip', target };
      }
    }
  }

  /** Queues a follow-up; its seq is given when it is handed out, so seqs follow the order of the steps. */
  private later(step: ChaosStep): void {
    this.pending.push(step);
    this.pending.sort((a, b) => a.at - b.at);
  }
}
