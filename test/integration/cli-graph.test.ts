/**
 * A CLI call should cost a process start, not the server's code: every client verb (every verb but
 * the server verbs of main.ts's SERVER_VERBS, so a verb added later is checked too) runs in a child
 * process with a module recorder preloaded, and none of the server's packages may load. The server
 * verbs are the control: the same recorder must see those packages when `up` loads.
 */
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { buildProgram, SERVER_VERBS } from '../../src/cli/main.ts';
import { BIN, startServer, type TestServer } from '../support/server.ts';

const RECORDER = join(import.meta.dirname, '../fixtures/load-recorder.mjs');
/** The server's packages: the store's drivers and SQL builder, the HTTP server and its plugins, DNS, metrics. */
const SERVER_PACKAGES = [
  'better-sqlite3',
  'pg',
  'fastify',
  'kysely',
  '@fastify/static',
  '@fastify/swagger',
  'dns-packet',
  'prom-client',
];

const dir = mkdtempSync(join(tmpdir(), 'vipdip-graph-'));
let server: TestServer;
let runs = 0;

before(async () => {
  server = await startServer();
});
after(async () => {
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs `vipdip ARGS` with the recorder and returns its exit code and the npm packages it loaded. */
async function packagesLoaded(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number | null; packages: Set<string>; stderr: string }> {
  const record = join(dir, `run-${runs++}.txt`);
  const child = spawn(process.execPath, ['--import', RECORDER, BIN, ...args], {
    cwd: dir,
    env: {
      ...process.env,
      VIPDIP_URL: server.url,
      VIPDIP_TOKEN: server.operatorToken,
      VIPDIP_STORE: '',
      VIPDIP_LOAD_RECORD: record,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
  let stderr = '';
  child.stdout.resume();
  child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const code = await new Promise<number | null>((ok) => child.once('close', ok));
  const packages = new Set<string>();
  for (const line of readFileSync(record, 'utf8').split('\n')) {
    const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line);
    if (m) packages.add(m[1]!);
  }
  return { code, packages, stderr };
}

const serverPackagesIn = (packages: Set<string>) => SERVER_PACKAGES.filter((p) => packages.has(p));

test('every client verb starts without loading any of the server packages', async () => {
  const program = await buildProgram(['node', 'vipdip']);
  const clientVerbs = program.commands
    .map((c) => c.name())
    .filter((name) => !(name in SERVER_VERBS) && name !== 'help');
  // The verbs known today, at least; a new verb joins the list by itself.
  for (const v of ['apply', 'get', 'vm', 'events', 'status', 'down']) assert.ok(clientVerbs.includes(v), v);
  for (const verb of clientVerbs) {
    const r = await packagesLoaded([verb, '--help']);
    assert.equal(r.code, 0, `${verb} --help: ${r.stderr}`);
    assert.ok(r.packages.has('commander'), `the recorder saw ${verb} load its own parser`);
    assert.deepEqual(serverPackagesIn(r.packages), [], `vipdip ${verb} loaded server packages`);
  }
});

test('get vms against a running server, status, --version and --help load none of the server packages', async () => {
  const get = await packagesLoaded(['get', 'vms', '-o', 'json']);
  assert.equal(get.code, 0, get.stderr);
  assert.deepEqual(serverPackagesIn(get.packages), []);
  for (const args of [['status', '--state', server.stateDir], ['--version'], ['--help']]) {
    const r = await packagesLoaded(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.deepEqual(serverPackagesIn(r.packages), [], args.join(' '));
  }
});

test('a built-in workload starts without the CLI and without the server packages', async () => {
  // An unknown built-in: the workload entry point loads, answers and exits at once.
  const r = await packagesLoaded(['workload', 'no-such-builtin']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /unknown built-in/);
  assert.ok(!r.packages.has('commander'), 'the workload loaded the CLI');
  assert.deepEqual(serverPackagesIn(r.packages), []);
});

/** A TCP port free on 127.0.0.1 a moment ago. */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((ok) => s.listen(0, '127.0.0.1', ok));
  const { port } = s.address() as { port: number };
  await new Promise((ok) => s.close(ok));
  return port;
}

for (const [builtin, ready] of [
  ['whoami', /listening on http:\/\/127\.0\.0\.1:\d+\//],
  ['echo', /echo shop\/web1 on tcp 127\.0\.0\.1:\d+/],
] as const) {
  test(`a running ${builtin} workload, serving, has loaded none of the CLI's or the server's packages`, async () => {
    const port = await freePort();
    const record = join(dir, `run-${runs++}.txt`);
    // As the agent starts it: the VM's identity and ports in the environment, stdin its lifeline.
    const child = spawn(process.execPath, ['--import', RECORDER, BIN, 'workload', builtin], {
      cwd: dir,
      env: {
        ...process.env,
        VIPDIP_LOAD_RECORD: record,
        VIPDIP_SUBSCRIPTION: 'contoso',
        VIPDIP_SERVICE: 'shop',
        VIPDIP_VM: 'web1',
        VIPDIP_DIP: '127.0.0.1',
        VIPDIP_VIP: '127.0.0.2',
        VIPDIP_PORT_HTTP: String(port),
      },
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: 60_000,
    });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (out += s));
    const closed = new Promise<number | null>((ok) => child.once('close', ok));
    await new Promise<void>((ok, fail) => {
      const check = () => (ready.test(out) ? ok() : undefined);
      child.stdout.on('data', check);
      child.once('exit', (c) => fail(new Error(`${builtin} exited with ${c}: ${out}`)));
    });
    if (builtin === 'whoami') {
      const body = (await (await fetch(`http://127.0.0.1:${port}/`)).json()) as { vm: string };
      assert.equal(body.vm, 'web1');
    }
    child.stdin.end(); // the agent going away: the workload closes and exits
    assert.equal(await closed, 0, out);
    const packages = new Set<string>();
    for (const line of readFileSync(record, 'utf8').split('\n')) {
      const m = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(line);
      if (m) packages.add(m[1]!);
    }
    const loaded = ['commander', ...SERVER_PACKAGES].filter((p) => packages.has(p));
    assert.deepEqual(loaded, [], `${builtin} loaded ${loaded.join(', ')}`);
    assert.ok(
      readFileSync(record, 'utf8').includes('dist/lib/agent/builtins/main.js'),
      'the recorder saw the workload entry point load',
    );
  });
}

test('the recorder does see the server packages when a server verb loads', async () => {
  const r = await packagesLoaded(['up', '--help']);
  assert.equal(r.code, 0, r.stderr);
  for (const p of ['better-sqlite3', 'fastify', 'kysely']) assert.ok(r.packages.has(p), p);
});

test('the help lists each server verb with the description of its real command', async () => {
  const listed = await buildProgram(['node', 'vipdip', '--help']);
  for (const name of Object.keys(SERVER_VERBS)) {
    const real = (await buildProgram(['node', 'vipdip', name])).commands.find((c) => c.name() === name);
    const stub = listed.commands.find((c) => c.name() === name);
    assert.ok(real !== undefined && stub !== undefined, name);
    assert.equal(stub.description(), real.description(), name);
    assert.ok(real.options.length > 0, `${name} is the real command when it is the verb`);
  }
});
