/**
 * Standalone agents (`vipdip agent --control URL`) against a control plane that carries no traffic
 * itself (`vipdip up --driver none`): traffic through the VIPs, health and logs reported over the API,
 * changes followed on the event stream, the stream resumed after the control plane restarts (with the
 * data plane serving on meanwhile), hosts split between two agents, and an agent that vanishes going
 * stale. Addresses: public pool 127.218.0.0/16, VNet 127.219.0.0/16.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { webVm, whoami } from '../support/cloud-up.ts';
import { eventually } from '../support/net.ts';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const SCALE = '0.1';
const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 10 };
const VMS = ['web1', 'web2', 'web3', 'web4'];
const topology = {
  subscriptions: [
    {
      name: 'remote',
      virtualNetworks: [
        {
          name: 'net',
          addressSpace: ['127.219.0.0/16'],
          subnets: [{ name: 'front', cidr: '127.219.1.0/24' }],
        },
      ],
      cloudServices: [
        { name: 'remote-web', vnet: 'net', vms: VMS.map((n) => webVm(n, 'front', {}, { probe })) },
      ],
    },
  ],
};

interface RunningAgent {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

const agents = new Set<RunningAgent>();
let srv: TestServer;
let port: number;

const upArgs = () => ['--driver', 'none', '--time-scale', SCALE, '--public-pool', '127.218.0.0/16'];
const api = (method: string, path: string, body?: unknown) =>
  call(srv, srv.operatorToken, method, path, body);
async function ok<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await api(method, path, body);
  assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
  return r.body as T;
}

async function startAgent(args: string[]): Promise<RunningAgent> {
  const proc = spawn(
    process.execPath,
    [BIN, 'agent', '--control', `http://127.0.0.1:${port}`, '--time-scale', SCALE, ...args],
    { env: { ...process.env, VIPDIP_TOKEN: srv.operatorToken }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((r) => proc.once('exit', () => r()));
  const a: RunningAgent = {
    proc,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null) proc.kill('SIGTERM');
      await exited;
      agents.delete(a);
    },
    kill: async () => {
      if (proc.exitCode === null) proc.kill('SIGKILL');
      await exited;
      agents.delete(a);
    },
  };
  agents.add(a);
  await eventually(
    `the agent starts:\n${out}`,
    () => {
      if (proc.exitCode !== null) throw new Error(`the agent exited: ${out}`);
      return /vipdip agent \S+ is up/.test(out);
    },
    60_000,
    50,
  );
  return a;
}

async function health(): Promise<{ vm: string; state: string; detail: string | null; dip: string | null }[]> {
  const h = await ok<{
    endpoints: { backends: { vm: string; state: string; detail: string | null; dip: string | null }[] }[];
  }>('GET', '/v1/services/remote-web/health');
  return h.endpoints.flatMap((e) => e.backends);
}

const allUp = (n: number) =>
  eventually(
    `${n} backends up`,
    async () => (await health()).filter((b) => b.state === 'up').length === n,
    60_000,
    100,
  );

before(async () => {
  srv = await startServer({ args: upArgs() });
  port = Number(new URL(srv.url).port);
  await ok('POST', '/v1/apply', topology);
});
after(async () => {
  for (const a of [...agents]) await a.kill();
  await srv?.stop();
});

let vip: string;

describe('standalone agents', () => {
  test('an agent in its own process carries the traffic and reports health and workloads over the API', async () => {
    await startAgent(['--name', 'solo']);
    await allUp(4);
    vip = (await ok<{ vip: string }>('GET', '/v1/services/remote-web')).vip;
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add((await whoami(vip, 8080)).vm);
    assert.deepEqual([...seen].sort(), VMS);
    const logs = await ok<{ status: string; agent: string; lines: { text: string }[] }>(
      'GET',
      '/v1/services/remote-web/vms/web1/logs',
    );
    assert.equal(logs.status, 'running');
    assert.equal(logs.agent, 'solo');
    assert.ok(logs.lines.some((l) => l.text.includes('listening on http://127.219.1.')));
    const seenAgents = await ok<{ agent: string; lb: boolean; stale: boolean }[]>('GET', '/v1/agents');
    assert.deepEqual(
      seenAgents.map((a) => [a.agent, a.lb, a.stale]),
      [['solo', true, false]],
    );
  });

  test('it follows the event stream: a deallocation moves traffic, a start brings it back', async () => {
    await ok('POST', '/v1/services/remote-web/vms/web1/deallocate');
    let clear = 0;
    await eventually(
      'traffic leaves web1',
      async () => {
        clear = (await whoami(vip, 8080)).vm === 'web1' ? 0 : clear + 1;
        return clear >= 20;
      },
      20_000,
      0,
    );
    await ok('POST', '/v1/services/remote-web/vms/web1/start');
    await allUp(4);
    await eventually(
      'traffic reaches web1 again',
      async () => (await whoami(vip, 8080)).vm === 'web1',
      20_000,
      0,
    );
  });

  test('the data plane serves on while the control plane restarts, and the stream resumes after it', async () => {
    const solo = [...agents][0]!;
    await srv.stop({ keep: true });
    // No control plane: the listeners and workloads it set up still carry traffic.
    for (let i = 0; i < 10; i++) assert.equal((await whoami(vip, 8080)).vip, vip);
    srv = await startServer({ dir: srv.dir, args: [...upArgs(), '--listen', `127.0.0.1:${port}`] });
    await eventually('the agent reconnects', () => /reconnecting/.test(solo.output()));
    await ok('POST', '/v1/services/remote-web/vms/web2/deallocate');
    let clear = 0;
    await eventually(
      'traffic leaves web2 after the restart',
      async () => {
        clear = (await whoami(vip, 8080)).vm === 'web2' ? 0 : clear + 1;
        return clear >= 20;
      },
      30_000,
      0,
    );
    await ok('POST', '/v1/services/remote-web/vms/web2/start');
    await allUp(4);
  });

  test('two agents split the hosts: each runs the workloads of its own, one runs the load balancer', async () => {
    await [...agents][0]!.stop();
    const a = await startAgent([
      '--name',
      'rack1',
      '--host',
      'rack1-host1',
      '--host',
      'rack1-host2',
      '--no-lb',
    ]);
    const b = await startAgent(['--name', 'rack2', '--host', 'rack2-host1', '--host', 'rack2-host2']);
    await allUp(4);
    for (const vm of VMS) {
      const v = await ok<{ host: string; dip: string }>('GET', `/v1/services/remote-web/vms/${vm}`);
      const want = v.host.startsWith('rack1') ? 'rack1' : 'rack2';
      await eventually(`${vm} run by ${want}`, async () => {
        const l = await ok<{ agent: string; status: string }>(
          'GET',
          `/v1/services/remote-web/vms/${vm}/logs`,
        );
        return l.agent === want && l.status === 'running';
      });
    }
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add((await whoami(vip, 8080)).vm);
    assert.deepEqual([...seen].sort(), VMS);
    assert.match(a.output(), /load balancer off/);
    assert.match(b.output(), /load balancer on/);
  });

  test('an agent that vanishes goes stale: its backends read unknown, and its built-ins exit', async () => {
    const b = [...agents].find((x) => /agent rack2 is up/.test(x.output()))!;
    const pids: number[] = [];
    for (const vm of VMS) {
      const l = await ok<{ agent: string; pid: number | null }>(
        'GET',
        `/v1/services/remote-web/vms/${vm}/logs`,
      );
      if (l.agent === 'rack2' && l.pid !== null) pids.push(l.pid);
    }
    await b.kill();
    await eventually(
      'every backend unknown',
      async () => (await health()).every((x) => x.state === 'unknown'),
      30_000,
      100,
    );
    assert.match((await health())[0]!.detail ?? '', /no report from agent rack2/);
    for (const pid of pids) {
      await eventually(`workload ${pid} gone`, () => {
        try {
          process.kill(pid, 0);
          return false;
        } catch {
          return true;
        }
      });
    }
  });
});
