/**
 * The netns driver on the real kernel (root only): a world of two subscriptions with real backends
 * in their VM namespaces, clients in the internet namespace and in VMs. Every namespace it makes
 * carries this test's prefix and is deleted when the test ends, pass or fail. Addresses: 10.1/16,
 * 10.2/16 and 198.18.0.0/15, inside those namespaces only.
 */
import { inNamespace } from '../../src/agent/sandbox.ts';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { parseIpv4 } from '../../src/core/index.ts';
import { NetnsDriver } from '../../src/dataplane/index.ts';
import {
  bridgeMac,
  bridgeName,
  removeWorld,
  routerNamespace,
  vmNamespace,
  namespacesWithPrefix,
} from '../../src/dataplane/netns/world.ts';
import { PickerSnapshot } from '../../src/lb/index.ts';
import {
  BACKEND_PORT,
  SAMPLE_VIPS,
  SAMPLE_VMS,
  VIP_PORT,
  clientIn,
  ip,
  requireNetns,
  sampleDesired,
  testPrefix,
} from '../support/netns.ts';

const CLIENT = '198.18.255.2';

/** Starts the sample's backends inside their VMs, through the driver's workload wrapper. */
async function startBackends(t: TestContext, driver: NetnsDriver, vms = SAMPLE_VMS): Promise<void> {
  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  });
  await Promise.all(
    vms.map(async (v) => {
      const wrapped = driver.wrapWorkload(v, {
        command: process.execPath,
        args: ['test/fixtures/netns-backend.mjs', v.vm, v.dip, String(BACKEND_PORT)],
      });
      assert.ok(wrapped.netns !== undefined, 'a netns workload names its VM namespace');
      // As the sandbox launches it, minus the user change (these backends are the test's own).
      const cmd = inNamespace(wrapped.netns, wrapped, undefined);
      const c = spawn(cmd.command, cmd.args, { stdio: ['ignore', 'pipe', 'inherit'] });
      children.push(c);
      await new Promise<void>((resolve, reject) => {
        createInterface({ input: c.stdout }).once('line', () => resolve());
        c.once('exit', (code) => reject(new Error(`backend ${v.vm} exited with ${code}`)));
      });
    }),
  );
}

test('the netns driver on the kernel', async (t) => {
  if (!requireNetns(t)) return;
  const prefix = testPrefix('d');
  t.after(async () => {
    await removeWorld(prefix);
  });
  const driver = new NetnsDriver({ prefix });
  t.after(() => driver.close());
  const r = await driver.reconcile(sampleDesired());
  assert.deepEqual(r.failed, []);
  await startBackends(t, driver);
  const ns = (service: string, vm: string) => vmNamespace(prefix, `${service}/${vm}`);

  await t.test('a VIP answers from the internet, and the backend sees the client address', () => {
    const answers = clientIn(driver.names.internet, [
      `${SAMPLE_VIPS.web} ${VIP_PORT}`,
      `${SAMPLE_VIPS.blog} ${VIP_PORT}`,
    ]);
    assert.match(answers[0]!, new RegExp(`^web[12] ${CLIENT}$`));
    assert.equal(answers[1], `blog1 ${CLIENT}`);
  });

  await t.test('Maglev agreement: 400 tuples reach the backend the local driver picker chooses', () => {
    const picker = PickerSnapshot.build({
      mode: 'fiveTuple',
      backends: SAMPLE_VMS.filter((v) => v.service === 'web').map((v) => ({
        id: `${v.subscription}/${v.service}/${v.vm}`,
        address: parseIpv4(v.dip),
        port: BACKEND_PORT,
        healthy: true,
      })),
    });
    // Source ports below the kernel's ephemeral range (32768–60999): a port that an earlier test's
    // connection to the same VIP left in TIME_WAIT could not be bound to it again (a CI flake).
    const ports = Array.from({ length: 400 }, (_, i) => 1024 + i * 79);
    const answers = clientIn(
      driver.names.internet,
      ports.map((p) => `${SAMPLE_VIPS.web} ${VIP_PORT} ${p}`),
    );
    const byVm = new Map<string, number>();
    ports.forEach((p, i) => {
      const want = picker.pickTuple(parseIpv4(CLIENT), p, parseIpv4(SAMPLE_VIPS.web!), VIP_PORT, 6)!;
      const got = answers[i]!.split(' ')[0]!;
      assert.equal(got, want.id.split('/')[2], `source port ${p}: ${answers[i]}`);
      byVm.set(got, (byVm.get(got) ?? 0) + 1);
    });
    assert.equal(byVm.size, 2, 'both backends take flows');
  });

  await t.test('a UDP VIP carries datagrams both ways, to the backend the local picker chooses', async () => {
    const base = sampleDesired();
    const web = base.endpoints.find((e) => e.service === 'web')!;
    const udp = {
      ...web,
      key: `udp/${web.address}:53`,
      protocol: 'udp' as const,
      port: 53,
      distribution: 'sourceIP' as const,
    };
    await driver.reconcile({ ...base, endpoints: [...base.endpoints, udp] });
    const picker = PickerSnapshot.build({
      mode: 'sourceIP',
      backends: web.backends.map((b) => ({
        id: b.id,
        address: parseIpv4(b.dip),
        port: b.port,
        healthy: true,
      })),
    });
    const want = picker.pickTuple(parseIpv4(CLIENT), 0, parseIpv4(web.address), 53, 17)!.id.split('/')[2];
    const answers = clientIn(driver.names.internet, ['udp 198.18.0.10 53', 'udp 198.18.0.10 53']);
    assert.deepEqual(answers, [`${want} ${CLIENT}`, `${want} ${CLIENT}`]);
    await driver.reconcile(base);
  });

  await t.test('R6: a VM calling another service VIP is seen with its own service VIP as source', () => {
    const answers = clientIn(ns('app', 'app1'), [
      `${SAMPLE_VIPS.web} ${VIP_PORT}`,
      `${SAMPLE_VIPS.blog} ${VIP_PORT}`,
    ]);
    assert.match(answers[0]!, new RegExp(`^web[12] ${SAMPLE_VIPS.app!.replace(/\./g, '\\.')}$`));
    assert.equal(answers[1], `blog1 ${SAMPLE_VIPS.app}`);
  });

  await t.test(
    'isolation: another subscription DIPs are unreachable, its VIPs are not; the root namespace is out of reach',
    () => {
      // Within a subscription a DIP is reachable (the control case: the check below can fail).
      const same = clientIn(ns('app', 'app1'), [`10.1.0.4 ${BACKEND_PORT}`]);
      assert.equal(same[0], 'web1 10.1.0.6');
      const cross = clientIn(ns('app', 'app1'), [`10.2.0.4 ${BACKEND_PORT}`]);
      assert.match(cross[0]!, /^error /);
      const back = clientIn(ns('blog', 'blog1'), [
        `10.1.0.4 ${BACKEND_PORT}`,
        `${SAMPLE_VIPS.web} ${VIP_PORT}`,
      ]);
      assert.match(back[0]!, /^error /);
      assert.match(back[1]!, /^web[12] 198\.18\.0\.20$/);
      // The host's own addresses (read, not changed) cannot be reached from a VM: the world has no uplink.
      const host = spawnSync('ip', ['-4', '-o', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' })
        .stdout.split('\n')
        .map((l) => /inet (\d+\.\d+\.\d+\.\d+)\//.exec(l)?.[1])
        .filter((a): a is string => a !== undefined);
      for (const a of host) assert.match(clientIn(ns('app', 'app1'), [`${a} 22`])[0]!, /^error /, a);
    },
  );

  await t.test('a failing backend leaves the map in one update that rewrites only its slots', async () => {
    await driver.reconcile(sampleDesired(SAMPLE_VMS, (vm) => vm !== 'web2'));
    const written = driver.lastUpdate.elements;
    // Two web backends: a 1,021-slot table (lb/'s ladder), of which web2 held about half.
    assert.ok(written > 460 && written < 560, `wrote ${written} slots`);
    const answers = clientIn(
      driver.names.internet,
      Array.from({ length: 40 }, (_, i) => `${SAMPLE_VIPS.web} ${VIP_PORT} ${30001 + i * 13}`),
    );
    for (const a of answers) assert.equal(a, `web1 ${CLIENT}`);
    await driver.reconcile(sampleDesired());
  });

  await t.test(
    'an open flow stays on its backend when a reconcile takes that backend out (conntrack)',
    async () => {
      const hold = spawn(
        'ip',
        [
          'netns',
          'exec',
          driver.names.internet,
          process.execPath,
          'test/fixtures/netns-hold.mjs',
          SAMPLE_VIPS.web!,
          String(VIP_PORT),
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      t.after(() => {
        if (hold.exitCode === null) hold.kill('SIGKILL');
      });
      const lines = createInterface({ input: hold.stdout })[Symbol.asyncIterator]();
      const next = async () => String((await lines.next()).value);
      const first = await next();
      const vm = first.split(' ')[0]!;
      assert.match(vm, /^web[12]$/);
      await driver.reconcile(sampleDesired(SAMPLE_VMS, (v) => v !== vm));
      hold.stdin.write('still here\n');
      assert.equal(await next(), 'still here');
      const fresh = clientIn(
        driver.names.internet,
        Array.from({ length: 10 }, (_, i) => `${SAMPLE_VIPS.web} ${VIP_PORT} ${41001 + i * 7}`),
      );
      for (const a of fresh) assert.notEqual(a.split(' ')[0], vm);
      hold.stdin.end();
      await driver.reconcile(sampleDesired());
    },
  );

  await t.test(
    'idle timeouts are conntrack timeouts: a flow entry lasts the endpoint idle time, and an idle flow past it is forgotten',
    async () => {
      const IDLE_MS = 2000;
      const withIdle = (healthy: (vm: string) => boolean) => {
        const d = sampleDesired(SAMPLE_VMS, healthy);
        return {
          ...d,
          endpoints: d.endpoints.map((e) => (e.service === 'web' ? { ...e, idleMs: IDLE_MS } : e)),
        };
      };
      await driver.reconcile(withIdle(() => true));
      const hold = spawn(
        'ip',
        [
          'netns',
          'exec',
          driver.names.internet,
          process.execPath,
          'test/fixtures/netns-hold.mjs',
          SAMPLE_VIPS.web!,
          String(VIP_PORT),
        ],
        { stdio: ['pipe', 'pipe', 'inherit'] },
      );
      t.after(() => {
        if (hold.exitCode === null) hold.kill('SIGKILL');
      });
      const lines = createInterface({ input: hold.stdout })[Symbol.asyncIterator]();
      const next = async () => String((await lines.next()).value);
      const vm = (await next()).split(' ')[0]!;
      assert.match(vm, /^web[12]$/);
      // The conntrack entry of this flow in its subscription's router: its timeout is the idle time
      // (conntrack's default is 5 days).
      const table = spawnSync(
        'ip',
        ['netns', 'exec', driver.router('s1')!.ns, 'cat', '/proc/net/nf_conntrack'],
        {
          encoding: 'utf8',
        },
      ).stdout;
      const entry = table
        .split('\n')
        .find((l) => l.includes(`dst=${SAMPLE_VIPS.web} `) && l.includes('ESTABLISHED'));
      assert.ok(entry !== undefined, table);
      const timeout = Number(entry.trim().split(/\s+/)[4]);
      assert.ok(timeout >= 0 && timeout <= IDLE_MS / 1000, entry);
      // Its backend leaves rotation while the flow is idle past its timeout: the entry (and its DNAT)
      // is gone, the next segment is balanced afresh to the other backend, which knows no such
      // connection and resets it. (Within the idle time the flow would stay: the conntrack test above.)
      await driver.reconcile(withIdle((v) => v !== vm));
      await new Promise((res) => setTimeout(res, IDLE_MS + 1500));
      hold.stdin.write('still here\n');
      assert.match(await next(), /^error /);
      await driver.reconcile(sampleDesired());
    },
  );

  await t.test(
    'an allow-list ACL is enforced before DNAT: others are refused at once, the listed subnet gets through',
    async () => {
      const base = sampleDesired();
      const acl = [{ order: 1, action: 'permit' as const, remoteSubnet: '10.1.0.0/24' }];
      await driver.reconcile({
        ...base,
        endpoints: base.endpoints.map((e) => (e.service === 'web' ? { ...e, acl } : e)),
      });
      // A reset answering the SYN: refused at once (local accepts, then resets), never a timeout.
      assert.equal(
        clientIn(driver.names.internet, [`${SAMPLE_VIPS.web} ${VIP_PORT}`])[0],
        'error ECONNREFUSED',
      );
      assert.match(clientIn(ns('app', 'app1'), [`${SAMPLE_VIPS.web} ${VIP_PORT}`])[0]!, /^web[12] /);
      assert.equal(
        clientIn(driver.names.internet, [`${SAMPLE_VIPS.blog} ${VIP_PORT}`])[0],
        `blog1 ${CLIENT}`,
      );
      await driver.reconcile(base);
      assert.match(clientIn(driver.names.internet, [`${SAMPLE_VIPS.web} ${VIP_PORT}`])[0]!, /^web[12] /);
    },
  );

  await t.test(
    'a VIP inside the router links is refused with the reason, and the other VIPs go on answering',
    async () => {
      const base = sampleDesired();
      const web = base.endpoints.find((e) => e.service === 'web')!;
      const bad = { ...web, key: 'tcp/100.127.0.9:80', address: '100.127.0.9' };
      const r = await driver.reconcile({ ...base, endpoints: [...base.endpoints, bad] });
      const failed = r.failed.find((f) => f.key === bad.key);
      assert.ok(failed !== undefined, JSON.stringify(r.failed));
      assert.match(failed.error, /inside 100\.127\.0\.0\/16/);
      assert.equal(r.failed.length, 1, JSON.stringify(r.failed));
      // Status says so too, and still counts the others as answered.
      const listeners = driver.status().listeners;
      const shown = listeners.find((l) => l.key === bad.key);
      assert.equal(shown?.state, 'failed');
      assert.match(shown?.error ?? '', /inside 100\.127\.0\.0\/16/);
      assert.ok(
        listeners.filter((l) => l.key !== bad.key).every((l) => l.state === 'listening'),
        JSON.stringify(listeners),
      );
      // No router holds the address, and the core has no route to it but the link's own.
      assert.doesNotMatch(ip('-n', driver.router('s1')!.ns, 'addr', 'show', 'dev', 'lo'), /100\.127\.0\.9/);
      assert.equal(
        clientIn(driver.names.internet, [`${SAMPLE_VIPS.blog} ${VIP_PORT}`])[0],
        `blog1 ${CLIENT}`,
      );
      await driver.reconcile(base);
      assert.ok(driver.status().listeners.every((l) => l.state === 'listening'));
    },
  );

  await t.test(
    "a VNet's bridge keeps its own MAC while VMs join, so the others' entries for their gateway stay right",
    async () => {
      const base = sampleDesired();
      const router = driver.router('s1')!.ns;
      const mac = () =>
        /link\/ether ([0-9a-f:]+)/.exec(ip('-n', router, 'link', 'show', 'dev', bridgeName('s1/net')))![1];
      assert.equal(mac(), bridgeMac('s1/net'));
      // Twelve veths with random MACs: a bridge left to itself would take the lowest of them.
      const s1 = base.vms!.find((v) => v.subscription === 's1')!;
      const spare = Array.from({ length: 12 }, (_, i) => ({
        ...s1,
        key: `s1/spare/spare${i}`,
        service: 'spare',
        vm: `spare${i}`,
        dip: `10.1.0.${100 + i}`,
      }));
      const r = await driver.reconcile({ ...base, vms: [...base.vms!, ...spare] });
      assert.deepEqual(r.failed, []);
      assert.equal(mac(), bridgeMac('s1/net'));
      // The backends' replies go through their gateway, whose MAC they learnt before the VMs joined.
      const answers = clientIn(
        driver.names.internet,
        Array.from({ length: 6 }, () => `${SAMPLE_VIPS.web} ${VIP_PORT}`),
      );
      for (const a of answers) assert.match(a, /^web[12] /);
      await driver.reconcile(base);
    },
  );

  await t.test(
    'with no healthy backend a VIP refuses new connections at once, as the local driver does',
    async () => {
      await driver.reconcile(sampleDesired(SAMPLE_VMS, (vm) => !vm.startsWith('web')));
      assert.equal(
        clientIn(driver.names.internet, [`${SAMPLE_VIPS.web} ${VIP_PORT}`])[0],
        'error ECONNREFUSED',
      );
      assert.equal(
        clientIn(driver.names.internet, [`${SAMPLE_VIPS.blog} ${VIP_PORT}`])[0],
        `blog1 ${CLIENT}`,
      );
      await driver.reconcile(sampleDesired());
      assert.match(clientIn(driver.names.internet, [`${SAMPLE_VIPS.web} ${VIP_PORT}`])[0]!, /^web[12] /);
    },
  );

  await t.test('a DIP change is a real address change of the VM', async () => {
    const moved = SAMPLE_VMS.map((v) => (v.vm === 'web2' ? { ...v, dip: '10.1.0.9' } : v));
    await driver.reconcile(sampleDesired(moved));
    // Its slots hold its tag, not its address: one backend element changes, no slot.
    assert.equal(driver.lastUpdate.elements, 2, 'the backend element of web and its R6 source entry');
    const addrs = spawnSync('ip', ['-n', ns('web', 'web2'), '-4', '-o', 'addr', 'show', 'dev', 'eth0'], {
      encoding: 'utf8',
    }).stdout;
    assert.match(addrs, /10\.1\.0\.9\/24/);
    assert.doesNotMatch(addrs, /10\.1\.0\.5\//);
    await driver.reconcile(sampleDesired());
  });

  await t.test(
    'changes asked while a reconcile runs coalesce into one more, with the latest state',
    async () => {
      const at = (dip: string) => SAMPLE_VMS.map((v) => (v.vm === 'web2' ? { ...v, dip } : v));
      const runs0 = driver.reconcileStats.runs;
      const results = await Promise.all([
        driver.reconcile(sampleDesired(at('10.1.0.9'))),
        driver.reconcile(sampleDesired(at('10.1.0.10'))),
        driver.reconcile(sampleDesired(at('10.1.0.11'))),
        driver.reconcile(sampleDesired()),
      ]);
      for (const r of results) assert.deepEqual(r.failed, []);
      const runs = driver.reconcileStats.runs - runs0;
      assert.ok(runs >= 1 && runs <= 2, `4 calls, ${runs} reconciles: the middle ones are superseded`);
      // The last state asked for is the one in force: web2 back on its own address, none of the others.
      const addrs = spawnSync('ip', ['-n', ns('web', 'web2'), '-4', '-o', 'addr', 'show', 'dev', 'eth0'], {
        encoding: 'utf8',
      }).stdout;
      assert.match(addrs, /10\.1\.0\.5\/24/);
      assert.doesNotMatch(addrs, /10\.1\.0\.(9|10|11)\//);
      const map = spawnSync(
        'ip',
        ['netns', 'exec', driver.router('s1')!.ns, 'nft', 'list', 'table', 'ip', 'vipdip'],
        {
          encoding: 'utf8',
        },
      ).stdout;
      assert.match(map, /10\.1\.0\.5 \. /);
      assert.doesNotMatch(map, /10\.1\.0\.(9|10|11) \. /);
    },
  );

  await t.test('close removes every namespace of the prefix, and its nft process', async () => {
    assert.ok((await namespacesWithPrefix(prefix)).length >= SAMPLE_VMS.length + 2);
    // The long-lived `nft -i` of each namespace with a ruleset: processes whose network namespace is
    // the core's or a router's.
    const inodes = new Set((await namespacesWithPrefix(prefix)).map((n) => statSync(`/run/netns/${n}`).ino));
    const nftPids = readdirSync('/proc')
      .filter((p) => /^\d+$/.test(p))
      .filter((p) => {
        try {
          return (
            inodes.has(statSync(`/proc/${p}/ns/net`).ino) &&
            readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'nft'
          );
        } catch {
          return false;
        }
      });
    const router = statSync(`/run/netns/${driver.router('s1')!.ns}`).ino;
    assert.ok(
      nftPids.some((p) => statSync(`/proc/${p}/ns/net`).ino === router),
      'an nft channel in the router',
    );
    assert.ok(driver.status().listeners.every((l) => l.state === 'listening'));
    await driver.close();
    assert.deepEqual(await namespacesWithPrefix(prefix), []);
    // Its world gone, it answers nothing, and says so.
    assert.ok(
      driver.status().listeners.every((l) => l.state === 'failed'),
      JSON.stringify(driver.status().listeners),
    );
    for (const p of nftPids)
      assert.equal(existsSync(`/proc/${p}`), false, `the channel process ${p} is gone`);
  });
});

test('after kill -9 of the process that built a world, a new driver of the same prefix converges with nothing stale', async (t) => {
  if (!requireNetns(t)) return;
  const prefix = testPrefix('c');
  t.after(async () => {
    await removeWorld(prefix);
  });
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/netns-crash-child.ts', prefix], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`child exited with ${code}`)));
  });
  const before = await namespacesWithPrefix(prefix);
  assert.ok(before.includes(vmNamespace(prefix, 'blog/blog1')), before.join(' '));
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));

  // The store now says blog1 is gone: the new run must not keep its namespace.
  const driver = new NetnsDriver({ prefix });
  t.after(() => driver.close());
  const remaining = SAMPLE_VMS.filter((v) => v.vm !== 'blog1');
  const r = await driver.reconcile(sampleDesired(remaining));
  assert.deepEqual(r.failed, []);
  const after = (await namespacesWithPrefix(prefix)).sort();
  // s2's router went with its last VM (blog1 was s2's only one) and its VIP.
  const want = [
    driver.names.world,
    driver.names.internet,
    routerNamespace(prefix, 's1'),
    ...remaining.map((v) => vmNamespace(prefix, `${v.service}/${v.vm}`)),
  ].sort();
  assert.deepEqual(after, want);
  for (const ns of [driver.names.world, routerNamespace(prefix, 's1')]) {
    const rules = spawnSync('ip', ['netns', 'exec', ns, 'nft', 'list', 'tables'], {
      encoding: 'utf8',
    }).stdout;
    assert.equal(rules.trim(), 'table ip vipdip');
  }
  const dnat = spawnSync(
    'ip',
    ['netns', 'exec', routerNamespace(prefix, 's1'), 'nft', 'list', 'table', 'ip', 'vipdip'],
    {
      encoding: 'utf8',
    },
  ).stdout;
  assert.doesNotMatch(dnat, /198\.18\.0\.20/);
  await startBackends(t, driver, remaining);
  const answers = clientIn(driver.names.internet, [
    `${SAMPLE_VIPS.web} ${VIP_PORT}`,
    `${SAMPLE_VIPS.app} ${VIP_PORT}`,
  ]);
  assert.match(answers[0]!, new RegExp(`^web[12] ${CLIENT}$`));
  assert.equal(answers[1], `app1 ${CLIENT}`);
});
