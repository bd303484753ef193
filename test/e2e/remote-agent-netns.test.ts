/**
 * A standalone `vipdip agent --driver netns --control URL` (root only, real kernel) against a control
 * plane that carries no traffic (`vipdip up --driver none`): the agent builds its own netns world from
 * the API's VNets and VMs; through that world (`vipdip client --agent NAME --control URL -- curl`)
 * the VIP and an ILPIP answer from their VMs; a deallocate and a start are followed (the backend leaves,
 * then comes back on the DIP the control plane gave it, which its namespace then holds); SIGTERM
 * removes the world, and after a kill -9 the next start of the same agent removes what it left. The
 * namespaces carry this agent's prefix (agentWorldPrefix) and are removed when the test ends, pass or
 * fail. Addresses: VNet 10.77.0.0/16, public pool 198.18.77.0/24, all inside the world.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { test } from 'node:test';
import {
  agentWorldPrefix,
  INTERNET_GATEWAY,
  namespacesWithPrefix,
  removeWorld,
  routerNamespace,
  vmNamespace,
} from '../../src/dataplane/netns/world.ts';
import { eventually } from '../support/net.ts';
import { requireNetns } from '../support/netns.ts';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const SCALE = '0.1';
const probe = { protocol: 'http', port: 8000, path: '/', intervalSeconds: 5, timeoutSeconds: 10 };
const web = (name: string, extra: Record<string, unknown> = {}) => ({
  name,
  subnet: 'front',
  workload: 'whoami',
  endpoints: [{ name: 'http', protocol: 'tcp', publicPort: 8080, localPort: 8000, lbSet: 'web', probe }],
  ...extra,
});
const topology = {
  subscriptions: [
    {
      name: 'edge',
      virtualNetworks: [
        {
          name: 'net',
          addressSpace: ['10.77.0.0/16'],
          subnets: [{ name: 'front', cidr: '10.77.1.0/24' }],
        },
      ],
      cloudServices: [{ name: 'edge-web', vnet: 'net', vms: [web('web1'), web('web2', { ilpip: true })] }],
    },
  ],
};

interface VmView {
  name: string;
  dip: string | null;
  ilpip: string | null;
  state: string;
}

test('a standalone netns agent: VIP and ILPIP answer through its world, a DIP change is followed, its namespaces go with it', async (t) => {
  if (!requireNetns(t)) return;
  const name = `e2e-${process.pid}`;
  const children = new Set<ChildProcess>();
  const held: { srv?: TestServer; prefix?: string } = {};
  t.after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    if (held.prefix !== undefined) await removeWorld(held.prefix);
    await held.srv?.stop();
  });

  const srv = (held.srv = await startServer({
    args: [
      '--driver',
      'none',
      '--time-scale',
      SCALE,
      '--public-pool',
      '198.18.77.0/24',
      '--dns',
      '127.0.0.1:0',
    ],
  }));
  const control = srv.url;
  const dnsPort = /DNS on 127\.0\.0\.1:(\d+)/.exec(srv.output())?.[1];
  assert.ok(dnsPort !== undefined, srv.output());
  const prefix = (held.prefix = agentWorldPrefix(control, name));
  const ok = async <T>(method: string, path: string, body?: unknown): Promise<T> => {
    const r = await call(srv, srv.operatorToken, method, path, body);
    assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
    return r.body as T;
  };
  await ok('POST', '/v1/apply', topology);
  const vip = (await ok<{ vip: string }>('GET', '/v1/services/edge-web')).vip;
  const vms = async () =>
    new Map((await ok<VmView[]>('GET', '/v1/services/edge-web/vms')).map((v) => [v.name, v] as const));

  const startAgent = async () => {
    const proc = spawn(
      process.execPath,
      [
        BIN,
        'agent',
        '--control',
        control,
        '--driver',
        'netns',
        '--name',
        name,
        '--time-scale',
        SCALE,
        '--dns',
        `127.0.0.1:${dnsPort}`,
      ],
      {
        env: { ...process.env, VIPDIP_TOKEN: srv.operatorToken },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    children.add(proc);
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    await eventually(
      'the agent starts',
      () => {
        if (proc.exitCode !== null) throw new Error(`the agent exited: ${out}`);
        return /vipdip agent \S+ is up/.test(out);
      },
      60_000,
      50,
    );
    assert.match(out, new RegExp(`vipdip client --agent ${name} --control ${control} -- curl`));
    return { proc, exited, output: () => out };
  };

  /** One `vipdip client --agent … -- curl` through the agent's world: the VM that answered, or null. */
  const curl = (url: string): string | null => {
    const r = spawnSync(
      process.execPath,
      [BIN, 'client', '--agent', name, '--control', control, '--', 'curl', '-s', '-m', '2', url],
      { encoding: 'utf8', timeout: 10_000 },
    );
    if (r.status !== 0) return null;
    try {
      return (JSON.parse(r.stdout) as { vm: string }).vm;
    } catch {
      return null;
    }
  };
  /** The VMs that answer `url` in `tries` requests (each a new connection, so a new source port). */
  const answering = (url: string, tries: number) => {
    const seen = new Set<string>();
    for (let i = 0; i < tries; i++) {
      const vm = curl(url);
      if (vm !== null) seen.add(vm);
    }
    return [...seen].sort();
  };
  const namespaces = async () => (await namespacesWithPrefix(prefix)).sort();
  // Two VMs with DIPs: their namespaces, the world and the internet.
  const expected = () =>
    [
      `${prefix}-inet`,
      `${prefix}-world`,
      routerNamespace(prefix, 'edge'),
      vmNamespace(prefix, 'edge-web/web1'),
      vmNamespace(prefix, 'edge-web/web2'),
    ].sort();
  const dipOf = (vm: string) => {
    const r = spawnSync(
      'ip',
      [
        'netns',
        'exec',
        vmNamespace(prefix, `edge-web/${vm}`),
        'ip',
        '-4',
        '-o',
        'addr',
        'show',
        'dev',
        'eth0',
      ],
      { encoding: 'utf8' },
    );
    return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout)?.[1] ?? null;
  };

  const first = await startAgent();
  assert.deepEqual(await namespaces(), expected());
  const vipUrl = `http://${vip}:8080/`;
  await eventually('both VMs answer the VIP', () => answering(vipUrl, 8).join() === 'web1,web2', 60_000, 200);
  const web2 = (await vms()).get('web2')!;
  assert.ok(web2.ilpip !== null);
  assert.equal(curl(`http://${web2.ilpip}:8000/`), 'web2', 'the ILPIP leads to its own VM');
  assert.equal(dipOf('web1'), (await vms()).get('web1')!.dip);

  // DNS in the agent's world, relayed to the control plane's server: a VM resolves the service's name
  // to its VIP and another VM's internal name (through its search domain) to its DIP, as does the
  // internet namespace through its link's world end.
  const hasDig = spawnSync('dig', ['-v'], { stdio: 'ignore' }).error === undefined;
  if (!hasDig && process.env.VIPDIP_REQUIRE_NETNS)
    throw new Error('the netns agent test needs dig (dnsutils)');
  if (!hasDig) t.diagnostic('the DNS part is skipped: it needs dig (dnsutils)');
  else {
    const dig = (ns: string, qname: string, server?: string) => {
      const r = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'dig',
          '+short',
          '+time=1',
          '+tries=1',
          ...(server ? [`@${server}`] : []),
          qname,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      );
      return r.stdout.trim();
    };
    const web1Ns = vmNamespace(prefix, 'edge-web/web1');
    await eventually(
      'a VM resolves the VIP by name',
      () => dig(web1Ns, 'edge-web.cloudapp.vipdip.test') === vip,
      20_000,
      200,
    );
    assert.equal(dig(web1Ns, 'web2.edge-web.internal.vipdip.test'), web2.dip);
    const short = spawnSync('ip', ['netns', 'exec', web1Ns, 'getent', 'hosts', 'web2.edge-web'], {
      encoding: 'utf8',
    });
    assert.match(
      short.stdout,
      new RegExp(`^${web2.dip?.replace(/\./g, '\\.')}\\s`),
      short.stdout + short.stderr,
    );
    assert.equal(dig(`${prefix}-inet`, 'edge-web.cloudapp.vipdip.test', INTERNET_GATEWAY), vip);
  }

  // Deallocate: web1 leaves rotation and its namespace goes; start: it comes back on the DIP it got.
  await ok('POST', '/v1/services/edge-web/vms/web1/deallocate');
  await eventually(
    "web1's namespace goes",
    async () => !(await namespaces()).includes(vmNamespace(prefix, 'edge-web/web1')),
    30_000,
    100,
  );
  assert.deepEqual(answering(vipUrl, 6), ['web2']);
  await ok('POST', '/v1/services/edge-web/vms/web1/start');
  const dip = await eventually(
    'web1 has a DIP again',
    async () => (await vms()).get('web1')!.dip ?? false,
    30_000,
    100,
  );
  await eventually('web1 holds its new DIP', () => dipOf('web1') === dip, 30_000, 100);
  await eventually('both VMs answer again', () => answering(vipUrl, 8).join() === 'web1,web2', 60_000, 200);

  // SIGTERM: the agent removes its world.
  first.proc.kill('SIGTERM');
  await first.exited;
  assert.deepEqual(await namespaces(), []);

  // kill -9 leaves the world behind; the next start of the same agent removes it and converges.
  const second = await startAgent();
  await eventually('the VIP answers', () => curl(vipUrl) !== null, 60_000, 200);
  second.proc.kill('SIGKILL');
  await second.exited;
  assert.deepEqual(await namespaces(), expected(), 'kill -9 leaves the world behind');
  const third = await startAgent();
  assert.deepEqual(await namespaces(), expected());
  await eventually(
    'both VMs answer after the restart',
    () => answering(vipUrl, 8).join() === 'web1,web2',
    60_000,
    200,
  );
  third.proc.kill('SIGTERM');
  await third.exited;
  assert.deepEqual(await namespaces(), []);
});

test('netns agent and client flags that cannot work: one line and a non-zero exit, no stack trace', () => {
  const run = (args: string[]) =>
    spawnSync(process.execPath, [BIN, ...args], {
      encoding: 'utf8',
      env: { ...process.env, VIPDIP_TOKEN: 'x', VIPDIP_URL: '' },
      timeout: 20_000,
    });
  for (const [args, message] of [
    [
      ['agent', '--driver', 'netns', '--no-lb', '--control', 'http://127.0.0.1:9'],
      /--no-lb: a netns agent runs a whole world/,
    ],
    [
      ['agent', '--driver', 'netns', '--host', 'h1', '--control', 'http://127.0.0.1:9'],
      /--host: a netns agent runs a whole world/,
    ],
    [['agent', '--dns', '127.0.0.1:53', '--control', 'http://127.0.0.1:9'], /--dns goes with --driver netns/],
    [
      ['agent', '--driver', 'netns', '--dns', 'nope', '--control', 'http://127.0.0.1:9'],
      /--dns nope: expected HOST:PORT/,
    ],
    [['client', '--agent', 'a', '--', 'true'], /--agent needs --control URL/],
    [['client', '--control', 'http://127.0.0.1:9', '--', 'true'], /--control goes with --agent NAME/],
    [['client', '--agent', 'a', '--control', 'nope', '--', 'true'], /--control nope: expected an http/],
  ] as const) {
    const r = run([...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
});
