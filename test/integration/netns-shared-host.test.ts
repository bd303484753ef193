/**
 * Built-in workloads of VMs in network namespaces share a host (root only; src/agent/shared-hosts.ts):
 * one host per subscription, the sockets opened inside each VM's namespace on its DIP, the host
 * running as the sandbox user, every VIP answering through the kernel path with the VM behind it; a
 * crash of one VM's workload restarts that VM alone; a stop leaves no host behind. Every namespace carries this test's prefix
 * and is deleted when it ends. Addresses: 10.1/16, 10.2/16 and 198.18.0.0/15, inside them only.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  DEFAULT_SANDBOX_LIMITS,
  sharedHostCommand,
  workloadCommand,
  WorkloadSupervisor,
  type DesiredWorkload,
} from '../../src/agent/index.ts';
import { ensureSandboxUser, hardOpenFiles } from '../../src/agent/sandbox.ts';
import { VIPDIP_BIN } from '../../src/cli/up-options.ts';
import { NetnsDriver } from '../../src/dataplane/index.ts';
import { removeWorld, routerNamespace, vmNamespace } from '../../src/dataplane/netns/world.ts';
import {
  BACKEND_PORT,
  SAMPLE_VIPS,
  SAMPLE_VMS,
  VIP_PORT,
  requireNetns,
  sampleDesired,
  testPrefix,
  type SampleVm,
} from '../support/netns.ts';
import { eventually } from '../support/net.ts';

/** An `echo` VM beside the sample's, on UDP 7007: a datagram socket handed to the host too. */
const ECHO_VM: SampleVm = { subscription: 's1', service: 'udp', vm: 'u1', dip: '10.1.0.7' };
const VIPS: Record<string, string> = { ...SAMPLE_VIPS, udp: '198.18.0.12' };

function builtin(v: SampleVm, image = 'whoami'): DesiredWorkload {
  const ports =
    image === 'echo'
      ? { VIPDIP_PORT_U: '7007', VIPDIP_PROTOCOL_U: 'udp' }
      : { VIPDIP_PORT_HTTP: String(BACKEND_PORT) };
  const env = {
    VIPDIP_SUBSCRIPTION: v.subscription,
    VIPDIP_SERVICE: v.service,
    VIPDIP_VM: v.vm,
    VIPDIP_DIP: v.dip,
    VIPDIP_VIP: VIPS[v.service]!,
    ...ports,
  };
  return {
    key: `${v.service}/${v.vm}`,
    subscription: v.subscription,
    service: v.service,
    vm: v.vm,
    dip: v.dip,
    workload: image,
    launch: { kind: 'builtin', image: image as 'whoami' },
    env,
    fingerprint: JSON.stringify(env),
  };
}

/** `curl` from the internet namespace: the answering VM's name, or the failure. */
function curlVip(ns: string, vip: string): string {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'curl', '-s', '-m', '3', `http://${vip}:${VIP_PORT}/`], {
    encoding: 'utf8',
  });
  if (r.status !== 0) return `curl exit ${r.status}`;
  return (JSON.parse(r.stdout) as { vm: string }).vm;
}

/** Sends one datagram and prints the answer (or exits 1 after two seconds). */
const UDP_ASK = `const s = require('node:dgram').createSocket('udp4');
s.on('message', (m) => { process.stdout.write(m.toString()); process.exit(0); });
s.send('hello u1', Number(process.argv[2]), process.argv[1]);
setTimeout(() => process.exit(1), 2000);`;

const uids = (pid: number): number[] =>
  readFileSync(`/proc/${pid}/status`, 'utf8')
    .split('\n')
    .find((l) => l.startsWith('Uid:'))!
    .split(/\s+/)
    .slice(1)
    .map(Number);

test('built-ins in VM namespaces share one host, each VM served on its own DIP inside its namespace', async (t) => {
  if (!requireNetns(t)) return;
  const prefix = testPrefix('h');
  t.after(() => removeWorld(prefix));
  const driver = new NetnsDriver({ prefix });
  t.after(() => driver.close());
  const vms = [...SAMPLE_VMS, ECHO_VM];
  assert.deepEqual((await driver.reconcile(sampleDesired(vms, () => true, VIPS))).failed, []);

  const sup = new WorkloadSupervisor({
    command: (w) => driver.wrapWorkload(w, workloadCommand(w.launch, VIPDIP_BIN)),
    sharedHost: sharedHostCommand(VIPDIP_BIN),
  });
  t.after(() => sup.close());
  const desired = [...SAMPLE_VMS.map((v) => builtin(v)), builtin(ECHO_VM, 'echo')];
  const keys = new Set(desired.map((d) => d.key));
  await sup.reconcile(desired, keys);
  const running = () => sup.reports().every((r) => r.status === 'running');
  await eventually('every workload running', running);

  // One host for the VMs of a subscription started together; none serves two subscriptions.
  const pidOf = (key: string) => sup.status(key)!.pid!;
  const pid = pidOf('web/web1');
  for (const key of ['web/web2', 'app/app1', 'udp/u1']) assert.equal(pidOf(key), pid, key);
  const blogPid = pidOf('blog/blog1');
  assert.notEqual(blogPid, pid, "s2's VM is not in s1's host");
  const user = await ensureSandboxUser();
  assert.deepEqual(uids(pid), [user.uid, user.uid, user.uid, user.uid], 'the host runs as the sandbox user');
  assert.match(readFileSync(`/proc/${pid}/status`, 'utf8'), /^CapEff:\s+0+$/m, 'with no capability');
  // Each VM's share of open files, set while still root (up to the hard limit root may raise to).
  const nofile = readFileSync(`/proc/${pid}/limits`, 'utf8').match(/^Max open files\s+(\d+)\s+(\d+)/m)!;
  const want = Math.min(4 * DEFAULT_SANDBOX_LIMITS.openFiles, hardOpenFiles());
  assert.deepEqual([Number(nofile[1]), Number(nofile[2])], [want, want]);

  // Each VM's socket is in its own namespace, on its DIP (TCP for whoami, UDP for echo); none in the
  // root namespace.
  for (const v of SAMPLE_VMS) {
    const ss = spawnSync(
      'ip',
      ['netns', 'exec', vmNamespace(prefix, `${v.service}/${v.vm}`), 'ss', '-Htln'],
      {
        encoding: 'utf8',
      },
    );
    assert.match(ss.stdout, new RegExp(`${v.dip.replaceAll('.', '\\.')}:${BACKEND_PORT}\\b`), v.vm);
  }
  const echoNs = vmNamespace(prefix, 'udp/u1');
  const udp = spawnSync('ip', ['netns', 'exec', echoNs, 'ss', '-Huln'], { encoding: 'utf8' }).stdout;
  assert.match(udp, /10\.1\.0\.7:7007\b/);
  const root = spawnSync('ss', ['-Htulnp'], { encoding: 'utf8' }).stdout;
  assert.ok(!root.includes(`pid=${pid},`), `the host listens on nothing in the root namespace:\n${root}`);
  // The datagram socket works from where the VM's neighbours are: its subscription's router.
  const asked = spawnSync(
    'ip',
    ['netns', 'exec', routerNamespace(prefix, 's1'), process.execPath, '-e', UDP_ASK, '10.1.0.7', '7007'],
    { encoding: 'utf8', timeout: 10_000 },
  );
  assert.equal(asked.stdout, 'hello u1', asked.stderr);

  // Through the kernel path: every VIP answers with a VM behind it.
  const inet = driver.names.internet;
  assert.match(curlVip(inet, SAMPLE_VIPS.web!), /^web[12]$/);
  assert.equal(curlVip(inet, SAMPLE_VIPS.blog!), 'blog1');
  assert.equal(curlVip(inet, SAMPLE_VIPS.app!), 'app1');

  // A crash of one VM's workload: that VM is restarted (in a host of its own), the others on its
  // host never stop.
  assert.equal(sup.crash('web/web1'), true);
  await eventually('web1 restarted', () => {
    const r = sup.status('web/web1')!;
    return r.status === 'running' && r.restarts === 1 && r.pid !== pid;
  });
  for (const [key, host] of [
    ['web/web2', pid],
    ['app/app1', pid],
    ['udp/u1', pid],
    ['blog/blog1', blogPid],
  ] as const) {
    const r = sup.status(key)!;
    assert.deepEqual([r.status, r.pid, r.restarts], ['running', host, 0], key);
  }
  assert.match(
    sup
      .status('web/web1')!
      .lines.map((l) => l.text)
      .join('\n'),
    /exited with SIGKILL/,
  );
  assert.match(curlVip(inet, SAMPLE_VIPS.web!), /^web[12]$/);

  // Every VM stopped: no host left.
  const web1Pid = pidOf('web/web1');
  await sup.reconcile([], keys);
  assert.ok(sup.reports().every((r) => r.status === 'stopped'));
  await eventually('the hosts are gone', () =>
    [pid, blogPid, web1Pid].every((p) => !existsSync(`/proc/${p}`)),
  );
});
