/**
 * The `vipdip` client verbs end to end: the real binary against a real `vipdip up` on a free port.
 * `-o json` must be exactly what the API answers (checked against the same request made with
 * `call()`); failures are one line on stderr with exit 1, or exit 2 for a wrong command line.
 *
 * The tests share one server and build on each other's state, in order: apply, read, operate,
 * prune, and last the event stream across a server restart.
 */
import { spawn } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { parse as parseYaml } from 'yaml';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

const CLI_TIMEOUT_MS = 30_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface RunOptions {
  /** Overrides of the environment; undefined removes a variable. */
  env?: Record<string, string | undefined>;
  cwd?: string;
  input?: string;
}

let server: TestServer;
/** A server started again on the same port and state, by the last test. */
let restarted: TestServer | undefined;

/** Runs `node bin/vipdip.js ARGS` against the test server with the operator token. */
function cli(args: string[], opts: RunOptions = {}): Promise<Run> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    VIPDIP_URL: server.url,
    VIPDIP_TOKEN: server.operatorToken,
  };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      cwd: opts.cwd ?? tmpdir(),
      env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: CLI_TIMEOUT_MS,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs the CLI and expects exit 0 with nothing on stderr (a pipe gets no progress output). */
async function ok(args: string[], opts: RunOptions = {}): Promise<string> {
  const r = await cli(args, opts);
  assert.equal(r.code, 0, `vipdip ${args.join(' ')} exited ${r.code}:\n${r.stdout}${r.stderr}`);
  assert.equal(r.stderr, '', `vipdip ${args.join(' ')} wrote to stderr`);
  return r.stdout;
}

async function json(args: string[], opts: RunOptions = {}): Promise<unknown> {
  return JSON.parse(await ok([...args, '-o', 'json'], opts)) as unknown;
}

/** Expects a failure: the exit code, one line on stderr starting `vipdip: `, no stack trace. */
async function fails(args: string[], code: number, opts: RunOptions = {}): Promise<string> {
  const r = await cli(args, opts);
  assert.equal(
    r.code,
    code,
    `vipdip ${args.join(' ')}: exit ${r.code}, not ${code}:\n${r.stdout}${r.stderr}`,
  );
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr for vipdip ${args.join(' ')}:\n${r.stderr}`);
  assert.match(lines[0]!, /^vipdip: /);
  assert.doesNotMatch(r.stderr, /^\s+at /m);
  return lines[0]!;
}

async function api(path: string, token = server.operatorToken): Promise<unknown> {
  const r = await call(server, token, 'GET', path);
  assert.equal(r.status, 200, `GET ${path}: ${r.text}`);
  return r.body;
}

interface Ev {
  seq: number;
  time: string;
  type: string;
  resource: string;
}

const allEvents = async () => ((await api('/v1/events?since=0&limit=1000')) as { events: Ev[] }).events;

const TOPOLOGY = `
subscriptions:
  - name: contoso
    virtualNetworks:
      - name: shop-net
        addressSpace: [127.16.0.0/16]
        subnets:
          - { name: front, cidr: 127.16.1.0/24 }
          - { name: back, cidr: 127.16.2.0/24 }
    cloudServices:
      - name: shop
        vnet: shop-net
        vms:
          - { name: web1, subnet: front }
          - { name: web2, subnet: front }
          - { name: db1, subnet: back, staticDip: 127.16.2.10 }
      - name: extra
        vnet: shop-net
        vms:
          - { name: x1, subnet: front }
  - name: fabrikam
    virtualNetworks:
      - name: blog-net
        addressSpace: [127.32.0.0/16]
        subnets:
          - { name: web, cidr: 127.32.1.0/24 }
    cloudServices:
      - name: blog
        vnet: blog-net
        vms:
          - { name: www1, subnet: web }
`;
let topologyFile: string;

before(async () => {
  server = await startServer();
  topologyFile = join(server.dir, 'topology.yaml');
  writeFileSync(topologyFile, TOPOLOGY);
});

after(async () => {
  if (restarted === undefined) await server.stop();
  else {
    // The first server is gone (the last test kills it); the second shares its directory.
    await restarted.stop();
    rmSync(server.dir, { recursive: true, force: true });
  }
});

test('apply creates a topology and prints each change as a table, quietly when piped', async () => {
  const out = await ok(['apply', '-f', topologyFile]);
  assert.match(out, /^ACTION\s+KIND\s+NAME\s+DETAIL$/m);
  assert.match(out, /^create\s+subscription\s+contoso\b/m);
  assert.match(out, /^create\s+virtual network\s+contoso\/shop-net\b/m);
  assert.match(out, /^create\s+cloud service\s+shop\b/m);
  assert.match(out, /^create\s+VM\s+shop\/db1\b/m);
  assert.match(out, /^\d+ changes applied$/m);
  const services = (await api('/v1/services')) as { name: string }[];
  assert.deepEqual(services.map((s) => s.name).sort(), ['blog', 'extra', 'shop']);
});

test('applying the same file twice reports no changes and emits no event', async () => {
  const before = await allEvents();
  const out = await ok(['apply', '-f', topologyFile]);
  assert.equal(out, 'no changes\n');
  assert.deepEqual(await allEvents(), before);
});

test('apply --dry-run reports the plan, changes nothing, and -f - reads the file from stdin', async () => {
  const bigger = TOPOLOGY.replace(
    '          - { name: x1, subnet: front }',
    '          - { name: x1, subnet: front }\n          - { name: x2, subnet: front }',
  );
  const snapshot = () =>
    Promise.all(
      ['/v1/services', '/v1/vms', '/v1/vnets', '/v1/pools', '/v1/events?limit=1000'].map((p) => api(p)),
    );
  const before = await snapshot();
  const table = await ok(['apply', '-f', '-', '--dry-run'], { input: bigger });
  assert.match(table, /^create\s+VM\s+extra\/x2\b/m);
  assert.match(table, /^1 change planned \(dry run: nothing was changed\)$/m);
  const plan = await json(['apply', '-f', '-', '--dry-run'], { input: bigger });
  const direct = await call(server, server.operatorToken, 'POST', '/v1/apply?dryRun=true', bigger, {
    'content-type': 'application/yaml',
  });
  assert.equal(direct.status, 200);
  assert.deepEqual(plan, direct.body);
  assert.deepEqual(await snapshot(), before);
});

test('an invalid topology file fails with exit 1 and lists its problems in one line', async () => {
  const bad = join(server.dir, 'bad.yaml');
  writeFileSync(
    bad,
    'subscriptions:\n  - name: contoso\n    colour: blue\n    virtualNetworks:\n      - { name: n, addressSpace: [nope] }\n',
  );
  const line = await fails(['apply', '-f', bad], 1);
  assert.match(line, /^vipdip: invalid argument: the topology has 2 problems: /);
  assert.match(line, /subscriptions\[0\]\.colour: unknown field/);
  assert.match(line, /subscriptions\[0\]\.virtualNetworks\[0\]\.addressSpace\[0\]: .*nope/);
  assert.match(
    await fails(['apply', '-f', join(server.dir, 'missing.yaml')], 1),
    /cannot read .*no such file/,
  );
});

test('get prints human tables, with each VM next to the VIP of its service', async () => {
  const shop = (await api('/v1/services/shop')) as { vip: string };
  const web1 = (await api('/v1/services/shop/vms/web1')) as { dip: string; host: string };
  const [vms, one, services, vnet, hosts, pools, subs, rips] = await Promise.all([
    ok(['get', 'vms']),
    ok(['get', 'vms', 'shop/web1']),
    ok(['get', 'services']),
    ok(['get', 'vnets', 'shop-net']),
    ok(['get', 'hosts']),
    ok(['get', 'pools']),
    ok(['get', 'subscriptions']),
    ok(['get', 'reserved-ips']),
  ]);
  assert.match(vms, /^SERVICE\/NAME\s+STATE\s+DIP\s+VIP\s+HOST\s+SUBNET\s+STATIC\s+ILPIP$/m);
  assert.match(
    vms,
    new RegExp(
      `^shop/db1\\s+running\\s+127\\.16\\.2\\.10\\s+${shop.vip}\\s+\\S+\\s+back\\s+127\\.16\\.2\\.10\\s+-$`,
      'm',
    ),
  );
  assert.equal(vms.trim().split('\n').length, 1 + 5);
  assert.match(
    one,
    new RegExp(
      `^shop/web1\\s+running\\s+${web1.dip}\\s+${shop.vip}\\s+${web1.host}\\s+front\\s+-\\s+-$`,
      'm',
    ),
  );
  assert.match(services, /^NAME\s+SUBSCRIPTION\s+VIP\s+RESERVED-IP\s+DNS\s+VMS$/m);
  assert.match(
    services,
    new RegExp(`^shop\\s+contoso\\s+${shop.vip}\\s+-\\s+shop\\.cloudapp\\.vipdip\\.test\\s+3$`, 'm'),
  );
  assert.match(
    vnet,
    /^contoso\s+shop-net\s+127\.16\.0\.0\/16\s+random\s+redraw\s+front=127\.16\.1\.0\/24 back=127\.16\.2\.0\/24$/m,
  );
  assert.match(vnet, /^front\s+127\.16\.1\.0\/24\s+251\s+3\s+248$/m);
  assert.match(hosts, /^NAME\s+RACK\s+VMS\n(rack\d-host\d\s+rack\d\s+\d+\n){4}$/);
  assert.match(pools, /^CIDR\s+USABLE\s+BOUND\s+FREE\n127\.100\.0\.0\/16\s+65534\s+3\s+65531\n$/);
  assert.match(subs, /^NAME\s+CREATED\ncontoso\s+\S+\nfabrikam\s+\S+\n$/);
  assert.equal(rips, 'SUBSCRIPTION  NAME  ADDRESS  SERVICE\n');
});

test('get -o json prints exactly the API answer for every kind, listing and single', async () => {
  const pairs: [string[], string][] = [
    [['get', 'subscriptions'], '/v1/subscriptions'],
    [['get', 'subscriptions', 'contoso'], '/v1/subscriptions/contoso'],
    [['get', 'vnets'], '/v1/vnets'],
    [['get', 'vnets', '-s', 'contoso'], '/v1/subscriptions/contoso/vnets'],
    [['get', 'vnets', 'shop-net', '-s', 'contoso'], '/v1/subscriptions/contoso/vnets/shop-net'],
    [['get', 'vnets', 'blog-net'], '/v1/subscriptions/fabrikam/vnets/blog-net'],
    [['get', 'services'], '/v1/services'],
    [['get', 'services', '-s', 'fabrikam'], '/v1/subscriptions/fabrikam/services'],
    [['get', 'services', 'shop'], '/v1/services/shop'],
    [['get', 'vms'], '/v1/vms'],
    [['get', 'vms', 'shop'], '/v1/services/shop/vms'],
    [['get', 'vms', 'shop/web1'], '/v1/services/shop/vms/web1'],
    [['get', 'reserved-ips', '-s', 'contoso'], '/v1/subscriptions/contoso/reserved-ips'],
    [['get', 'hosts'], '/v1/hosts'],
    [['get', 'pools'], '/v1/pools'],
  ];
  const outs = await Promise.all(pairs.map(([args]) => json(args)));
  for (const [i, [args, path]] of pairs.entries()) {
    assert.deepEqual(outs[i], await api(path), `vipdip ${args.join(' ')} -o json`);
  }
  const vms = (await json(['get', 'vms', '-s', 'fabrikam'])) as { service: string }[];
  assert.deepEqual(
    vms,
    ((await api('/v1/vms')) as { subscription: string }[]).filter((v) => v.subscription === 'fabrikam'),
  );
});

test('get -o yaml prints the same data as YAML', async () => {
  const out = await ok(['get', 'services', 'shop', '-o', 'yaml']);
  assert.deepEqual(parseYaml(out), await api('/v1/services/shop'));
});

test('vm operations print the new state and addresses in one line, or the API JSON', async () => {
  const vip = ((await api('/v1/services/shop')) as { vip: string }).vip;
  const line = (state: string, dip: string) =>
    new RegExp(
      `^shop/web2 ${state} dip ${dip} vip ${vip.replaceAll('.', '\\.')} host ${state === 'deallocated' ? '-' : 'rack\\d-host\\d'}\\n$`,
    );
  const stopped = await ok(['vm', 'stop', 'shop/web2']);
  const dip = (/ dip (\S+) /.exec(stopped) ?? [])[1]!;
  assert.match(stopped, line('stopped', dip.replaceAll('.', '\\.')));
  assert.match(
    await ok(['vm', 'start', 'shop/web2', '-s', 'contoso']),
    line('running', dip.replaceAll('.', '\\.')),
  );
  assert.match(await ok(['vm', 'restart', 'shop/web2']), line('running', dip.replaceAll('.', '\\.')));
  assert.match(await ok(['vm', 'deallocate', 'shop/web2']), line('deallocated', '-'));
  const started = await json(['vm', 'start', 'shop/web2']);
  assert.deepEqual(started, await api('/v1/services/shop/vms/web2'));
  const before = started as { host: string };
  const moved = (await json(['vm', 'redeploy', 'shop/web2'])) as { host: string };
  assert.notEqual(moved.host, before.host, 'redeploy moves the VM to another host');
  const two = await ok(['vm', 'stop', 'shop/web1', 'shop/web2']);
  assert.match(two, /^shop\/web1 stopped .*\nshop\/web2 stopped .*\n$/);
  await ok(['vm', 'start', 'shop/web1', 'shop/web2']);
});

test('vm delete removes the VM and says what VIP the service holds now', async () => {
  assert.equal(await ok(['vm', 'delete', 'extra/x1']), 'extra/x1 deleted; extra vip -\n');
  assert.match(await fails(['get', 'vms', 'extra/x1'], 1), /^vipdip: not found: .*x1/);
});

test('apply lists what the file no longer names, and deletes it only with --prune', async () => {
  const without = join(server.dir, 'without-extra.yaml');
  writeFileSync(without, TOPOLOGY.replace(/ {6}- name: extra\n(.*\n){3}/, ''));
  const kept = await ok(['apply', '-f', without]);
  assert.match(kept, /^no changes\n\nnot named in the file, so kept \(apply --prune deletes them\):\n/);
  assert.match(kept, /^delete\s+cloud service\s+extra\s+-$/m);
  assert.equal(((await api('/v1/services/extra')) as { name: string }).name, 'extra');
  const pruned = await ok(['apply', '-f', without, '--prune']);
  assert.match(pruned, /^delete\s+cloud service\s+extra\s+-$/m);
  assert.equal((await call(server, server.operatorToken, 'GET', '/v1/services/extra')).status, 404);
});

test('an unknown VM exits 1 with one line on stderr and no stack trace, unless --debug', async () => {
  assert.equal(
    await fails(['vm', 'start', 'shop/nope'], 1),
    'vipdip: not found: VM shop/nope does not exist',
  );
  assert.match(await fails(['get', 'services', 'shop', '-s', 'fabrikam'], 1), /not found/);
  assert.match(await fails(['vm', 'stop', 'shop/db1', '-s', 'fabrikam'], 1), /not found/);
  assert.match(await fails(['vm', 'restart', 'shop/web1', 'shop/nope'], 1), /not found/);
  const debug = await cli(['--debug', 'vm', 'start', 'shop/nope']);
  assert.equal(debug.code, 1);
  assert.match(debug.stderr, /^\s+at /m);
});

test('a wrong command line exits 2 with one line on stderr', async () => {
  const lines = await Promise.all([
    fails(['vm', 'start'], 2),
    fails(['vm', 'start', 'shop'], 2),
    fails(['vm', 'frobnicate', 'shop/web1'], 2),
    fails(['get', 'widgets'], 2),
    fails(['get', 'vms', '-o', 'xml'], 2),
    fails(['get', 'hosts', '-s', 'contoso'], 2),
    fails(['get', 'vms', 'a/b/c'], 2),
    fails(['apply'], 2),
    fails(['events', '--since', 'yesterday'], 2),
    fails(['host', 'maintenance'], 2),
    fails(['frobnicate'], 2),
  ]);
  assert.match(lines[0], /missing required argument/);
  assert.match(lines[4], /xml/);
});

test('a server that is down gives exit 1 and a message naming its URL', async () => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const line = await fails(['get', 'vms'], 1, { env: { VIPDIP_URL: url } });
  assert.match(line, new RegExp(`^vipdip: cannot connect to ${url}: connection refused`));
});

test('without VIPDIP_TOKEN the CLI uses the operator.token of the state directory', async () => {
  const expected = await api('/v1/services');
  const env = { VIPDIP_TOKEN: undefined };
  assert.deepEqual(await json(['get', 'services'], { env, cwd: server.dir }), expected);
  assert.deepEqual(await json(['get', 'services', '--state', server.stateDir], { env }), expected);
  assert.match(await fails(['get', 'services'], 1, { env }), /^vipdip: no token: set VIPDIP_TOKEN/);
  assert.match(
    await fails(['get', 'services'], 1, { env: { VIPDIP_TOKEN: 'vipdip_not-a-token' } }),
    /^vipdip: unauthorized: the token is not valid \(token from VIPDIP_TOKEN\)$/,
  );
});

test('a subscription token made by token create sees only its subscription', async () => {
  const token = (await ok(['token', 'create', 'ci', '-s', 'contoso'])).trim();
  assert.match(token, /^vipdip_\S+$/);
  const env = { VIPDIP_TOKEN: token };
  const mine = (await json(['get', 'services'], { env })) as { subscription: string }[];
  assert.deepEqual(mine, await api('/v1/services', token));
  assert.deepEqual([...new Set(mine.map((s) => s.subscription))], ['contoso']);
  assert.match(await fails(['get', 'services', 'blog'], 1, { env }), /^vipdip: not found: /);
  assert.match(await fails(['token', 'list'], 1, { env }), /^vipdip: forbidden: /);
  const list = await ok(['token', 'list']);
  assert.match(list, /^NAME\s+SUBSCRIPTION\s+CREATED$/m);
  assert.match(list, /^ci\s+contoso\s+\S+$/m);
  assert.deepEqual(await json(['token', 'list']), await api('/v1/tokens'));
  assert.equal(
    await ok(['token', 'revoke', 'ci', '-s', 'contoso']),
    'token ci of subscription contoso revoked\n',
  );
  assert.match(await fails(['get', 'services'], 1, { env }), /^vipdip: unauthorized: /);
});

test('subscription create and delete manage tenants', async () => {
  assert.equal(await ok(['subscription', 'create', 'tmp']), 'subscription tmp created\n');
  assert.deepEqual(await json(['get', 'subscriptions', 'tmp']), await api('/v1/subscriptions/tmp'));
  assert.equal(await ok(['subscription', 'delete', 'tmp']), 'subscription tmp deleted\n');
  assert.match(await fails(['get', 'subscriptions', 'tmp'], 1), /not found/);
});

test('reserved-ip create, associate, disassociate and delete', async () => {
  const created = await ok(['reserved-ip', 'create', 'blog-ip', '-s', 'fabrikam']);
  const address = (/^reserved IP fabrikam\/blog-ip (127\.100\.\d+\.\d+)\n$/.exec(created) ?? [])[1];
  assert.ok(address, created);
  assert.equal(
    await ok(['reserved-ip', 'associate', 'blog-ip', 'blog', '-s', 'fabrikam']),
    `reserved IP fabrikam/blog-ip associated with blog: vip ${address}\n`,
  );
  assert.equal(((await api('/v1/services/blog')) as { vip: string }).vip, address);
  assert.deepEqual(
    await json(['get', 'reserved-ips', 'blog-ip']),
    await api('/v1/subscriptions/fabrikam/reserved-ips/blog-ip'),
  );
  const off = await ok(['reserved-ip', 'disassociate', 'blog-ip', '-s', 'fabrikam']);
  const vip = ((await api('/v1/services/blog')) as { vip: string }).vip;
  assert.notEqual(vip, address);
  assert.equal(
    off,
    `reserved IP fabrikam/blog-ip (${address}) disassociated from blog; blog vip now ${vip}\n`,
  );
  assert.match(await fails(['reserved-ip', 'create', 'x'], 2), /-s, --subscription/);
  assert.equal(
    await ok(['reserved-ip', 'delete', 'blog-ip', '-s', 'fabrikam']),
    'reserved IP fabrikam/blog-ip deleted\n',
  );
  assert.match(await fails(['get', 'reserved-ips', 'blog-ip', '-s', 'fabrikam'], 1), /not found/);
});

test('host maintenance prints each moved VM with its old and new host and DIP', async () => {
  const vms = (await api('/v1/vms')) as { service: string; name: string; host: string; dip: string }[];
  const web1 = vms.find((v) => v.service === 'shop' && v.name === 'web1')!;
  const onHost = vms.filter((v) => v.host === web1.host);
  const out = await ok(['host', 'maintenance', web1.host]);
  assert.match(out, /^VM\s+HOST\s+DIP$/m);
  const after = (await api('/v1/services/shop/vms/web1')) as { host: string; dip: string };
  const row = out.split('\n').find((l) => l.startsWith('shop/web1 '));
  assert.equal(
    row?.replace(/\s+/g, ' '),
    `shop/web1 ${web1.host} → ${after.host} ${web1.dip} → ${after.dip}`,
  );
  assert.match(out, new RegExp(`^moved ${onHost.length} VMs? off host ${web1.host}$`, 'm'));
  const rack = await json(['host', 'maintenance', '--rack', 'rack1']);
  assert.ok(Array.isArray(rack));
  for (const v of rack as { rack: string }[]) assert.equal(v.rack, 'rack2');
  assert.match(await fails(['host', 'maintenance', 'rack1-host1', '--rack', 'rack1'], 2), /one of them/);
  assert.match(await fails(['host', 'maintenance', 'no-such-host'], 1), /not found/);
});

test('events prints one line per event, and -o json one API event per line', async () => {
  const events = await allEvents();
  const lines = (await ok(['events', '-o', 'json'])).trim().split('\n');
  assert.deepEqual(
    lines.map((l) => JSON.parse(l) as unknown),
    events,
  );
  const since = events[events.length - 5]!.seq;
  const table = (await ok(['events', '--since', String(since)])).trim().split('\n');
  assert.equal(table.length, 4);
  for (const [i, l] of table.entries()) {
    const e = events[events.length - 4 + i]!;
    assert.match(
      l,
      new RegExp(`^\\s*${e.seq} ${e.time} ${e.type.replaceAll('.', '\\.')}\\s+${e.resource}\\s+\\S`),
    );
  }
  const firstDip = events.find((e) => e.type === 'vm.dip')!.seq;
  const dipLine = (await ok(['events', '--since', String(firstDip - 1)])).split('\n')[0]!;
  assert.match(dipLine, /vm\.dip\s+vm\/\S+\s+.*: dip -→127\.\S+$/);
});

test('events --follow prints new events as they happen and resumes after a disconnect without loss', async () => {
  const start = (await allEvents()).at(-1)!.seq;
  const child = spawn(process.execPath, [BIN, 'events', '--follow', '-o', 'json', '--since', String(start)], {
    env: { ...process.env, VIPDIP_URL: server.url, VIPDIP_TOKEN: server.operatorToken },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const seen = () =>
    stdout
      .split('\n')
      .filter((l) => l !== '')
      .map((l) => JSON.parse(l) as { seq: number; type: string });
  const until = async (what: string, done: () => boolean) => {
    for (let i = 0; i < 300 && !done(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.ok(done(), `${what}; follow printed:\n${stdout}${stderr}`);
  };
  try {
    const op = (srv: TestServer, verb: string) =>
      call(srv, srv.operatorToken, 'POST', `/v1/services/shop/vms/web1/${verb}`);
    // The stream is up once it has printed something; the first event proves it.
    assert.equal((await op(server, 'restart')).status, 200);
    await until('the first event arrives', () => seen().length >= 1);

    // The server dies (SIGKILL: no goodbye on the stream) and comes back on the same port and
    // state; meanwhile, before the client reconnects, more events happen.
    server.proc.kill('SIGKILL');
    await new Promise((r) =>
      server.proc.exitCode !== null || server.proc.signalCode !== null
        ? r(null)
        : server.proc.once('exit', r),
    );
    const port = new URL(server.url).port;
    restarted = await startServer({ dir: server.dir, args: ['--listen', `127.0.0.1:${port}`] });
    assert.equal(restarted.url, server.url);
    assert.equal((await op(restarted, 'stop')).status, 200);
    assert.equal((await op(restarted, 'start')).status, 200);

    const expected = (
      (await call(restarted, restarted.operatorToken, 'GET', `/v1/events?since=${start}`)).body as {
        events: { seq: number }[];
      }
    ).events;
    await until('every event arrives', () => seen().length >= expected.length);
    assert.deepEqual(
      seen().map((e) => e.seq),
      expected.map((e) => e.seq),
      'each event exactly once, in order',
    );
    assert.deepEqual(seen(), expected);
    assert.equal(stderr, '', 'no progress output when stderr is not a terminal');
  } finally {
    child.kill();
  }
});
