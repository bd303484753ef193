import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ChaosSchedule,
  describeTarget,
  type ChaosStep,
  type ChaosTopology,
  type ScheduleOptions,
} from './schedule.ts';

const TOPOLOGY: ChaosTopology = {
  hosts: [
    { name: 'rack1-host1', rack: 'rack1' },
    { name: 'rack1-host2', rack: 'rack1' },
    { name: 'rack2-host1', rack: 'rack2' },
    { name: 'rack2-host2', rack: 'rack2' },
  ],
  services: [
    { subscription: 'contoso', name: 'shop', reservedIp: true },
    { subscription: 'contoso', name: 'api', reservedIp: false },
  ],
  vms: [
    { subscription: 'contoso', service: 'shop', name: 'web1', allocated: true, workload: true },
    { subscription: 'contoso', service: 'shop', name: 'web2', allocated: true, workload: true },
    { subscription: 'contoso', service: 'shop', name: 'db1', allocated: true, workload: false },
    { subscription: 'contoso', service: 'api', name: 'api1', allocated: true, workload: true },
    { subscription: 'contoso', service: 'api', name: 'spare', allocated: false, workload: true },
  ],
};

const BRISK = { maintenance: 6, redeploy: 12, deallocate: 12, vip: 6, crash: 12 };
const opts = (o: Partial<ScheduleOptions> = {}): ScheduleOptions => ({
  seed: 7,
  topology: TOPOLOGY,
  rates: BRISK,
  pauseMs: 5000,
  durationMs: null,
  ...o,
});

test('the same seed over the same topology gives the same sequence of operations', () => {
  const a = ChaosSchedule.take(opts(), 300);
  const b = ChaosSchedule.take(opts(), 300);
  assert.equal(a.length, 300);
  assert.deepEqual(a, b);
  const other = ChaosSchedule.take(opts({ seed: 8 }), 300);
  assert.notDeepEqual(
    a.map((s) => [s.action, describeTarget(s)]),
    other.map((s) => [s.action, describeTarget(s)]),
  );
});

test('steps come in time order with consecutive sequence numbers, and every kind at a rate shows up', () => {
  const steps = ChaosSchedule.take(opts(), 400);
  steps.forEach((s, i) => {
    assert.equal(s.seq, i);
    if (i > 0) assert.ok(s.at >= steps[i - 1]!.at, `step ${i} goes back in time`);
  });
  const actions = new Set(steps.map((s) => s.action));
  for (const a of [
    'host-maintenance',
    'rack-maintenance',
    'redeploy',
    'deallocate',
    'start',
    'crash',
    'release-vip',
    'restore-vip',
  ])
    assert.ok(actions.has(a as ChaosStep['action']), `no ${a} in 400 steps`);
});

test('the observed rate of each kind is close to the rate asked for', () => {
  const durationMs = 60 * 60_000; // an hour at 12/min: 720 expected, Poisson sd ≈ 27
  const steps = ChaosSchedule.take(opts({ durationMs, rates: { redeploy: 12 } }), 10_000);
  assert.ok(Math.abs(steps.length - 720) < 120, `${steps.length} redeploys in an hour at 12/min`);
  assert.ok(steps.every((s) => s.at < durationMs));
});

test('a deallocated VM is started again after the pause, and never picked while it is away', () => {
  const steps = ChaosSchedule.take(opts({ rates: { deallocate: 30, redeploy: 30, crash: 30 } }), 500);
  const away = new Map<string, number>();
  for (const s of steps) {
    const t = describeTarget(s);
    if (s.action === 'deallocate') away.set(t, s.at);
    else if (s.action === 'start') {
      assert.equal(s.at, away.get(t)! + 5000, `${t} not started 5 s after its deallocation`);
      away.delete(t);
    } else assert.ok(!away.has(t), `${s.action} of ${t} while it is deallocated`);
    assert.notEqual(t, 'contoso/api/spare', 'a VM that was not allocated is never a target');
  }
});

test('only a service without a reserved IP loses its VIP, and its VMs are left alone until it is back', () => {
  const steps = ChaosSchedule.take(opts({ rates: { vip: 20, redeploy: 20 } }), 300);
  let releasedAt: number | undefined;
  for (const s of steps) {
    if (s.action === 'release-vip') {
      assert.equal(describeTarget(s), 'contoso/api');
      releasedAt = s.at;
    } else if (s.action === 'restore-vip') {
      assert.equal(s.at, releasedAt! + 5000);
      releasedAt = undefined;
    } else if (releasedAt !== undefined) {
      assert.ok(
        !describeTarget(s).startsWith('contoso/api/'),
        `${s.action} of ${describeTarget(s)} while api is down`,
      );
    }
  }
  assert.ok(steps.some((s) => s.action === 'release-vip'));
});

test('after the duration no new weather is drawn, but what was taken is still given back', () => {
  const durationMs = 60_000;
  const all: ChaosStep[] = [];
  const s = new ChaosSchedule(opts({ durationMs, rates: { deallocate: 60 }, pauseMs: 30_000 }));
  for (let step = s.next(); step !== undefined; step = s.next()) all.push(step);
  const deallocs = all.filter((x) => x.action === 'deallocate');
  const starts = all.filter((x) => x.action === 'start');
  assert.ok(deallocs.length > 0);
  assert.ok(deallocs.every((x) => x.at < durationMs));
  assert.equal(starts.length, deallocs.length, 'every deallocation has its start');
  assert.ok(
    starts.some((x) => x.at >= durationMs),
    'some start comes after the end',
  );
});

test('drain hands out every owed follow-up at once, with the next sequence numbers', () => {
  const s = new ChaosSchedule(opts({ rates: { deallocate: 600 }, pauseMs: 60_000 }));
  const first = [s.next()!, s.next()!, s.next()!];
  assert.ok(first.every((x) => x.action === 'deallocate'));
  const owed = s.drain();
  assert.deepEqual(
    owed.map((x) => [x.action, describeTarget(x), x.seq]),
    first.map((x, i) => ['start', describeTarget(x), 3 + i]),
  );
  assert.deepEqual(s.drain(), []);
});

test('a kind with nothing to act on draws nothing rather than failing', () => {
  const empty: ChaosTopology = { hosts: [], services: [], vms: [] };
  assert.deepEqual(ChaosSchedule.take(opts({ topology: empty, durationMs: 600_000 }), 50), []);
});
