/**
 * A hostile tenant against a real `vipdip up` (local driver, real workloads), SPEC §8: every way a
 * subscription token might get a command onto the host (PATCH and create a VM, apply a topology
 * with a command or with images, the images routes) is refused and changes nothing; an operator's
 * command runs as the sandbox user and, asked from inside the workload, can read neither the state
 * database nor the operator token, nor signal the server; a fork loop stops at its process limit,
 * a 10 GB allocation fails inside its workload, and the server answers throughout.
 * Needs root (the sandbox user exists only then). Addresses: 127.221.0.0/16 (public pool),
 * 127.222.0.0/16 (VNet).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { defaultSandboxRoot, SANDBOX_USER } from '../../src/agent/index.ts';
import { eventually } from '../support/net.ts';
import { BIN, call, startServer, type TestServer } from '../support/server.ts';

/** Low, so that the fork loop reaches it at once (every workload of the sandbox user counts). */
const MAX_PROCESSES = 150;

let srv: TestServer;
let tenant: string;
const isRoot = process.getuid?.() === 0;
const api = (method: string, path: string, body?: unknown, token: string = srv.operatorToken) =>
  call(
    srv,
    token,
    method,
    path,
    body,
    typeof body === 'string' ? { 'content-type': 'application/yaml' } : {},
  );

const NET = `
    virtualNetworks:
      - name: net
        addressSpace: [127.222.0.0/16]
        subnets: [{ name: front, cidr: 127.222.1.0/24 }]`;
const topology = (workload: string, extra = '') => `${extra}
subscriptions:
  - name: mallory${NET}
    cloudServices:
      - name: box
        vnet: net
        vms:
          - name: web1
            subnet: front
            workload: ${JSON.stringify(workload)}
            endpoints: [{ name: http, protocol: tcp, publicPort: 8080, localPort: 8000 }]
`;

interface Logs {
  status: string;
  lines: { text: string }[];
}
const logs = async (vm: string): Promise<string[]> => {
  const r = await api('GET', `/v1/services/box/vms/${vm}/logs`);
  assert.equal(r.status, 200, r.text);
  return (r.body as Logs).lines.map((l) => l.text);
};

/** The uid of the sandbox user, from the password file. */
function sandboxUid(): number {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith(`${SANDBOX_USER}:`));
  assert.ok(line !== undefined, `${SANDBOX_USER} exists`);
  return Number(line.split(':')[2]);
}

/** Processes (not threads) owned by `uid`, from /proc. */
function processesOf(uid: number): number {
  let n = 0;
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (statSync(`/proc/${d}`).uid === uid) n++;
    } catch {
      // gone meanwhile
    }
  }
  return n;
}

/** What the server's own state looks like to the operator: VMs, images and the event log's end. */
async function snapshot(): Promise<string> {
  const vms = await api('GET', '/v1/vms');
  const images = await api('GET', '/v1/images');
  const events = await api('GET', '/v1/events?order=desc&limit=1');
  return JSON.stringify([vms.body, images.body, events.body]);
}

before(async () => {
  if (!isRoot) return;
  // The state directory is private (0700) as vipdip makes it; made so here too, before the start.
  const dir = mkdtempSync(join(tmpdir(), 'vipdip-hostile-'));
  mkdirSync(join(dir, '.vipdip'), { mode: 0o700 });
  srv = await startServer({
    dir,
    args: ['--driver', 'local', '--time-scale', '0.05', '--public-pool', '127.221.0.0/16'],
    env: { VIPDIP_WORKLOAD_MAX_PROCESSES: String(MAX_PROCESSES) },
  });
  const applied = await api('POST', '/v1/apply', topology('whoami'));
  assert.equal(applied.status, 200, applied.text);
  const t = await api('POST', '/v1/subscriptions/mallory/tokens', { name: 'mallory' });
  assert.equal(t.status, 201, t.text);
  tenant = (t.body as { token: string }).token;
});
after(async () => {
  if (srv === undefined) return;
  await srv.stop();
  // The VMs' working directories go when the server stops.
  assert.ok(!existsSync(defaultSandboxRoot(resolve(srv.stateDir))), 'the working directories are gone');
});

describe(
  'a hostile tenant',
  { skip: isRoot ? false : 'needs root: workloads are sandboxed only then' },
  () => {
    test('gets no command onto the host by any route, and nothing changes', async () => {
      const before = await snapshot();
      const vm = '/v1/services/box/vms/web1';
      const attempts: [string, string, unknown, number][] = [
        ['PATCH', vm, { workload: 'command: id' }, 403],
        ['PATCH', vm, { workload: 'sh -c "id; cat .vipdip/operator.token"' }, 422],
        ['PATCH', vm, { workload: 'id;cat /etc/shadow' }, 422],
        ['PATCH', vm, { workload: '$(id)' }, 422],
        ['PATCH', vm, { workload: '/bin/sh' }, 422],
        ['PATCH', vm, { workload: 'no-such-image' }, 422],
        ['POST', '/v1/services/box/vms', { name: 'evil1', subnet: 'front', workload: 'command: id' }, 403],
        ['POST', '/v1/services/box/vms', { name: 'evil2', subnet: 'front', workload: 'sh -c id' }, 422],
        ['POST', '/v1/apply', topology('command: id'), 422],
        ['POST', '/v1/apply', topology('sh -c id'), 422],
        ['POST', '/v1/apply', topology('whoami', 'images:\n  - { name: whoami2, command: "id" }'), 403],
        ['POST', '/v1/apply', topology('evil', 'images:\n  - { name: evil, command: "id" }'), 403],
        ['POST', '/v1/images', { name: 'evil', command: 'id' }, 403],
        ['PUT', '/v1/images/whoami', { command: 'id' }, 403],
        ['PUT', '/v1/images/evil', { command: 'id' }, 403],
      ];
      for (const [method, path, body, status] of attempts) {
        const r = await api(method, path, body, tenant);
        assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)}: ${r.text}`);
        assert.match(r.headers.get('content-type') ?? '', /problem\+json/);
      }
      assert.equal(await snapshot(), before, 'nothing changed');
    });

    test("an operator's command runs as the sandbox user and reaches neither the state nor the server", async () => {
      const state = srv.stateDir;
      assert.ok(existsSync(join(state, 'state.db')), 'the database exists (a denial is not a missing file)');
      assert.ok(existsSync(join(state, 'operator.token')));
      assert.equal(statSync(state).mode & 0o777, 0o700);
      const pid = srv.proc.pid!;
      const script = [
        'echo "uid=$(id -u) user=$(id -un)"',
        `for f in ${state}/state.db ${state}/operator.token; do if cat "$f" >/dev/null 2>&1; then echo "read $f: yes"; else echo "read $f: no"; fi; done`,
        `if ls ${state} >/dev/null 2>&1; then echo "list state: yes"; else echo "list state: no"; fi`,
        `if kill -0 ${pid} 2>/dev/null; then echo "signal server: yes"; else echo "signal server: no ($(kill -0 ${pid} 2>&1))"; fi`,
        `if cat /proc/${pid}/environ >/dev/null 2>&1; then echo "server environ: yes"; else echo "server environ: no"; fi`,
        'echo "env: $(env | cut -d= -f1 | grep -v "^PWD$" | sort | tr "\\n" " ")"',
        'echo DONE',
        'exec sleep 600',
      ].join('\n');
      const r = await api('POST', '/v1/services/box/vms', {
        name: 'probe',
        subnet: 'front',
        workload: `command: ${script}`,
      });
      assert.equal(r.status, 201, r.text);
      const lines = await eventually('the probe has spoken', async () => {
        const l = await logs('probe');
        return l.includes('DONE') ? l : undefined;
      });
      const said = lines.filter((l) => !l.startsWith('[vipdip]'));
      const uid = Number(/^uid=(\d+)/m.exec(said.join('\n'))?.[1]);
      assert.ok(uid > 0, said.join('\n'));
      assert.equal(uid, sandboxUid());
      assert.ok(said.includes(`uid=${uid} user=${SANDBOX_USER}`), said.join('\n'));
      assert.ok(said.includes(`read ${state}/state.db: no`), said.join('\n'));
      assert.ok(said.includes(`read ${state}/operator.token: no`), said.join('\n'));
      assert.ok(said.includes('list state: no'), said.join('\n'));
      assert.ok(
        said.some((l) => /^signal server: no \(.*Operation not permitted\)$/.test(l)),
        said.join('\n'),
      );
      assert.ok(said.includes('server environ: no'), said.join('\n'));
      const env = said
        .find((l) => l.startsWith('env: '))!
        .slice(5)
        .trim()
        .split(' ');
      assert.deepEqual(
        env.filter((n) => !n.startsWith('VIPDIP_')),
        ['PATH'],
        `only PATH and the VM's own variables: ${env.join(' ')}`,
      );
      assert.ok(!env.includes('VIPDIP_TOKEN') && !env.includes('VIPDIP_STORE'));
    });

    test('a 10 GB allocation fails inside its workload; the server is untouched', async () => {
      const r = await api('POST', '/v1/services/box/vms', {
        name: 'hog',
        subnet: 'front',
        workload:
          `command: "${process.execPath}" -e "try { const b = new ArrayBuffer(10 * 1024 ** 3); ` +
          `console.log('allocated', b.byteLength) } catch (e) { console.log('refused:', e.message) }"; exec sleep 600`,
      });
      assert.equal(r.status, 201, r.text);
      const lines = await eventually('the allocation was tried', async () => {
        const l = await logs('hog');
        return l.some((x) => /^(refused|allocated)/.test(x)) ? l : undefined;
      });
      assert.ok(lines.includes('refused: Array buffer allocation failed'), lines.join('\n'));
      assert.equal((await api('GET', '/healthz', undefined)).status, 200);
      assert.equal((await api('DELETE', '/v1/services/box/vms/hog')).status, 204);
    });

    test('a fork loop stops at its process limit while the server keeps answering', async () => {
      const uid = sandboxUid();
      const r = await api('POST', '/v1/services/box/vms', {
        name: 'bomb',
        subnet: 'front',
        workload:
          'command: i=0; while [ $i -lt 1000 ]; do sleep 60 & i=$((i+1)); done; echo "all $i started"; exec sleep 600',
      });
      assert.equal(r.status, 201, r.text);
      const lines = await eventually('the loop hit the limit', async () => {
        const l = await logs('bomb');
        return l.some((x) => /Cannot fork|fork|Resource temporarily unavailable/i.test(x)) ? l : undefined;
      });
      assert.ok(!lines.some((l) => l.startsWith('all ') && l.endsWith(' started')), lines.join('\n'));
      // While it runs (restarted after each failure), the server answers at once, and the sandbox
      // user never holds more processes than its limit.
      let worst = 0;
      let most = 0;
      for (let i = 0; i < 40; i++) {
        const t0 = performance.now();
        const h = await api('GET', '/healthz', undefined);
        worst = Math.max(worst, performance.now() - t0);
        assert.equal(h.status, 200);
        most = Math.max(most, processesOf(uid));
        await new Promise((ok) => setTimeout(ok, 25));
      }
      assert.ok(most <= MAX_PROCESSES, `${most} processes of ${SANDBOX_USER}`);
      assert.ok(worst < 1000, `/healthz took ${worst.toFixed(0)} ms at worst`);
      const vms = await api('GET', '/v1/vms', undefined, tenant);
      assert.equal(vms.status, 200);
      // Stopped, it leaves nothing behind.
      assert.equal((await api('POST', '/v1/services/box/vms/bomb/stop')).status, 200);
      await eventually('the fork loop is gone', () => processesOf(uid) < 20, 15_000);
      process.stdout.write(
        `# fork loop: at most ${most} sandbox processes, /healthz worst ${worst.toFixed(1)} ms\n`,
      );
    });
  },
);

describe(
  'a server not running as root',
  { skip: isRoot ? false : 'needs root to start one as nobody' },
  () => {
    test('says at start that workloads run as its own user', async () => {
      const NOBODY = 65534;
      const dir = mkdtempSync(join(tmpdir(), 'vipdip-nobody-'));
      chownSync(dir, NOBODY, NOBODY);
      const proc = spawn(
        process.execPath,
        [BIN, 'up', '--state', join(dir, '.vipdip'), '--listen', '127.0.0.1:0', '--dns', 'off'],
        {
          uid: NOBODY,
          gid: NOBODY,
          cwd: dir,
          env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, VIPDIP_STORE: '' },
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      );
      let out = '';
      proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      try {
        await eventually(
          'it is up',
          () => /API and dashboard on/.test(out) || proc.exitCode !== null,
          30_000,
        );
        assert.match(out, /workloads run as the server's own user \(nobody\)/, out);
        assert.equal(out.match(/workloads run as the server's own user/g)?.length, 1, 'said once');
      } finally {
        proc.kill('SIGTERM');
        await new Promise((ok) => (proc.exitCode !== null ? ok(null) : proc.once('exit', ok)));
        rmSync(dir, { recursive: true, force: true });
      }
    });
  },
);
