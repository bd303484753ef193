/**
 * Crash safety (SPEC.md §6): a SIGKILL at any moment loses no acknowledged change and leaves fsck
 * clean. A child process (test/fixtures/crash-child.ts) runs random lifecycle operations on a real
 * SQLite file and reports each committed one on stdout; we kill it at a random moment, reopen the
 * state, and check it against everything the child reported. The rounds share one state directory,
 * so each round starts from what the previous crash left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { formatIpv4, type Ipv4 } from '../../src/core/index.ts';
import { formatFinding, fsck } from '../../src/lifecycle/index.ts';
import { SqliteStore } from '../../src/store/index.ts';
import type { Report, ReportedVm } from '../fixtures/crash-child.ts';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHILD = join(ROOT, 'test/fixtures/crash-child.ts');
const CLI = join(ROOT, 'bin/vipdip.js');
const ROUNDS = 5;
const FIRST_LINE_TIMEOUT_MS = 15_000;

const live = new Set<ChildProcess>();
const dirs: string[] = [];
after(() => {
  for (const c of live) c.kill('SIGKILL');
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const exited = (c: ChildProcess): Promise<Exit> =>
  c.exitCode !== null || c.signalCode !== null
    ? Promise.resolve({ code: c.exitCode, signal: c.signalCode })
    : new Promise((res) => c.once('exit', (code, signal) => res({ code, signal })));

/** A timer that does not keep the test process alive once everything else is done. */
const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms).unref());

/** Runs the child until its first report, lets it work `killAfterMs` more, then SIGKILLs it. */
async function crashRound(
  dir: string,
  seed: number,
  killAfterMs: number,
): Promise<{ reports: Report[]; exit: Exit; stderr: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir, String(seed)], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  try {
    let stdout = '';
    let stderr = '';
    let sawLine!: () => void;
    const firstLine = new Promise<void>((res) => (sawLine = res));
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
      if (stdout.includes('\n')) sawLine();
    });
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const done = exited(child);
    const first = await Promise.race([
      firstLine.then(() => 'line' as const),
      done.then(() => 'exit' as const),
      sleep(FIRST_LINE_TIMEOUT_MS).then(() => 'timeout' as const),
    ]);
    assert.equal(first, 'line', `the child printed no report before it ${first}: ${stderr}`);
    await Promise.race([sleep(killAfterMs), done]);
    child.kill('SIGKILL');
    const exit = await done;
    // Let the last buffered bytes of the pipes arrive.
    await Promise.all([
      new Promise((res) => (child.stdout.readableEnded ? res(null) : child.stdout.once('end', res))),
      new Promise((res) => (child.stderr.readableEnded ? res(null) : child.stderr.once('end', res))),
    ]);
    // Only whole lines are acknowledgements; a torn last line is an operation we know nothing of.
    const lines = stdout.split('\n').slice(0, -1);
    return { reports: lines.map((l) => JSON.parse(l) as Report), exit, stderr };
  } finally {
    child.kill('SIGKILL');
    await exited(child);
    live.delete(child);
  }
}

function runCli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const c = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(c);
    let stdout = '';
    let stderr = '';
    c.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    c.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    c.once('error', rej);
    c.once('close', (code) => {
      live.delete(c);
      res({ code, stdout, stderr });
    });
  });
}

interface StoredEvent {
  seq: number;
  type: string;
  resource: string;
}

interface StoredVm {
  state: string;
  dip: number | null;
  ilpip: number | null;
}

const ipOrNull = (n: number | null) => (n === null ? null : formatIpv4(n as Ipv4));

test('a writer killed at random moments loses no acknowledged operation and leaves fsck clean', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-crash-'));
  dirs.push(dir);
  const baseSeed = Number(process.env.VIPDIP_CRASH_SEED ?? Math.floor(Math.random() * 1e9));
  t.diagnostic(`state ${dir}, base seed ${baseSeed} (set VIPDIP_CRASH_SEED to repeat the operations)`);
  let previousLastSeq = 0;
  let totalOps = 0;

  for (let round = 1; round <= ROUNDS; round++) {
    await t.test(`round ${round}: the state after the crash holds every reported operation`, async (rt) => {
      const killAfterMs = 300 + Math.floor(Math.random() * 1200);
      const { reports, exit, stderr } = await crashRound(dir, baseSeed + round, killAfterMs);
      rt.diagnostic(`killed after ${killAfterMs} ms: ${reports.length} acknowledged operations`);
      assert.deepEqual(exit, { code: null, signal: 'SIGKILL' }, `the child died on its own: ${stderr}`);
      assert.ok(reports.length > 0);
      totalOps += reports.length;

      const store = await SqliteStore.open(join(dir, 'state.db'));
      try {
        const findings = await store.read((r) => fsck(r));
        assert.deepEqual(findings.map(formatFinding), [], 'fsck finds the crashed state clean');

        const lastSeq = await store.read((r) => r.lastSeq());
        const maxReported = Math.max(...reports.map((r) => r.seq));
        assert.ok(
          lastSeq >= maxReported,
          `last stored seq ${lastSeq} < last acknowledged seq ${maxReported}`,
        );

        // Every acknowledged event is stored under its seq, as reported.
        const stored = new Map(
          (
            store.raw
              .prepare('select seq, type, resource from events where seq > ? order by seq')
              .all(previousLastSeq) as StoredEvent[]
          ).map((e) => [e.seq, e]),
        );
        const missing: string[] = [];
        for (const r of reports) {
          for (const [seq, type, resource] of r.events) {
            assert.ok(seq > previousLastSeq, `event ${seq} reuses a seq of an earlier round`);
            const e = stored.get(seq);
            if (e === undefined || e.type !== type || e.resource !== resource) {
              missing.push(
                `op #${r.n} ${r.op} ${r.target}: event ${seq} ${type} ${resource} is stored as ${e === undefined ? 'nothing' : `${e.type} ${e.resource}`}`,
              );
            }
          }
        }
        assert.deepEqual(missing, [], 'acknowledged events are all stored');

        // The last acknowledged state of each VM is what is stored, unless a later (unreported)
        // committed event touched that VM.
        const lastReport = new Map<string, { seq: number; vm: ReportedVm; n: number }>();
        for (const r of reports) for (const vm of r.vms) lastReport.set(vm.vm, { seq: r.seq, vm, n: r.n });
        const readVm = store.raw.prepare(
          `select vms.state, vms.dip, vms.ilpip from vms
           join cloud_services on cloud_services.id = vms.service_id
           where cloud_services.name = ? and vms.name = ?`,
        );
        const touchedLater = store.raw.prepare('select 1 from events where resource = ? and seq > ? limit 1');
        const wrong: string[] = [];
        let checked = 0;
        for (const [name, { seq, vm, n }] of lastReport) {
          if (touchedLater.get(`vm/${name}`, seq) !== undefined) continue;
          checked++;
          const [service, vmName] = name.split('/');
          const row = readVm.get(service, vmName) as StoredVm | undefined;
          const now =
            row === undefined
              ? { state: null, dip: null, ilpip: null }
              : { state: row.state, dip: ipOrNull(row.dip), ilpip: ipOrNull(row.ilpip) };
          const want = { state: vm.state, dip: vm.dip, ilpip: vm.ilpip };
          if (JSON.stringify(now) !== JSON.stringify(want)) {
            wrong.push(
              `${name} after op #${n}: reported ${JSON.stringify(want)}, stored ${JSON.stringify(now)}`,
            );
          }
        }
        assert.deepEqual(wrong, [], 'each VM is stored as last acknowledged');
        rt.diagnostic(`${checked} VMs compared with their last report; last seq ${lastSeq}`);
        previousLastSeq = lastSeq;
      } finally {
        await store.close();
      }

      const cli = await runCli(['fsck', '--state', dir]);
      assert.equal(cli.code, 0, `vipdip fsck exits 0 on the crashed state:\n${cli.stdout}${cli.stderr}`);
    });
  }
  t.diagnostic(`${totalOps} acknowledged operations over ${ROUNDS} crashes`);
});
