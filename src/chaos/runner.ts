/**
 * Chaos runs: the schedule (schedule.ts, pure) performed against the cloud as ordinary lifecycle
 * operations whose events carry the reason `chaos run ID: …`. Runs live in the memory of the server
 * process that started them (docs/designs/2026-12-03-chaos.md says why): a restart ends them, and
 * another replica does not know them.
 */
import { randomBytes } from 'node:crypto';
import type { ChaosRun, ChaosRunStep } from '../core/api-shapes.ts';
import type { Clock } from '../core/clock.ts';
import { isVipdipError, VipdipError } from '../core/errors.ts';
import type { Cloud } from '../lifecycle/index.ts';
import {
  ChaosSchedule,
  describeTarget,
  isFollowUp,
  kindOf,
  type ChaosAction,
  type ChaosStep,
  type ChaosTopology,
  type VmTarget,
} from './schedule.ts';
import { CHAOS_KINDS, checkRates, type ChaosRates } from './spec.ts';

/** What a run needs of the cloud. */
export type ChaosCloud = Pick<
  Cloud,
  'listSubscriptions' | 'listHosts' | 'listServices' | 'listVms' | 'vmOperation' | 'maintenance'
>;

/** Kills a VM's workload as a crash would; false when nothing of it runs here. */
export type CrashWorkload = (t: VmTarget) => boolean | Promise<boolean>;

export interface ChaosRequest {
  /** The subscription whose VMs the weather hits; null: the whole fabric (the operator's only). */
  subscription: string | null;
  /** Only these services of the subscription; null: all of them. */
  services: readonly string[] | null;
  seed: number;
  rates: ChaosRates;
  pauseMs: number;
  /** Null: until stopped. */
  durationMs: number | null;
}

export type { ChaosRunState } from '../core/api-shapes.ts';

/** A step a run performed (the API's ChaosStep), with the action it drew. */
export type ChaosStepRecord = ChaosRunStep & { action: ChaosAction };

/** A run as `status`, the API and the dashboard show it: the API's ChaosRun. */
export type ChaosRunView = ChaosRun;

/** Steps kept per run for `status` and the dashboard. */
export const RECENT_STEPS_KEPT = 50;
/** Ended runs kept for `status` (the oldest go first). */
export const ENDED_RUNS_KEPT = 20;

export interface ChaosRunsOptions {
  cloud: ChaosCloud;
  clock: Clock;
  /** Ids of new runs (tests fix them); default six random hex digits. */
  newId?: () => string;
  /** Called after every step with the record (tests check invariants there). */
  afterStep?: (run: ChaosRunView, step: ChaosStepRecord) => Promise<void> | void;
  /** Failures of the runner itself (not of an operation, which the run records). */
  onError?: (e: unknown) => void;
}

interface Run {
  view: ChaosRunView;
  startMs: number;
  schedule: ChaosSchedule;
  /** The VMs a release-vip deallocated, by service, for its restore. */
  taken: Map<string, string[]>;
  wake: (() => void) | undefined;
  stopRequested: boolean;
  done: Promise<void>;
}

const emptyCounts = () =>
  Object.fromEntries(
    CHAOS_KINDS.map((k) => [k, { done: 0, skipped: 0, failed: 0 }]),
  ) as ChaosRunView['counts'];

/** The outcomes of an operation that the weather expects now and then: the step is skipped, not failed. */
const SKIPPABLE = new Set(['INVALID_TRANSITION', 'NOT_FOUND', 'NO_HOST', 'POOL_EXHAUSTED', 'CONFLICT']);

export class ChaosRuns {
  private readonly runs = new Map<string, Run>();
  private crash: CrashWorkload | undefined;
  private closed = false;

  constructor(private readonly opts: ChaosRunsOptions) {}

  /** Gives the runs a way to crash workloads (`up` has one: its agent's supervisor). */
  crashWith(fn: CrashWorkload | undefined): void {
    this.crash = fn;
  }

  get canCrash(): boolean {
    return this.crash !== undefined;
  }

  /** Validates the request against the cloud as it is, then starts the run; answers its first view. */
  async start(req: ChaosRequest): Promise<ChaosRunView> {
    if (this.closed) throw new VipdipError('UNAVAILABLE', 'the server is shutting down');
    checkRates(req.rates);
    if ((req.rates.crash ?? 0) > 0 && this.crash === undefined) {
      throw new VipdipError(
        'DRIVER_UNSUPPORTED',
        'crash: this server runs no workloads (no data-plane agent in its process); run chaos against `vipdip up`, or leave crash out',
      );
    }
    for (const r of this.runs.values()) {
      if (r.view.state !== 'running' && r.view.state !== 'stopping') continue;
      if (
        r.view.subscription === null ||
        req.subscription === null ||
        r.view.subscription === req.subscription
      ) {
        throw new VipdipError(
          'CONFLICT',
          `chaos run ${r.view.id} is already running over ${r.view.subscription === null ? 'the whole fabric' : `subscription ${r.view.subscription}`}: stop it first`,
        );
      }
    }
    const topology = await this.topology(req);
    const id = (this.opts.newId ?? (() => randomBytes(3).toString('hex')))();
    const now = this.opts.clock.now();
    const view: ChaosRunView = {
      id,
      reason: `chaos run ${id}`,
      subscription: req.subscription,
      services: req.services === null ? null : [...req.services],
      seed: req.seed,
      rates: { ...req.rates },
      pauseMs: req.pauseMs,
      durationMs: req.durationMs,
      state: 'running',
      startedAt: now.toISOString(),
      endsAt: req.durationMs === null ? null : new Date(now.getTime() + req.durationMs).toISOString(),
      endedAt: null,
      note: null,
      counts: emptyCounts(),
      next: null,
      recent: [],
    };
    const run: Run = {
      view,
      startMs: now.getTime(),
      schedule: new ChaosSchedule({
        seed: req.seed,
        topology,
        rates: req.rates,
        pauseMs: req.pauseMs,
        durationMs: req.durationMs,
      }),
      taken: new Map(),
      wake: undefined,
      stopRequested: false,
      done: Promise.resolve(),
    };
    this.runs.set(id, run);
    this.forgetOld();
    run.done = this.loop(run);
    return this.snapshot(run);
  }

  /** Runs, newest first; only those over `subscription` when given. */
  list(subscription?: string): ChaosRunView[] {
    return [...this.runs.values()]
      .filter((r) => subscription === undefined || r.view.subscription === subscription)
      .map((r) => this.snapshot(r))
      .reverse();
  }

  /** One run; another subscription's run (or one this process does not know) answers NOT_FOUND. */
  get(id: string, subscription?: string): ChaosRunView {
    return this.snapshot(this.find(id, subscription));
  }

  /**
   * Stops a run: no new weather, and what it took away (deallocated VMs, released VIPs) is given back
   * at once. Resolves with the run once it has ended.
   */
  async stop(id: string, subscription?: string, note = 'stopped on request'): Promise<ChaosRunView> {
    const run = this.find(id, subscription);
    if (run.view.state === 'running') {
      run.view.state = 'stopping';
      run.view.note = note;
      run.stopRequested = true;
      run.wake?.();
    }
    await run.done;
    return this.snapshot(run);
  }

  /** Stops every run (the server is closing) and waits for them. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(
      [...this.runs.values()]
        .filter((r) => r.view.state === 'running')
        .map((r) => this.stop(r.view.id, undefined, 'stopped: the server shut down')),
    );
  }

  private find(id: string, subscription?: string): Run {
    const run = this.runs.get(id);
    if (run === undefined || (subscription !== undefined && run.view.subscription !== subscription)) {
      throw new VipdipError(
        'NOT_FOUND',
        `chaos run ${id} is not known to this server (runs live in the memory of the server that started them: one restarted since, or another replica, does not know them)`,
      );
    }
    return run;
  }

  private snapshot(run: Run): ChaosRunView {
    const v = run.view;
    return structuredClone({ ...v, recent: v.recent.slice(-RECENT_STEPS_KEPT) });
  }

  private forgetOld(): void {
    const ended = [...this.runs.values()].filter(
      (r) => r.view.state !== 'running' && r.view.state !== 'stopping',
    );
    for (const r of ended.slice(0, Math.max(0, ended.length - ENDED_RUNS_KEPT))) this.runs.delete(r.view.id);
  }

  private async topology(req: ChaosRequest): Promise<ChaosTopology> {
    const { cloud } = this.opts;
    const [hosts, allServices] = await Promise.all([
      cloud.listHosts(),
      req.subscription === null ? cloud.listServices() : cloud.listServices(req.subscription),
    ]);
    if (req.subscription !== null && !(await this.subscriptionExists(req.subscription))) {
      throw new VipdipError('NOT_FOUND', `subscription ${req.subscription} does not exist`);
    }
    let services = allServices;
    if (req.services !== null) {
      const names = new Set(allServices.map((s) => s.name));
      const missing = req.services.filter((s) => !names.has(s));
      if (missing.length > 0) {
        throw new VipdipError(
          'NOT_FOUND',
          `cloud service ${missing.join(', ')} does not exist in subscription ${req.subscription ?? '(any)'}`,
        );
      }
      const wanted = new Set(req.services);
      services = allServices.filter((s) => wanted.has(s.name));
    }
    const inScope = new Set(services.map((s) => `${s.subscription}/${s.name}`));
    const vms = (
      await cloud.listVms(req.subscription === null ? {} : { subscription: req.subscription })
    ).filter((v) => inScope.has(`${v.subscription}/${v.service}`));
    return {
      hosts: hosts.map((h) => ({ name: h.name, rack: h.rack })),
      services: services.map((s) => ({
        subscription: s.subscription,
        name: s.name,
        reservedIp: s.reservedIp !== null,
      })),
      vms: vms.map((v) => ({
        subscription: v.subscription,
        service: v.service,
        name: v.name,
        allocated: v.state === 'running' || v.state === 'stopped',
        workload: v.workload !== null,
      })),
    };
  }

  private async subscriptionExists(name: string): Promise<boolean> {
    // A listing of a missing subscription is empty, not an error: ask for the subscriptions.
    return (await this.opts.cloud.listSubscriptions()).some((s) => s.name === name);
  }

  private async loop(run: Run): Promise<void> {
    try {
      for (;;) {
        const step = run.schedule.next();
        if (step === undefined) break;
        run.view.next = {
          seq: step.seq,
          at: new Date(run.startMs + step.at).toISOString(),
          action: step.action,
          target: describeTarget(step),
        };
        const arrived = await this.until(run, run.startMs + step.at);
        if (!arrived) {
          // A stop: a follow-up already handed out still runs, with every other one owed.
          if (isFollowUp(step)) await this.perform(run, step);
          break;
        }
        await this.perform(run, step);
      }
      run.view.next = null;
      for (const step of run.schedule.drain()) await this.perform(run, step);
      run.view.state = run.stopRequested ? 'stopped' : 'finished';
    } catch (e) {
      run.view.state = 'failed';
      run.view.note = `the run failed: ${(e as Error).message}`;
      this.opts.onError?.(e);
    } finally {
      run.view.next = null;
      run.view.endedAt = this.opts.clock.now().toISOString();
    }
  }

  /** Waits until the wall time `atMs`; false if a stop came first. */
  private until(run: Run, atMs: number): Promise<boolean> {
    if (run.stopRequested) return Promise.resolve(false);
    const wait = atMs - this.opts.clock.now().getTime();
    if (wait <= 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        run.wake = undefined;
        resolve(true);
      }, wait);
      run.wake = () => {
        clearTimeout(timer);
        run.wake = undefined;
        resolve(false);
      };
    });
  }

  private async perform(run: Run, step: ChaosStep): Promise<void> {
    const kind = kindOf(step.action);
    let outcome: ChaosStepRecord['outcome'] = 'done';
    let detail: string;
    try {
      detail = await this.operate(run, step);
    } catch (e) {
      if (isVipdipError(e) && SKIPPABLE.has(e.code)) {
        outcome = 'skipped';
        detail = e.message;
      } else if (isVipdipError(e, 'UNAVAILABLE')) {
        outcome = 'failed';
        detail = e.message;
      } else {
        throw e;
      }
    }
    if (detail.startsWith('skipped: ')) {
      outcome = 'skipped';
      detail = detail.slice('skipped: '.length);
    }
    const record: ChaosStepRecord = {
      seq: step.seq,
      time: this.opts.clock.now().toISOString(),
      action: step.action,
      kind,
      target: describeTarget(step),
      outcome,
      detail,
    };
    run.view.counts[kind][outcome]++;
    run.view.recent.push(record);
    if (run.view.recent.length > RECENT_STEPS_KEPT) run.view.recent.shift();
    await this.opts.afterStep?.(this.snapshot(run), record);
  }

  /** Performs one step; answers what changed, or `skipped: why`. */
  private async operate(run: Run, step: ChaosStep): Promise<string> {
    const { cloud } = this.opts;
    const reason = `${run.view.reason}: ${step.action}`;
    switch (step.action) {
      case 'host-maintenance':
      case 'rack-maintenance': {
        const target = step.action === 'host-maintenance' ? { host: step.host } : { rack: step.rack };
        const moved = await cloud.maintenance(target, {
          reason: `${run.view.reason}: maintenance of ${describeTarget(step)}`,
        });
        return moved.length === 0
          ? 'no allocated VM there: nothing moved'
          : `moved ${moved.map((v) => `${v.service}/${v.name} → ${v.host} ${v.dip ?? ''}`.trim()).join(', ')}`;
      }
      case 'redeploy':
      case 'deallocate':
      case 'start': {
        const t = step.target;
        const ref = { subscription: t.subscription, service: t.service, vm: t.vm };
        if (step.action === 'start') {
          const now = await cloud.vmOperation(ref, 'start', reason, (v) => {
            if (v.state !== 'deallocated')
              throw new VipdipError('INVALID_TRANSITION', `${t.service}/${t.vm} is ${v.state} again already`);
          });
          return `started on ${now?.host ?? '?'} with DIP ${now?.dip ?? '-'}`;
        }
        const after = await cloud.vmOperation(ref, step.action, reason);
        return step.action === 'redeploy'
          ? `now on ${after?.host ?? '?'} with DIP ${after?.dip ?? '-'}`
          : 'deallocated: its DIP is released';
      }
      case 'crash': {
        if (this.crash === undefined) return 'skipped: no workload supervisor in this process';
        return (await this.crash(step.target))
          ? 'workload killed (SIGKILL); its supervisor restarts it'
          : 'skipped: its workload is not running';
      }
      case 'release-vip': {
        const t = step.target;
        const service = (await cloud.listServices(t.subscription)).find((s) => s.name === t.service);
        if (service === undefined) return `skipped: cloud service ${t.service} does not exist any more`;
        if (service.reservedIp !== null)
          return `skipped: ${t.service} has a reserved IP now, which no deallocation takes`;
        const vms = (await cloud.listVms({ subscription: t.subscription, service: t.service })).filter(
          (v) => v.state === 'running' || v.state === 'stopped',
        );
        const taken: string[] = [];
        run.taken.set(`${t.subscription}/${t.service}`, taken);
        for (const v of vms) {
          await cloud.vmOperation(
            { subscription: t.subscription, service: t.service, vm: v.name },
            'deallocate',
            reason,
          );
          taken.push(v.name);
        }
        return `deallocated ${taken.join(', ') || 'nothing'}: VIP ${service.vip ?? '(none)'} released`;
      }
      case 'restore-vip': {
        const t = step.target;
        const taken = run.taken.get(`${t.subscription}/${t.service}`) ?? [];
        run.taken.delete(`${t.subscription}/${t.service}`);
        const started: string[] = [];
        for (const name of taken) {
          try {
            await cloud.vmOperation(
              { subscription: t.subscription, service: t.service, vm: name },
              'start',
              reason,
              (v) => {
                if (v.state !== 'deallocated')
                  throw new VipdipError('INVALID_TRANSITION', `${t.service}/${name} is ${v.state} already`);
              },
            );
            started.push(name);
          } catch (e) {
            if (!(isVipdipError(e) && SKIPPABLE.has(e.code))) throw e;
          }
        }
        if (started.length === 0) return `skipped: nothing of ${t.service} left to start`;
        const service = (await cloud.listServices(t.subscription)).find((s) => s.name === t.service);
        return `started ${started.join(', ')}: VIP ${service?.vip ?? '(none)'}`;
      }
    }
  }
}
