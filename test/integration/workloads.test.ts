/**
 * Workload supervision with real processes: the environment a workload gets, a restart when its
 * environment changes, SIGTERM then SIGKILL on stop, restarts with a doubling backoff after crashes,
 * the last output lines kept, and the built-in whoami and echo answering on their DIP.
 * Addresses: 127.205.0.0/16.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, describe, test } from 'node:test';
import {
  DEFAULT_SANDBOX_LIMITS,
  LOG_BYTES_KEPT,
  SANDBOX_USER,
  workloadCommand,
  WorkloadSupervisor,
  type DesiredWorkload,
} from '../../src/agent/index.ts';
import { VIPDIP_BIN } from '../../src/cli/up-options.ts';
import { eventually, udpAsk } from '../support/net.ts';

const cleanup: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

function workload(vm: string, command: string, env: Record<string, string> = {}): DesiredWorkload {
  const full = { VIPDIP_VM: vm, VIPDIP_SERVICE: 'shop', VIPDIP_DIP: '127.205.0.1', ...env };
  return {
    key: `shop/${vm}`,
    subscription: 'contoso',
    service: 'shop',
    vm,
    dip: full.VIPDIP_DIP,
    workload: command,
    launch:
      command === 'whoami' || command === 'echo'
        ? { kind: 'builtin', image: command }
        : { kind: 'shell', command, env: {} },
    env: full,
    fingerprint: JSON.stringify([command, full]),
  };
}

function supervisor(opts: { stopGraceMs?: number; backoffFirstMs?: number } = {}) {
  const s = new WorkloadSupervisor({ command: (w) => workloadCommand(w.launch, VIPDIP_BIN), ...opts });
  cleanup.push(() => s.close());
  return s;
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const text = (s: WorkloadSupervisor, key: string) =>
  (s.status(key)?.lines ?? []).map((l) => l.text).join('\n');

describe('workload supervision', () => {
  test('a workload runs with its VM in its environment, and its output lines are kept', async () => {
    const s = supervisor();
    const w = workload(
      'web1',
      'echo "I am $VIPDIP_VM of $VIPDIP_SERVICE on $VIPDIP_DIP"; echo oops >&2; exec sleep 60',
    );
    await s.reconcile([w], new Set([w.key]));
    await eventually('the output', () => text(s, w.key).includes('I am web1 of shop on 127.205.0.1'));
    const st = s.status(w.key)!;
    assert.equal(st.status, 'running');
    assert.ok(st.pid !== null && alive(st.pid));
    assert.ok(st.lines.some((l) => l.stream === 'stderr' && l.text === 'oops'));
    assert.ok(st.lines.every((l) => !Number.isNaN(Date.parse(l.time))));
  });

  test('the agent token never reaches a workload', async () => {
    process.env.VIPDIP_TOKEN = 'secret-operator-token';
    try {
      const s = supervisor();
      const w = workload('web9', 'echo "token=[$VIPDIP_TOKEN]"; exec sleep 60');
      await s.reconcile([w], new Set([w.key]));
      await eventually('the output', () => text(s, w.key).includes('token=[]'));
    } finally {
      delete process.env.VIPDIP_TOKEN;
    }
  });

  test('a change of environment (a new DIP) restarts it: the old process goes, a new one starts', async () => {
    const s = supervisor();
    const w1 = workload('web2', 'echo "on $VIPDIP_DIP"; exec sleep 60');
    await s.reconcile([w1], new Set([w1.key]));
    await eventually(
      'first start',
      () => s.status(w1.key)?.status === 'running' && text(s, w1.key).includes('on 127.205.0.1'),
    );
    const pid1 = s.status(w1.key)!.pid!;
    const w2 = workload('web2', 'echo "on $VIPDIP_DIP"; exec sleep 60', { VIPDIP_DIP: '127.205.0.2' });
    await s.reconcile([w2], new Set([w2.key]));
    await eventually('the restart', () => text(s, w2.key).includes('on 127.205.0.2'));
    const st = s.status(w2.key)!;
    assert.notEqual(st.pid, pid1);
    assert.equal(st.restarts, 1);
    assert.ok(!alive(pid1), 'the old process is gone');
    // The same desired state again changes nothing.
    await s.reconcile([w2], new Set([w2.key]));
    assert.equal(s.status(w2.key)!.pid, st.pid);
  });

  test('stopping sends SIGTERM, then SIGKILL to a process that ignores it; the logs stay', async () => {
    const s = supervisor({ stopGraceMs: 300 });
    const w = workload('db1', "trap '' TERM; echo ready; while true; do sleep 0.1; done");
    await s.reconcile([w], new Set([w.key]));
    await eventually('ready', () => text(s, w.key).includes('ready'));
    const pid = s.status(w.key)!.pid!;
    await s.reconcile([], new Set([w.key]));
    const st = s.status(w.key)!;
    assert.equal(st.status, 'stopped');
    assert.equal(st.pid, null);
    assert.ok(!alive(pid));
    assert.match(text(s, w.key), /stopped \(SIGKILL\)/);
    assert.match(text(s, w.key), /ready/);
    // A VM that is gone for good takes its record with it.
    await s.reconcile([], new Set());
    assert.equal(s.status(w.key), undefined);
  });

  test('a workload that crashes is restarted with a doubling backoff', async () => {
    const s = supervisor({ backoffFirstMs: 50 });
    const w = workload('flaky', 'echo "boom"; exit 3');
    await s.reconcile([w], new Set([w.key]));
    await eventually('three restarts', () => (s.status(w.key)?.restarts ?? 0) >= 3);
    const log = text(s, w.key);
    assert.match(log, /exited with code 3/);
    const delays = [...log.matchAll(/restarting in ([0-9]+) ms/g)].map((m) => Number(m[1]));
    assert.deepEqual(delays.slice(0, 3), [50, 100, 200]);
    await s.reconcile([], new Set([w.key]));
    assert.equal(s.status(w.key)!.status, 'stopped');
  });

  test('only the last 200 output lines are kept', async () => {
    const s = supervisor();
    const w = workload(
      'chatty',
      'i=0; while [ $i -lt 500 ]; do echo "line $i"; i=$((i+1)); done; exec sleep 60',
    );
    await s.reconcile([w], new Set([w.key]));
    await eventually('all lines', () => text(s, w.key).includes('line 499'));
    const lines = s.status(w.key)!.lines;
    assert.equal(lines.length, 200);
    assert.equal(lines.at(-1)!.text, 'line 499');
    assert.ok(!lines.some((l) => l.text === 'line 100'));
  });

  test('the log ring is bounded in bytes as well as lines', async () => {
    const s = supervisor();
    // 100 lines of 2000 characters: within the line count, far over the byte bound.
    const w = workload(
      'wide',
      'i=0; while [ $i -lt 100 ]; do printf "%02000d\\n" $i; i=$((i+1)); done; echo done; exec sleep 60',
    );
    await s.reconcile([w], new Set([w.key]));
    await eventually('all lines', () => text(s, w.key).includes('done'));
    const lines = s.status(w.key)!.lines;
    const bytes = lines.reduce((n, l) => n + Buffer.byteLength(l.text), 0);
    assert.ok(bytes <= LOG_BYTES_KEPT, `${bytes} bytes kept`);
    assert.ok(lines.length < 100 && lines.length > 10, `${lines.length} lines kept`);
    assert.equal(lines.at(-1)!.text, 'done');
  });

  test('as root, a workload runs as the sandbox user, in its own directory, with PATH and its own variables only, under limits', async (t) => {
    if (process.getuid?.() !== 0) {
      t.skip('needs root: the sandbox user exists only then');
      return;
    }
    process.env.VIPDIP_STORE = 'postgres://secret@127.0.0.1/x';
    try {
      const s = supervisor();
      const w = workload(
        'boxed',
        'echo "uid=$(id -u) user=$(id -un) cwd=$(pwd)"; env | cut -d= -f1 | sort | tr "\\n" " "; echo; ' +
          'grep -E "^Max (cpu time|processes|open files|address space) " /proc/self/limits; echo "nice=$(nice)"; ' +
          'ls -ld "$(pwd)" | cut -c1-10; echo END; exec sleep 60',
      );
      await s.reconcile([w], new Set([w.key]));
      await eventually('the output', () => text(s, w.key).split('\n').includes('END'));
      // The workload's own lines, not the supervisor's note that quotes its command.
      const out = s
        .status(w.key)!
        .lines.filter((l) => !l.text.startsWith('[vipdip]'))
        .map((l) => l.text)
        .join('\n');
      const uid = Number(/uid=(\d+)/.exec(out)![1]);
      assert.notEqual(uid, 0, out);
      assert.match(out, new RegExp(`user=${SANDBOX_USER}`));
      assert.match(out, /cwd=\S+\/shop\.boxed\b/);
      assert.match(out, /^drwx------$/m);
      const names = /^((?:[A-Z_]+ )+)$/m.exec(out)![1]!.trim().split(' ');
      assert.deepEqual(
        names.filter((n) => n !== 'PWD' && n !== 'SHLVL' && n !== '_'),
        ['PATH', 'VIPDIP_DIP', 'VIPDIP_SERVICE', 'VIPDIP_VM'],
        out,
      );
      const d = DEFAULT_SANDBOX_LIMITS;
      const limit = (name: string) => new RegExp(`^Max ${name}\\s+(\\d+)\\s+(\\d+)`, 'm').exec(out)?.slice(1);
      assert.deepEqual(limit('processes'), [String(d.processes), String(d.processes)], out);
      assert.deepEqual(limit('open files'), [String(d.openFiles), String(d.openFiles)], out);
      assert.deepEqual(
        limit('address space'),
        [String(d.addressSpaceBytes), String(d.addressSpaceBytes)],
        out,
      );
      assert.deepEqual(limit('cpu time'), [String(d.cpuSeconds), String(d.cpuSeconds)], out);
      assert.match(out, /^nice=10$/m);
    } finally {
      delete process.env.VIPDIP_STORE;
    }
  });

  test('the built-in whoami answers HTTP on its DIP with who it is and who it saw', async () => {
    const s = supervisor();
    const w = workload('who1', 'whoami', {
      VIPDIP_DIP: '127.205.1.10',
      VIPDIP_PORT_HTTP: '18000',
      VIPDIP_VIP: '127.205.1.1',
      VIPDIP_SUBSCRIPTION: 'contoso',
      VIPDIP_HOST: 'rack1-host1',
    });
    await s.reconcile([w], new Set([w.key]));
    const body = await eventually(
      'whoami answers',
      () =>
        new Promise<string | undefined>((resolve) => {
          const req = request(
            { host: '127.205.1.10', port: 18000, path: '/', localAddress: '127.205.1.99' },
            (res) => {
              let b = '';
              res.on('data', (d: Buffer) => (b += d.toString()));
              res.on('end', () => resolve(b));
            },
          );
          req.on('error', () => resolve(undefined));
          req.end();
        }),
      30_000,
      100,
    );
    const j = JSON.parse(body) as Record<string, unknown>;
    assert.deepEqual(
      { ...j, remotePort: typeof j.remotePort },
      {
        vm: 'who1',
        service: 'shop',
        subscription: 'contoso',
        dip: '127.205.1.10',
        vip: '127.205.1.1',
        remoteAddress: '127.205.1.99',
        remotePort: 'number',
        host: 'rack1-host1',
      },
    );
  });

  test('the built-in echo echoes TCP and UDP on its endpoint ports', async () => {
    const s = supervisor();
    const w = workload('echo1', 'echo', {
      VIPDIP_DIP: '127.205.2.10',
      VIPDIP_PORT_TCP: '17000',
      VIPDIP_PROTOCOL_TCP: 'tcp',
      VIPDIP_PORT_UDP: '17001',
      VIPDIP_PROTOCOL_UDP: 'udp',
    });
    await s.reconcile([w], new Set([w.key]));
    await eventually('listening', () => text(s, w.key).includes('udp 127.205.2.10:17001'), 30_000);
    const { connect } = await import('node:net');
    const echoed = await new Promise<string>((resolve, reject) => {
      const c = connect({ host: '127.205.2.10', port: 17000 });
      let b = '';
      c.on('data', (d) => (b += d.toString()));
      c.on('end', () => resolve(b));
      c.on('error', reject);
      c.end('hello tcp');
    });
    assert.equal(echoed, 'hello tcp');
    assert.equal((await udpAsk('127.205.2.10', 17001, 'hello udp'))?.text, 'hello udp');
  });
});
