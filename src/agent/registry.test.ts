import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { Clock } from '../core/index.ts';
import { StatusRegistry } from './registry.ts';
import type { AgentReport, BackendReport, HealthChange } from './report.ts';

class FakeClock implements Clock {
  t = Date.UTC(2026, 0, 1);
  now(): Date {
    return new Date(this.t);
  }
}

const backend = (vm: string, state: BackendReport['state'], dip = '127.16.1.1'): BackendReport => ({
  subscription: 'contoso',
  service: 'shop',
  endpoint: 'http',
  vm,
  dip,
  localPort: 8000,
  state,
  since: '2026-01-01T00:00:00.000Z',
  detail: null,
});

const report = (agent: string, backends: BackendReport[], over: Partial<AgentReport> = {}): AgentReport => ({
  agent,
  hosts: null,
  lb: true,
  driver: 'local',
  backends,
  workloads: [],
  listeners: [],
  ...over,
});

describe('the status registry', () => {
  test('health messages go out on changes only, with the subscription for filtering', () => {
    const clock = new FakeClock();
    const r = new StatusRegistry(clock, 15_000);
    const got: [HealthChange, string][] = [];
    r.onHealth((e, sub) => got.push([e, sub]));
    r.accept(report('a', [backend('web1', 'unknown')]));
    r.accept(report('a', [backend('web1', 'unknown')]));
    r.accept(report('a', [backend('web1', 'up')]));
    assert.deepEqual(
      got.map(([e, s]) => [e.vm, e.state, s]),
      [
        ['web1', 'unknown', 'contoso'],
        ['web1', 'up', 'contoso'],
      ],
    );
    assert.deepEqual(Object.keys(got[0]![0]).sort(), [
      'detail',
      'dip',
      'endpoint',
      'service',
      'since',
      'state',
      'vm',
    ]);
    r.close();
  });

  test("an agent's backends read unknown once its report is stale, and a message says so", () => {
    const clock = new FakeClock();
    const r = new StatusRegistry(clock, 15_000);
    const got: HealthChange[] = [];
    r.onHealth((e) => got.push(e));
    r.accept(report('a', [backend('web1', 'up')]));
    clock.t += 10_000;
    assert.equal(r.backends('shop').get('web1/http')!.state, 'up');
    clock.t += 10_000;
    const b = r.backends('shop').get('web1/http')!;
    assert.equal(b.state, 'unknown');
    assert.equal(b.stale, true);
    assert.match(b.detail!, /no report from agent a for 20 s/);
    (r as unknown as { announce(): void }).announce();
    assert.deepEqual(
      got.map((e) => e.state),
      ['up', 'unknown'],
    );
    r.close();
  });

  test('a backend that leaves every report is announced down', () => {
    const r = new StatusRegistry(new FakeClock(), 15_000);
    const got: HealthChange[] = [];
    r.onHealth((e) => got.push(e));
    r.accept(report('a', [backend('web1', 'up'), backend('web2', 'up')]));
    r.accept(report('a', [backend('web2', 'up')]));
    assert.deepEqual(
      got.map((e) => `${e.vm} ${e.state}`),
      ['web1 up', 'web2 up', 'web1 down'],
    );
    r.close();
  });

  test('the freshest report of a backend wins, and a forgotten agent stops counting', () => {
    const clock = new FakeClock();
    const r = new StatusRegistry(clock, 15_000);
    r.accept(report('a', [backend('web1', 'up')]));
    clock.t += 1000;
    r.accept(report('b', [backend('web1', 'down')]));
    assert.equal(r.backends('shop').get('web1/http')!.agent, 'b');
    r.forget('b');
    assert.equal(r.backends('shop').get('web1/http')!.state, 'up');
    r.close();
  });

  test('a workload is read from the agent that runs it now rather than one that ran it before', () => {
    const clock = new FakeClock();
    const r = new StatusRegistry(clock, 15_000);
    const w = (status: 'running' | 'stopped', pid: number | null) => ({
      subscription: 'contoso',
      service: 'shop',
      vm: 'web1',
      workload: 'whoami',
      status,
      pid,
      restarts: 0,
      lines: [],
    });
    r.accept(report('a', [], { workloads: [w('running', 42)] }));
    clock.t += 1000;
    r.accept(report('b', [], { workloads: [w('stopped', null)] }));
    assert.deepEqual([r.workload('shop', 'web1')!.agent, r.workload('shop', 'web1')!.pid], ['a', 42]);
    assert.equal(r.workload('shop', 'nope'), undefined);
    r.close();
  });
});
