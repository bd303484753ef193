import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HealthMonitor, UNKNOWN_RETRY_MS, type HealthStatus, type ProbeSpec } from './health.ts';
import { ManualTime } from './time.ts';

const spec = (over: Partial<ProbeSpec> = {}): ProbeSpec => ({
  protocol: 'tcp',
  address: '127.16.1.10',
  port: 8000,
  intervalMs: 15_000,
  timeoutMs: 31_000,
  ...over,
});

/** A monitor over a manual clock and a prober whose answer the test sets. */
function rig() {
  const time = new ManualTime();
  const answers = new Map<string, boolean>();
  const probes: string[] = [];
  const changes: [string, HealthStatus][] = [];
  const monitor = new HealthMonitor({
    time,
    prober: (s) => {
      probes.push(s.address);
      const ok = answers.get(s.address) ?? false;
      return Promise.resolve({ ok, detail: ok ? 'connected' : 'connection refused' });
    },
    onChange: (key, status) => changes.push([key, status]),
  });
  /** Advances the clock in small steps, letting each probe's answer land before the next step. */
  const run = async (ms: number, stepMs = 100) => {
    for (let t = 0; t < ms; t += stepMs) {
      time.advance(Math.min(stepMs, ms - t));
      await new Promise((r) => setImmediate(r));
    }
  };
  return { time, answers, probes, changes, monitor, run };
}

describe('health probes', () => {
  test('a new backend is unknown, and up after its first answer', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.monitor.setTargets(new Map([['web1', spec()]]));
    assert.equal(r.monitor.status('web1')!.state, 'unknown');
    await r.run(10);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    assert.deepEqual(
      r.changes.map(([k, s]) => [k, s.state]),
      [['web1', 'up']],
    );
    r.monitor.close();
  });

  test('a backend that never answered is retried often, then down once the timeout has passed', async () => {
    const r = rig();
    r.monitor.setTargets(new Map([['web1', spec()]]));
    await r.run(10_000);
    assert.ok(r.probes.length >= 10_000 / UNKNOWN_RETRY_MS, `${r.probes.length} probes in 10 s`);
    assert.equal(r.monitor.status('web1')!.state, 'unknown');
    await r.run(31_000);
    assert.equal(r.monitor.status('web1')!.state, 'down');
    assert.equal(r.monitor.status('web1')!.detail, 'connection refused');
    r.monitor.close();
  });

  test('an up backend goes down within interval + timeout of its last answer, and back up on the next', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.monitor.setTargets(new Map([['web1', spec({ intervalMs: 5000, timeoutMs: 11_000 })]]));
    await r.run(20_000);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    const lastOk = r.time.now() - (r.time.now() % 5000);
    r.answers.set('127.16.1.10', false);
    await r.run(10_000);
    assert.equal(r.monitor.status('web1')!.state, 'up', 'one missed interval is not a failure yet');
    await r.run(6_000);
    const down = r.changes.find(([, s]) => s.state === 'down');
    assert.ok(down !== undefined, 'down by interval + timeout');
    assert.ok(
      down[1].since - lastOk <= 5000 + 11_000,
      `down ${down[1].since - lastOk} ms after the last answer`,
    );
    r.answers.set('127.16.1.10', true);
    await r.run(5_000);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    assert.deepEqual(
      r.changes.map(([, s]) => s.state),
      ['up', 'down', 'up'],
    );
    r.monitor.close();
  });

  test('probes go out once per interval while a backend is up', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.monitor.setTargets(new Map([['web1', spec({ intervalMs: 5000, timeoutMs: 5000 })]]));
    await r.run(60_000);
    assert.ok(r.probes.length >= 12 && r.probes.length <= 14, `${r.probes.length} probes in 60 s`);
    r.monitor.close();
  });

  test('an unchanged target keeps its state; a changed address starts again as unknown', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.answers.set('127.16.1.77', true);
    r.monitor.setTargets(new Map([['web1', spec()]]));
    await r.run(100);
    r.monitor.setTargets(new Map([['web1', spec()]]));
    assert.equal(r.monitor.status('web1')!.state, 'up');
    r.monitor.setTargets(new Map([['web1', spec({ address: '127.16.1.77' })]]));
    assert.equal(r.monitor.status('web1')!.state, 'unknown');
    await r.run(100);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    assert.equal(r.probes.at(-1), '127.16.1.77');
    r.monitor.close();
  });

  test('a removed target is no longer probed, and a late answer for it changes nothing', async () => {
    const r = rig();
    let release: (() => void) | undefined;
    const time = new ManualTime();
    const changes: string[] = [];
    const m = new HealthMonitor({
      time,
      prober: () =>
        new Promise((resolve) => {
          release = () => resolve({ ok: true, detail: 'connected' });
        }),
      onChange: (k, s) => changes.push(`${k} ${s.state}`),
    });
    m.setTargets(new Map([['web1', spec()]]));
    m.setTargets(new Map());
    release!();
    await new Promise((res) => setImmediate(res));
    assert.deepEqual(changes, []);
    assert.equal(m.status('web1'), undefined);
    assert.equal(time.pending, 0);
    m.close();
    r.monitor.close();
  });

  test('closing the monitor stops every probe', async () => {
    const r = rig();
    r.monitor.setTargets(
      new Map([
        ['a', spec()],
        ['b', spec({ address: '127.16.1.11' })],
      ]),
    );
    await r.run(10);
    r.monitor.close();
    const n = r.probes.length;
    await r.run(60_000, 1000);
    assert.equal(r.probes.length, n);
    assert.equal(r.time.pending, 0);
  });

  test('a backend marked down from outside is down at once, probed quickly, and up after a later probe passes', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.monitor.setTargets(new Map([['web1', spec()]]));
    await r.run(10);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    r.answers.set('127.16.1.10', false);
    assert.equal(r.monitor.markDown('web1', 'the workload exited'), true);
    assert.deepEqual(r.monitor.status('web1'), {
      state: 'down',
      since: r.time.now(),
      detail: 'the workload exited',
    });
    assert.equal(r.monitor.markDown('nobody', 'x'), false);
    const before = r.probes.length;
    await r.run(5000);
    assert.ok(r.probes.length - before >= 4, 'probed at the quick rhythm while marked down');
    assert.equal(r.monitor.status('web1')!.state, 'down');
    r.answers.set('127.16.1.10', true);
    await r.run(UNKNOWN_RETRY_MS + 100);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    const settled = r.probes.length;
    await r.run(10_000);
    assert.ok(r.probes.length - settled <= 1, 'back to the interval once up');
    assert.deepEqual(
      r.changes.map(([, s]) => s.state),
      ['up', 'down', 'up'],
    );
    r.monitor.close();
  });

  test('a probe sent before a backend was marked down cannot bring it back up', async () => {
    const time = new ManualTime();
    let answer: ((ok: boolean) => void) | undefined;
    const monitor = new HealthMonitor({
      time,
      prober: () =>
        new Promise((res) => (answer = (ok) => res({ ok, detail: ok ? 'connected' : 'refused' }))),
      onChange: () => {},
    });
    monitor.setTargets(new Map([['web1', spec()]]));
    monitor.markDown('web1', 'connects failed');
    answer!(true);
    await new Promise((r) => setImmediate(r));
    assert.equal(monitor.status('web1')!.state, 'down');
    monitor.close();
  });

  test('a backend held down stays down while its probes pass, until released', async () => {
    const r = rig();
    r.answers.set('127.16.1.10', true);
    r.monitor.setTargets(new Map([['web1', spec()]]));
    await r.run(10);
    r.monitor.markDown('web1', 'the workload is restarting', { hold: true });
    await r.run(5000);
    assert.equal(r.monitor.status('web1')!.state, 'down', 'passing probes do not end a hold');
    r.monitor.release('web1');
    await r.run(UNKNOWN_RETRY_MS + 100);
    assert.equal(r.monitor.status('web1')!.state, 'up');
    r.monitor.close();
  });
});
