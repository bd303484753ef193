/** Prometheus metrics at /metrics: requests, latencies, addresses per pool, VMs per state, events. */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { Cloud } from '../lifecycle/index.ts';
import type { AdmissionStats } from './admission.ts';
import type { DataPlaneStatus } from './context.ts';

export class Metrics {
  readonly registry = new Registry();
  readonly requests = new Counter({
    name: 'vipdip_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [this.registry],
  });
  readonly latency = new Histogram({
    name: 'vipdip_http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames: ['method', 'route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly events = new Counter({
    name: 'vipdip_events_total',
    help: 'events committed by any replica and applied by this one, by type',
    labelNames: ['type'],
    registers: [this.registry],
  });

  constructor(cloud: Cloud, status?: Pick<DataPlaneStatus, 'listenerStats'>, admission?: AdmissionStats) {
    const registry = this.registry;
    if (status !== undefined) {
      // The data plane's counters as its agents last reported them, per listener (VIP:port).
      new Gauge({
        name: 'vipdip_lb_flows_active',
        help: 'flows open now on each data-plane listener',
        labelNames: ['listener'],
        registers: [registry],
        collect() {
          this.reset();
          for (const l of status.listenerStats()) this.set({ listener: l.key }, l.activeFlows);
        },
      });
      new Counter({
        name: 'vipdip_lb_flows_total',
        help: 'new flows on each data-plane listener, by outcome (accepted, denied by the ACL, no healthy backend, over a limit)',
        labelNames: ['listener', 'outcome'],
        registers: [registry],
        collect() {
          this.reset();
          for (const l of status.listenerStats()) {
            this.inc({ listener: l.key, outcome: 'accepted' }, l.accepted);
            this.inc({ listener: l.key, outcome: 'denied_acl' }, l.deniedAcl);
            this.inc({ listener: l.key, outcome: 'no_backend' }, l.noBackend);
            this.inc({ listener: l.key, outcome: 'over_limit' }, l.overLimit);
          }
        },
      });
    }
    new Gauge({
      name: 'vipdip_pool_addresses',
      help: 'addresses of each public pool and subnet, bound or free',
      labelNames: ['range', 'state'],
      registers: [registry],
      async collect() {
        this.reset();
        for (const p of await cloud.listPools()) {
          this.set({ range: `pool ${p.cidr}`, state: 'bound' }, p.bound);
          this.set({ range: `pool ${p.cidr}`, state: 'free' }, p.free);
        }
        for (const v of await cloud.listVnets()) {
          for (const s of v.subnets) {
            const range = `subnet ${v.subscription}/${v.name}/${s.name}`;
            this.set({ range, state: 'bound' }, s.bound);
            this.set({ range, state: 'free' }, s.free);
          }
        }
      },
    });
    new Gauge({
      name: 'vipdip_vms',
      help: 'VMs per state',
      labelNames: ['state'],
      registers: [registry],
      async collect() {
        const counts = { running: 0, stopped: 0, deallocated: 0 };
        for (const vm of await cloud.listVms()) counts[vm.state]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    // Work of the store and of the allocation indexes, read when scraped. Across replicas the
    // refusals and reloads say how often this replica's index was behind the others' commits.
    const counted = (name: string, help: string, read: () => number) =>
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    counted(
      'vipdip_store_statements_total',
      'statements sent to the store (its round trips)',
      () => cloud.store.statements,
    );
    if (cloud.store.commits !== undefined) {
      // Group commit (SQLite): concurrent writes share a commit, so writes / commits is the group size.
      counted(
        'vipdip_store_commits_total',
        'transactions the store committed that wrote something',
        () => cloud.store.commits ?? 0,
      );
      counted(
        'vipdip_store_writes_total',
        'writes committed, several per commit when grouped',
        () => cloud.store.writes ?? 0,
      );
    }
    counted(
      'vipdip_store_retries_total',
      'transactions run again after losing a race the database detected',
      () => cloud.store.retries ?? 0,
    );
    counted(
      'vipdip_address_refusals_total',
      'drawn addresses the store refused because another writer held them',
      () => cloud.book.refusals,
    );
    counted(
      'vipdip_address_reloads_total',
      'address ranges reloaded from the store because the index was behind',
      () => cloud.book.resyncs,
    );
    if (admission !== undefined) {
      // Early refusal (admission.ts) happens before Fastify, so its requests are not in the
      // request counters above: these say how much was admitted and refused there, and what waits.
      counted(
        'vipdip_admission_admitted_total',
        'writes admitted by admission control',
        () => admission.admitted,
      );
      counted(
        'vipdip_admission_refused_total',
        'writes refused early with 503 OVERLOADED (queue full or waited too long)',
        () => admission.refused,
      );
      new Gauge({
        name: 'vipdip_admission_writes',
        help: 'writes running or waiting for admission now',
        labelNames: ['state'],
        registers: [registry],
        collect() {
          this.set({ state: 'running' }, admission.inFlight);
          this.set({ state: 'waiting' }, admission.queued);
        },
      });
    }
    cloud.onEvents((events) => {
      for (const e of events) this.events.inc({ type: e.type });
    });
  }
}
