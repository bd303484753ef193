/**
 * The package as a user gets it: `npm pack` (which builds), `npm install -g` of the tarball into a
 * temporary prefix, then the installed `vipdip up --demo` from another directory, with its state in
 * that directory's `.vipdip/` and the dashboard from the package's own built files, stopped with
 * `vipdip down`; and the installed package's whoami workload, started as the agent starts it.
 *
 * The pack runs in a copy of the checkout (its sources and the same node_modules), so its build
 * never empties the dist/ that other tests are running at the same moment.
 *
 * Offline: the install asks npm for `--offline` first. npm 11's global install resolves with full
 * packuments, which `npm ci` (working from the lock) does not put in the cache; when they are
 * missing the install falls back to `--prefer-offline` (npm's registry for the packuments only).
 * better-sqlite3's install script downloads a prebuilt binary from GitHub, unreachable here, and
 * would otherwise compile SQLite for minutes: prebuild-install's documented local-prebuilds option
 * is pointed at a prebuild of the same version made from this checkout's own binary.
 *
 * Addresses: 127.123.0.0/16. The demo runs with the `none` driver, so its own addresses (which
 * test/e2e/dataplane-up.test.ts serves) carry no sockets here; the workload listens in this block.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { eventually } from '../support/net.ts';

const run = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const PUBLIC_POOL = '127.123.0.0/16';
const WORKLOAD_DIP = '127.123.0.10';

const tmp = mkdtempSync(join(tmpdir(), 'vipdip-pkg-'));
let upPid: number | undefined;
after(() => {
  // Only if the test failed before `vipdip down` stopped it.
  if (upPid !== undefined) {
    try {
      process.kill(upPid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

/** A copy of what `npm pack` needs of the checkout: sources, build scripts, manifest; not dist/. */
function copyCheckout(to: string): void {
  mkdirSync(to);
  for (const entry of [
    'package.json',
    'package-lock.json',
    'README.md',
    'tsconfig.json',
    'bin',
    'scripts',
    'src',
    'examples',
  ]) {
    cpSync(join(ROOT, entry), join(to, entry), { recursive: true });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(to, 'node_modules'));
}

/** better-sqlite3's prebuild for this Node, named as prebuild-install looks for it, made from the checkout's binary. */
async function localPrebuild(dir: string): Promise<string> {
  const mod = join(ROOT, 'node_modules/better-sqlite3');
  const { version } = JSON.parse(readFileSync(join(mod, 'package.json'), 'utf8')) as { version: string };
  const stage = join(dir, 'stage');
  mkdirSync(join(stage, 'build/Release'), { recursive: true });
  cpSync(join(mod, 'build/Release/better_sqlite3.node'), join(stage, 'build/Release/better_sqlite3.node'));
  const out = join(dir, 'prebuilds');
  mkdirSync(out);
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  await run('tar', ['czf', join(out, name), '-C', stage, 'build']);
  return out;
}

async function npm(args: string[], cwd: string, env: Record<string, string> = {}) {
  try {
    const r = await run('npm', args, { cwd, env: { ...process.env, ...env }, timeout: 120_000 });
    return { code: 0, stdout: r.stdout, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { code: err.code ?? 1, stdout: err.stdout ?? '', out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

test('npm pack builds a tarball that installs globally and runs vipdip up --demo from any directory', async (t) => {
  // 1. Pack: prepare builds the dashboard and dist/lib in the copy.
  const src = join(tmp, 'checkout');
  copyCheckout(src);
  const pack = await npm(['pack', '--json', '--pack-destination', tmp], src);
  assert.equal(pack.code, 0, pack.out);
  const [packed] = JSON.parse(pack.stdout.slice(pack.stdout.indexOf('['))) as [
    { filename: string; files: { path: string }[] },
  ];
  const files = packed.files.map((f) => f.path);
  for (const f of [
    'bin/vipdip.js',
    'dist/lib/cli/main.js',
    'dist/lib/cli/main.js.map',
    'dist/lib/agent/builtins/main.js',
    'dist/web/index.html',
    'examples/demo.yaml',
  ]) {
    assert.ok(files.includes(f), `the tarball holds ${f}`);
  }
  const unwanted = files.filter((f) => /^(src|test|bench|scripts|docs|\.ci)\//.test(f) || /\.tsx?$/.test(f));
  assert.deepEqual(unwanted, [], 'no sources, tests or build scripts in the tarball');
  assert.ok(
    files.some((f) => /^dist\/web\/assets\/.*\.js$/.test(f)),
    'the built dashboard is inside',
  );

  // 2. Install globally into a temporary prefix.
  const prefix = join(tmp, 'prefix');
  const env = { npm_config_better_sqlite3_local_prebuilds: await localPrebuild(tmp) };
  const tgz = join(tmp, packed.filename);
  const base = ['install', '-g', '--prefix', prefix, tgz, '--no-audit', '--no-fund'];
  let install = await npm([...base, '--offline'], tmp, env);
  if (install.code !== 0 && /ENOTCACHED/.test(install.out)) {
    t.diagnostic('npm --offline: packuments not in the cache; installing with --prefer-offline');
    install = await npm([...base, '--prefer-offline'], tmp, env);
  }
  assert.equal(install.code, 0, install.out);
  assert.doesNotMatch(install.out, /EBADENGINE/, 'no engine warning on this Node');
  const bin = join(prefix, 'bin/vipdip');
  assert.ok(existsSync(bin), 'the bin is linked into the prefix');

  // 3. Run the installed command from a directory of its own.
  const cwd = join(tmp, 'elsewhere');
  mkdirSync(cwd);
  const { stdout: version } = await run(bin, ['--version'], { cwd });
  assert.match(version, /^vipdip \d+\.\d+\.\d+/);
  const up = spawn(
    bin,
    [
      'up',
      '--demo',
      '--listen',
      '127.0.0.1:0',
      '--dns',
      '127.0.0.1:0',
      '--public-pool',
      PUBLIC_POOL,
      '--driver',
      'none',
      '--seed',
      '12',
    ],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  upPid = up.pid;
  let out = '';
  up.stdout.on('data', (d: Buffer) => (out += d.toString()));
  up.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((ok) => up.once('exit', ok));
  const url = await eventually(
    'the installed vipdip up is ready',
    () => /API and dashboard on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)?.[1],
    30_000,
  );
  assert.equal((await fetch(`${url}/healthz`)).status, 200);

  // The dashboard is the package's own build: its page and the script it loads.
  const page = await (await fetch(`${url}/`)).text();
  const script = /<script[^>]+src="(\/assets\/[^"]+\.js)"/.exec(page)?.[1];
  assert.ok(script, `the dashboard page loads its script:\n${page}`);
  const js = await fetch(`${url}${script}`);
  assert.equal(js.status, 200);
  assert.ok((await js.text()).length > 10_000);

  // State in that directory's .vipdip/.
  for (const f of ['state.db', 'operator.token', 'up.lock'])
    assert.ok(existsSync(join(cwd, '.vipdip', f)), f);

  // The installed package's whoami, as the agent starts it (node BIN workload whoami, the VM's
  // identity in the environment, stdin its lifeline), serves on its DIP.
  const workload = spawn(process.execPath, [realpathSync(bin), 'workload', 'whoami'], {
    cwd,
    env: {
      ...process.env,
      VIPDIP_SERVICE: 'shop',
      VIPDIP_VM: 'web1',
      VIPDIP_DIP: WORKLOAD_DIP,
      VIPDIP_PORT_HTTP: '8000',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const workloadExited = new Promise<number | null>((ok) => workload.once('exit', ok));
  try {
    const hello = await eventually(
      'the installed whoami answers',
      async () =>
        (await fetch(`http://${WORKLOAD_DIP}:8000/`)).json() as Promise<{ vm: string; dip: string }>,
      20_000,
      50,
    );
    assert.deepEqual([hello.vm, hello.dip], ['web1', WORKLOAD_DIP]);
  } finally {
    workload.stdin.end();
  }
  assert.equal(await workloadExited, 0);

  // The client verbs find the server through the state directory of the working directory.
  const { stdout: status } = await run(bin, ['status'], { cwd });
  assert.match(status, new RegExp(`^vipdip is running: PID ${up.pid}`));
  const { stdout: vms } = await run(bin, ['get', 'vms'], { cwd });
  assert.match(vms, /shop\/web1/);

  // With --debug, an internal failure's stack points at the TypeScript sources, through the shipped maps.
  const failed = await run(bin, ['--debug', 'get', 'vms'], {
    cwd,
    env: { ...process.env, VIPDIP_URL: 'http://127.0.0.1:9', VIPDIP_TOKEN: 'x' },
  }).catch((e: { code: number; stderr: string }) => e);
  assert.equal((failed as { code: number }).code, 1);
  assert.match((failed as { stderr: string }).stderr, /src\/cli\/client\.ts:\d+:\d+/);

  const { stdout: down } = await run(bin, ['down'], { cwd, timeout: 40_000 });
  assert.match(down, new RegExp(`^vipdip stopped \\(PID ${up.pid}\\)`));
  assert.equal(await exited, 0, out);
  upPid = undefined;
  assert.ok(!existsSync(join(cwd, '.vipdip/up.lock')));
});
