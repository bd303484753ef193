/**
 * The control plane's record of what the data plane reports: the last report of each agent, read by
 * the API's health and logs routes and turned into live `health` messages on the event stream. An
 * agent that stops reporting goes stale after a bounded time, and its backends then read `unknown`.
 */
import type { Clock } from '../core/index.ts';
import type { ListenerStatus } from '../dataplane/index.ts';
import type { AgentReport, BackendReport, HealthChange, WorkloadReport } from './report.ts';

/** Agents report at least every few seconds (AGENT_HEARTBEAT_MS); three missed ones make a report stale. */
export const AGENT_HEARTBEAT_MS = 5000;
export const REPORT_STALE_MS = 3 * AGENT_HEARTBEAT_MS;

interface Held {
  report: AgentReport;
  at: number;
}

export interface BackendEntry extends BackendReport {
  agent: string;
  stale: boolean;
}

export interface WorkloadEntry extends WorkloadReport {
  agent: string;
  stale: boolean;
  reportedAt: string;
}

export type HealthListener = (e: HealthChange, subscription: string) => void;

const backendKey = (service: string, vm: string, endpoint: string) => `${service}/${vm}/${endpoint}`;

export class StatusRegistry {
  private readonly agents = new Map<string, Held>();
  private readonly healthListeners = new Set<HealthListener>();
  /** The state last announced per backend, so only changes go out. */
  private announced = new Map<string, { state: string; dip: string | null; subscription: string }>();
  private sweeper: NodeJS.Timeout | undefined;

  constructor(
    private readonly clock: Clock,
    private readonly staleMs = REPORT_STALE_MS,
  ) {
    this.sweeper = setInterval(() => this.announce(), Math.max(250, staleMs / 3));
    this.sweeper.unref();
  }

  /** Takes an agent's whole report, replacing its last one. */
  accept(report: AgentReport): void {
    this.agents.set(report.agent, { report, at: this.clock.now().getTime() });
    this.announce();
  }

  /** Forgets an agent that has stopped for good (its backends read unknown at once). */
  /** Forgets an agent's reports; false when no agent of that name has reported. */
  forget(agent: string): boolean {
    if (!this.agents.delete(agent)) return false;
    this.announce();
    return true;
  }

  onHealth(fn: HealthListener): () => void {
    this.healthListeners.add(fn);
    return () => this.healthListeners.delete(fn);
  }

  /** The freshest report of each backend of `service`, keyed `vm/endpoint`. */
  backends(service: string): Map<string, BackendEntry> {
    const out = new Map<string, BackendEntry>();
    for (const e of this.allBackends()) {
      if (e.service === service) out.set(`${e.vm}/${e.endpoint}`, e);
    }
    return out;
  }

  workload(service: string, vm: string): WorkloadEntry | undefined {
    let best: WorkloadEntry | undefined;
    let bestAt = -1;
    const now = this.clock.now().getTime();
    for (const [agent, h] of this.agents) {
      const w = h.report.workloads.find((x) => x.service === service && x.vm === vm);
      // A running report beats a stopped one (the agent that runs it now beats the one that ran it).
      const rank = h.at + (w?.status === 'running' || w?.status === 'starting' ? 1e13 : 0);
      if (w !== undefined && rank > bestAt) {
        bestAt = rank;
        best = {
          ...w,
          agent,
          stale: now - h.at > this.staleMs,
          reportedAt: new Date(h.at).toISOString(),
        };
      }
    }
    return best;
  }

  listenerStats(): ListenerStatus[] {
    return [...this.agents.values()].flatMap((h) => h.report.listeners);
  }

  /** The agents heard from, for an operator's view. */
  agentsSeen(): {
    agent: string;
    hosts: string[] | null;
    lb: boolean;
    driver: string;
    reportedAt: string;
    stale: boolean;
  }[] {
    const now = this.clock.now().getTime();
    return [...this.agents.values()].map((h) => ({
      agent: h.report.agent,
      hosts: h.report.hosts,
      lb: h.report.lb,
      driver: h.report.driver,
      reportedAt: new Date(h.at).toISOString(),
      stale: now - h.at > this.staleMs,
    }));
  }

  close(): void {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.healthListeners.clear();
  }

  private allBackends(): BackendEntry[] {
    const best = new Map<string, { e: BackendEntry; at: number }>();
    const now = this.clock.now().getTime();
    for (const [agent, h] of this.agents) {
      const stale = now - h.at > this.staleMs;
      for (const b of h.report.backends) {
        const key = backendKey(b.service, b.vm, b.endpoint);
        const prev = best.get(key);
        if (prev !== undefined && prev.at >= h.at) continue;
        const e: BackendEntry = stale
          ? {
              ...b,
              agent,
              stale,
              state: 'unknown',
              detail: `no report from agent ${agent} for ${Math.round((now - h.at) / 1000)} s`,
            }
          : { ...b, agent, stale };
        best.set(key, { e, at: h.at });
      }
    }
    return [...best.values()].map((x) => x.e);
  }

  /** Sends a health message for every backend whose state (or DIP) differs from the last one sent. */
  private announce(): void {
    const next = new Map<string, { state: string; dip: string | null; subscription: string }>();
    const events: [HealthChange, string][] = [];
    for (const e of this.allBackends()) {
      const key = backendKey(e.service, e.vm, e.endpoint);
      next.set(key, { state: e.state, dip: e.dip, subscription: e.subscription });
      const prev = this.announced.get(key);
      if (prev === undefined || prev.state !== e.state || prev.dip !== e.dip) {
        events.push([
          {
            service: e.service,
            endpoint: e.endpoint,
            vm: e.vm,
            dip: e.dip,
            state: e.state,
            since: e.since,
            detail: e.detail,
          },
          e.subscription,
        ]);
      }
    }
    const now = this.clock.now().toISOString();
    for (const [key, prev] of this.announced) {
      if (next.has(key) || prev.state === 'down') continue;
      // No longer anyone's backend (its VM stopped, moved or went): out of rotation.
      const [service, vm, endpoint] = key.split('/') as [string, string, string];
      events.push([
        {
          service,
          endpoint,
          vm,
          dip: prev.dip,
          state: 'down',
          since: now,
          detail: 'no longer in the data plane',
        },
        prev.subscription,
      ]);
    }
    this.announced = next;
    for (const [e, sub] of events) for (const l of this.healthListeners) l(e, sub);
  }
}
