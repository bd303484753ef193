/**
 * `vipdip chaos` end to end: a real `vipdip up` (local driver, DNS), the CLI starting, showing and
 * stopping a run, and the probe through vipdip's DNS while the weather blows; bad input is one line
 * and a non-zero exit. Addresses: 127.242.0.0/16 (VNets), 127.243.0.0/24 (public pool).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { ChaosRunView, ProbeReport } from '../../src/chaos/index.ts';
import { chaosTopology } from '../fixtures/chaos-topology.ts';
import { startCloud, type RunningCloud } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';
import { vipdip } from '../support/server.ts';

let cloud: RunningCloud;
let env: Record<string, string>;
let dnsServer = '';

describe('vipdip chaos', () => {
  before(async () => {
    cloud = await startCloud({
      pool: '127.243.0.0/24',
      topology: chaosTopology(242),
      timeScale: 0.05,
      args: ['--dns', '127.0.0.1:0'],
    });
    env = { VIPDIP_URL: cloud.srv.url, VIPDIP_TOKEN: cloud.srv.operatorToken };
    dnsServer = await eventually(
      'the DNS address in the banner',
      () => /DNS on (\S+) \(UDP/.exec(cloud.srv.output())?.[1],
    );
    await cloud.allUp('shop', 3);
  });
  after(async () => {
    await cloud?.srv.stop();
  });

  test('start, status and stop a run from the CLI while a DNS probe sees the service through it', async () => {
    const start = await vipdip(
      [
        'chaos',
        'start',
        '-s',
        'contoso',
        '--rate',
        'redeploy=40/min,crash=20/min',
        '--duration',
        '30s',
        '--seed',
        '3',
        '--pause',
        '1s',
        '-o',
        'json',
      ],
      env,
    );
    assert.equal(start.code, 0, start.err);
    const run = JSON.parse(start.out) as ChaosRunView;
    assert.equal(run.subscription, 'contoso');
    assert.deepEqual(run.rates, { redeploy: 40, crash: 20 });

    const probe = await vipdip(
      [
        'chaos',
        'probe',
        '--via',
        'dns',
        'shop.cloudapp.vipdip.test:8080',
        '--dns-server',
        dnsServer,
        '--rate',
        '10/s',
        '--duration',
        '6s',
        '-o',
        'json',
      ],
      env,
    );
    assert.equal(probe.code, 0, probe.err);
    const report = JSON.parse(probe.out) as ProbeReport;
    assert.equal(report.via, 'dns');
    assert.ok(report.requests >= 50 && report.requests <= 60, `${report.requests} requests at 10/s for 6 s`);
    assert.ok(report.backends.length >= 1, 'whoami answered with its DIP');
    assert.equal(report.addressChanges, 0, 'a reserved IP: the name keeps its VIP');
    assert.equal(report.perMinute[0]?.requests, report.requests);

    const status = await vipdip(['chaos', 'status', run.id], env);
    assert.equal(status.code, 0, status.err);
    assert.match(status.out, new RegExp(`chaos run ${run.id} over subscription contoso: running`));
    assert.match(status.out, /next: #\d+ (redeploy|crash) contoso\/shop\//);
    assert.match(status.out, /redeploy\s+\d+/);

    const stop = await vipdip(['chaos', 'stop'], env);
    assert.equal(stop.code, 0, stop.err);
    assert.match(stop.out, new RegExp(`chaos run ${run.id} over subscription contoso: stopped`));
    const events = await cloud.ok<{ events: { reason: string }[] }>('GET', '/v1/events?order=desc&limit=50');
    assert.ok(
      events.events.some((e) => e.reason.startsWith(`chaos run ${run.id}: redeploy`)),
      'redeploys name the run',
    );

    const none = await vipdip(['chaos', 'stop'], env);
    assert.equal(none.code, 2);
    assert.equal(none.err, 'vipdip: chaos stop: no chaos run is running on this server\n');
  });

  test('bad input is one line and a non-zero exit, and a tenant reaches only its own subscription', async () => {
    const cases: [string[], number, RegExp][] = [
      [
        ['chaos', 'probe', '--via', 'vip', '10.1.2.3:80', '--duration', '1s'],
        2,
        /10\.1\.2\.3 is not a loopback address/,
      ],
      [
        ['chaos', 'probe', '--via', 'dns', 'shop.cloudapp.vipdip.test:8080', '--dns-server', '8.8.8.8:53'],
        2,
        /must be a loopback address/,
      ],
      [['chaos', 'probe', '--via', 'vip', '127.243.0.9:80', '--rate', 'lots'], 2, /--rate lots/],
      [['chaos', 'probe', '--via', 'carrier-pigeon', '127.243.0.9:80'], 2, /carrier-pigeon/],
      [['chaos', 'start', '-s', 'contoso', '--rate', 'storm=1/min'], 2, /unknown kind storm/],
      [
        ['chaos', 'start', '-s', 'contoso', '--rate', 'redeploy=1/min', '--duration', 'soon'],
        2,
        /--duration soon/,
      ],
      [['chaos', 'start', '--rate', 'redeploy=1/min'], 2, /give -s SUBSCRIPTION, or --fabric/],
      [['chaos', 'status', 'abc123'], 1, /not known to this server/],
    ];
    for (const [args, code, message] of cases) {
      const r = await vipdip(args, env);
      assert.equal(r.code, code, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, message, args.join(' '));
      assert.equal(r.err.trim().split('\n').length, 1, `one line: ${r.err}`);
      assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
    }

    const created = await cloud.ok<{ token: string }>(
      'POST',
      '/v1/subscriptions/contoso/tokens',
      { name: 'chaos-t' },
      201,
    );
    const tenant = { VIPDIP_URL: cloud.srv.url, VIPDIP_TOKEN: created.token };
    const other = await vipdip(['chaos', 'start', '-s', 'fabrikam', '--rate', 'redeploy=1/min'], tenant);
    assert.equal(other.code, 1);
    assert.match(other.err, /subscription fabrikam does not exist/);
    const maint = await vipdip(['chaos', 'start', '--rate', 'maintenance=1/min'], tenant);
    assert.equal(maint.code, 1);
    assert.match(maint.err, /only the operator can take hosts into maintenance/);
    const fabric = await vipdip(['chaos', 'start', '--fabric', '--rate', 'redeploy=1/min'], tenant);
    assert.equal(fabric.code, 1);
    assert.match(fabric.err, /needs the operator token/);
    const runs = await cloud.ok<ChaosRunView[]>('GET', '/v1/chaos');
    assert.ok(
      runs.every((r) => r.state !== 'running'),
      'the refused starts started nothing',
    );
  });
});
