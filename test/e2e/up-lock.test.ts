/**
 * `vipdip up` holds a lock on its state directory: a second `up` of the same state is refused naming
 * the first, `status` reports it, `down` stops it cleanly, and the lock a crash leaves behind is
 * taken over. Real processes throughout: `up` with the `none` driver on free loopback ports.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, vipdip, type TestServer } from '../support/server.ts';

const dir = mkdtempSync(join(tmpdir(), 'vipdip-lock-'));
const started: TestServer[] = [];
after(async () => {
  for (const s of started) await s.stop({ keep: true });
  rmSync(dir, { recursive: true, force: true });
});

async function up(): Promise<TestServer> {
  const s = await startServer({ dir });
  started.push(s);
  return s;
}

const exited = (s: TestServer) =>
  new Promise<number | null>((ok) =>
    s.proc.exitCode !== null ? ok(s.proc.exitCode) : s.proc.once('exit', (c) => ok(c)),
  );

test('vipdip --version prints the version of the package', async () => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as {
    version: string;
  };
  const r = await vipdip(['--version']);
  assert.equal(r.code, 0);
  assert.equal(r.out, `vipdip ${pkg.version}\n`);
});

test('status of a state nothing runs on says so and exits 3', async () => {
  const r = await vipdip(['status', '--state', join(dir, 'nothing')]);
  assert.equal(r.code, 3);
  assert.match(r.out, /^vipdip is not running on .*nothing\n$/);
  const json = await vipdip(['status', '--state', join(dir, 'nothing'), '-o', 'json']);
  assert.equal(json.code, 3);
  assert.equal((JSON.parse(json.out) as { running: boolean }).running, false);
});

test('a second up of the same state is refused naming the running one, which keeps serving', async () => {
  const first = await up();
  const second = await vipdip(['up', '--state', first.stateDir, '--listen', '127.0.0.1:0', '--dns', 'off']);
  assert.equal(second.code, 1);
  assert.equal(second.err.split('\n').length, 2, `one line: ${second.err}`);
  assert.match(second.err, new RegExp(`in use by vipdip up \\(PID ${first.proc.pid}, API on ${first.url}`));
  assert.match(second.err, /vipdip down --state/);
  assert.equal((await fetch(`${first.url}/healthz`)).status, 200);
});

test('status reports the running up: PID, API address, DNS, driver and uptime', async () => {
  const s = started[0]!;
  const r = await vipdip(['status', '--state', s.stateDir, '-o', 'json']);
  assert.equal(r.code, 0, r.err);
  const st = JSON.parse(r.out) as Record<string, unknown>;
  assert.equal(st.running, true);
  assert.equal(st.pid, s.proc.pid);
  assert.equal(st.api, s.url);
  assert.equal(st.dns, null);
  assert.equal(st.driver, 'none');
  assert.equal(typeof st.uptimeSeconds, 'number');
  assert.ok(Date.parse(st.startedAt as string) <= Date.now());
  const text = await vipdip(['status', '--state', s.stateDir]);
  assert.equal(text.code, 0);
  assert.match(text.out, new RegExp(`^vipdip is running: PID ${s.proc.pid}, up \\d`));
  assert.match(text.out, /API +http:\/\/127\.0\.0\.1:\d+/);
  assert.match(text.out, /DNS +off/);
  assert.match(text.out, /driver +none/);
});

test('down stops the up of a state cleanly and removes its lock; a second down finds nothing', async () => {
  const s = started[0]!;
  const r = await vipdip(['down', '--state', s.stateDir]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, new RegExp(`^vipdip stopped \\(PID ${s.proc.pid}\\)`));
  assert.equal(await exited(s), 0);
  assert.match(s.output(), /vipdip stopped; state closed cleanly/);
  assert.ok(!existsSync(join(s.stateDir, 'up.lock')));
  const again = await vipdip(['down', '--state', s.stateDir]);
  assert.equal(again.code, 0);
  assert.match(again.out, /not running/);
  assert.equal((await vipdip(['status', '--state', s.stateDir])).code, 3);
});

test('the lock of an up killed outright is taken over by the next up, and fsck is clean', async () => {
  const crashed = await up();
  crashed.proc.kill('SIGKILL');
  await exited(crashed);
  assert.ok(existsSync(join(crashed.stateDir, 'up.lock')), 'a crash leaves its lock');
  const st = await vipdip(['status', '--state', crashed.stateDir]);
  assert.equal(st.code, 3, 'a lock whose process is gone is not a running up');
  const next = await up();
  const r = await vipdip(['status', '--state', next.stateDir, '-o', 'json']);
  assert.equal((JSON.parse(r.out) as { pid: number }).pid, next.proc.pid);
  assert.equal((await vipdip(['down', '--state', next.stateDir])).code, 0);
  assert.equal((await vipdip(['fsck', '--state', next.stateDir])).code, 0);
});

test('down refuses a timeout that is not a whole number of seconds, with exit 2', async () => {
  const r = await vipdip(['down', '--state', join(dir, 'nothing'), '--timeout', 'soon']);
  assert.equal(r.code, 2);
  assert.match(r.err, /^vipdip: --timeout soon: must be a whole number of seconds/);
});

test('an up refused for a bad flag leaves no state directory behind', async () => {
  const state = join(dir, 'never');
  const r = await vipdip(['up', '--state', state, '--listen', 'nowhere', '--dns', 'off', '--driver', 'none']);
  assert.equal(r.code, 1);
  assert.ok(!existsSync(state));
});

test('with --debug a failure prints a stack trace that points at the TypeScript sources', async () => {
  const r = await vipdip(['--debug', 'get', 'vms'], { VIPDIP_URL: 'http://127.0.0.1:9', VIPDIP_TOKEN: 'x' });
  assert.equal(r.code, 1);
  assert.match(r.err, /src\/cli\/client\.ts:\d+:\d+/);
  // The lines are the right ones: the top frame is where the error is made, and every frame of the
  // sources lands on a line of code in its file (a stale or shifted map would miss).
  const frames = [...r.err.matchAll(/\((\/[^()]*\/src\/[\w/.-]+\.ts):(\d+):\d+\)/g)].map((m) => ({
    file: m[1]!,
    line: Number(m[2]),
  }));
  assert.ok(frames.length >= 3, r.err);
  const lineOf = (f: { file: string; line: number }) =>
    readFileSync(f.file, 'utf8').split('\n')[f.line - 1] ?? '';
  assert.match(lineOf(frames[0]!), /new UnreachableError\(/);
  for (const f of frames) assert.match(lineOf(f), /\S/, `${f.file}:${f.line} is a line of code`);
});
