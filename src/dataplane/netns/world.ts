/**
 * The netns driver's world: one network namespace with no uplink (so no packet of it can leave the
 * machine), a bridge per VNet owning each subnet's gateway address, one namespace per VM joined to
 * its bridge by a veth (its DIP on `eth0`, a default route via the gateway), the VIPs and ILPIPs as
 * /32s on the world's `lo`, and an "internet" namespace of outside clients joined to the world by a
 * veth. Namespace names carry a prefix derived from the state directory, so two vipdip instances
 * never meet and a restart after a crash finds and removes what the last run left behind. Device
 * names live inside the world and its VM namespaces, where only this instance makes any.
 *
 * The plan (what to create, change, delete) is pure and tested; `execWorld` runs it with `ip`.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import { cidrsOverlap, formatIpv4, ipv4, parseCidr } from '../../core/index.ts';
import type { DnsScope } from '../../dns/index.ts';
import { murmur3Text } from '../../lb/index.ts';
import type { DesiredVm, DesiredVnet } from '../driver.ts';

/** The world's end of the link to the internet namespace, and the link's addresses. */
export const INTERNET_IF = 'inet0';
export const INTERNET_WORLD_ADDR = '198.18.255.1/30';
export const INTERNET_CLIENT_ADDR = '198.18.255.2/30';
export const INTERNET_GATEWAY = '198.18.255.1';

const hash = (text: string, chars: number) => murmur3Text(text).toString(36).padStart(7, '0').slice(0, chars);

/** `vd` + 6 characters of the state directory's hash: every namespace name of one instance starts with it. */
export const worldPrefix = (stateDir: string): string => `vd${hash(stateDir, 6)}`;

/**
 * The prefix of a standalone agent's world (`vipdip agent --driver netns`), which has no state
 * directory of its own: named after its identity, the control plane it follows and its name. A
 * restart of the same agent finds and removes what a killed one left, two agents (or an agent and a
 * `vipdip up`) never meet, and `vipdip client --agent NAME --control URL` finds it. The URL is
 * compared as its origin and path, so `http://LOCALHOST:80/` and `http://localhost` are one.
 */
export const agentWorldPrefix = (controlUrl: string, agent: string): string => {
  const u = new URL(controlUrl);
  return worldPrefix(`agent ${u.origin}${u.pathname.replace(/\/+$/, '')} ${agent}`);
};

export interface WorldNames {
  readonly prefix: string;
  readonly world: string;
  readonly internet: string;
}

export const worldNames = (prefix: string): WorldNames => ({
  prefix,
  world: `${prefix}-world`,
  internet: `${prefix}-inet`,
});

/**
 * A VM's namespace: the prefix and a hash of `service/vm` (service names are unique in a cloud), with
 * the VM's name for people reading `ip netns`.
 */
export const vmNamespace = (prefix: string, serviceVm: string): string =>
  `${prefix}-${hash(serviceVm, 7)}-${(serviceVm.split('/')[1] ?? '').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 40)}`;

/** A VNet's bridge (inside the world; IFNAMSIZ allows 15 characters). */
export const bridgeName = (vnetKey: string): string => `br${hash(vnetKey, 7)}`;
/** The world's end of a VM's veth, from `service/vm`. */
export const vethName = (serviceVm: string): string => `v${hash(serviceVm, 7)}`;

export interface WorldVm {
  readonly key: string;
  readonly ns: string;
  readonly veth: string;
  readonly bridge: string;
  /** `10.1.0.4/24`. */
  readonly address: string;
  readonly gateway: string;
}

export interface WorldVnet {
  readonly key: string;
  readonly subscription: string;
  readonly bridge: string;
  /** Gateway addresses with their prefix: `10.1.0.1/24`. */
  readonly gateways: readonly string[];
}

/** The world as data. */
export interface WorldSpec {
  readonly vnets: ReadonlyMap<string, WorldVnet>;
  readonly vms: ReadonlyMap<string, WorldVm>;
  /** VIPs and ILPIPs, held as /32s on the world's `lo`. */
  readonly publicAddresses: ReadonlySet<string>;
}

/**
 * The VNets the one routing table of the world can hold: a VNet whose subnet overlaps one of a VNet
 * taken before it (in key order), or the internet link, is left out with the reason, and so are its
 * VMs. Overlapping address spaces of two subscriptions would need a routing table each (VRFs).
 */
export function routableVnets(
  vms: readonly DesiredVm[],
  vnets: readonly DesiredVnet[],
): { vms: DesiredVm[]; vnets: DesiredVnet[]; refused: { key: string; error: string }[] } {
  const taken: { cidr: string; vnet: string }[] = [{ cidr: '198.18.255.0/30', vnet: 'the internet link' }];
  const ok: DesiredVnet[] = [];
  const refused: { key: string; error: string }[] = [];
  for (const v of [...vnets].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    const clash = v.subnets
      .flatMap((c) =>
        taken.filter((t) => cidrsOverlap(parseCidr(c), parseCidr(t.cidr))).map((t) => [c, t] as const),
      )
      .at(0);
    if (clash !== undefined) {
      refused.push({
        key: `vnet/${v.key}`,
        error: `virtual network ${v.key}: subnet ${clash[0]} overlaps ${clash[1].cidr} of ${clash[1].vnet}; the netns world has one routing table, so its VMs are left out`,
      });
      continue;
    }
    ok.push(v);
    for (const c of v.subnets) taken.push({ cidr: c, vnet: v.key });
  }
  const keep = new Set(ok.map((v) => v.key));
  return { vms: vms.filter((vm) => keep.has(vm.vnet)), vnets: ok, refused };
}

const gatewayOf = (cidr: string) => {
  const c = parseCidr(cidr);
  return { gateway: formatIpv4(ipv4(c.base + 1)), prefix: c.prefix };
};

/** Desired VMs and VNets → the world they need. Pure. */
export function worldSpec(
  prefix: string,
  vms: readonly DesiredVm[],
  vnets: readonly DesiredVnet[],
  publicAddresses: Iterable<string>,
): WorldSpec {
  const vn = new Map<string, WorldVnet>();
  for (const v of vnets) {
    vn.set(v.key, {
      key: v.key,
      subscription: v.subscription,
      bridge: bridgeName(v.key),
      gateways: v.subnets.map((c) => {
        const g = gatewayOf(c);
        return `${g.gateway}/${g.prefix}`;
      }),
    });
  }
  const out = new Map<string, WorldVm>();
  for (const vm of vms) {
    const g = gatewayOf(vm.cidr);
    out.set(vm.key, {
      key: vm.key,
      ns: vmNamespace(prefix, `${vm.service}/${vm.vm}`),
      veth: vethName(`${vm.service}/${vm.vm}`),
      bridge: bridgeName(vm.vnet),
      address: `${vm.dip}/${g.prefix}`,
      gateway: g.gateway,
    });
  }
  return { vnets: vn, vms: out, publicAddresses: new Set(publicAddresses) };
}

/**
 * Who asks through each DNS listener of the world, by the listener's identity (its world address):
 * a VNet's gateways answer for that VNet, the internet link's end for the internet. A query is only
 * ever relayed with the scope of the listener it arrived on; the world's input rules (render.ts)
 * keep a VM from reaching another VNet's gateway, so the address it asked is where it sits.
 */
export function dnsListeners(world: WorldSpec): Map<string, DnsScope> {
  const out = new Map<string, DnsScope>([[INTERNET_GATEWAY, { kind: 'internet' }]]);
  for (const v of world.vnets.values())
    for (const g of v.gateways) out.set(g.split('/')[0]!, { kind: 'vnet', vnet: v.key });
  return out;
}

export const EMPTY_WORLD: WorldSpec = { vnets: new Map(), vms: new Map(), publicAddresses: new Set() };

/** What one reconcile of the world does, in order. */
export interface WorldPlan {
  /** Namespaces of VMs that are gone, deleted after their veths. */
  readonly deleteNamespaces: string[];
  /** Namespaces to create. */
  readonly addNamespaces: string[];
  /** `ip -batch` lines run in the world. */
  readonly world: string[];
  /** `ip -batch` lines run in each VM namespace. */
  readonly vms: Map<string, string[]>;
  /** VMs whose address changed: their workloads restart on the new one. */
  readonly readdressed: string[];
}

/** From the world as it is (`prev`) to `next`. Pure. */
export function planWorld(prev: WorldSpec, next: WorldSpec): WorldPlan {
  const plan: WorldPlan = {
    deleteNamespaces: [],
    addNamespaces: [],
    world: [],
    vms: new Map(),
    readdressed: [],
  };
  for (const [key, v] of next.vnets) {
    const old = prev.vnets.get(key);
    if (old === undefined) {
      plan.world.push(
        `link add ${v.bridge} type bridge`,
        `link set ${v.bridge} addrgenmode none`,
        `link set ${v.bridge} up`,
      );
    }
    for (const g of v.gateways)
      if (!old?.gateways.includes(g)) plan.world.push(`addr add ${g} dev ${v.bridge}`);
    for (const g of old?.gateways ?? [])
      if (!v.gateways.includes(g)) plan.world.push(`addr del ${g} dev ${v.bridge}`);
  }
  for (const [key, vm] of prev.vms) {
    const n = next.vms.get(key);
    if (n === undefined) {
      // The world's end first: deleting it takes the pair down at once, whereas a namespace is torn
      // down by the kernel later, and a VM coming back would find its veth's name still taken.
      plan.world.push(`link del ${vm.veth}`);
      plan.deleteNamespaces.push(vm.ns);
    }
  }
  for (const [key, vm] of next.vms) {
    const old = prev.vms.get(key);
    if (old === undefined) {
      plan.addNamespaces.push(vm.ns);
      plan.world.push(
        `link add ${vm.veth} type veth peer name eth0 netns ${vm.ns}`,
        `link set ${vm.veth} master ${vm.bridge}`,
        `link set ${vm.veth} addrgenmode none`,
        `link set ${vm.veth} up`,
      );
      plan.vms.set(vm.ns, [
        'link set lo up',
        // No IPv6 link-local address (the world is IPv4): no DAD and no MLD reports per VM link.
        'link set eth0 addrgenmode none',
        'link set eth0 up',
        `addr add ${vm.address} dev eth0`,
        `route add default via ${vm.gateway}`,
      ]);
    } else if (old.address !== vm.address || old.gateway !== vm.gateway || old.bridge !== vm.bridge) {
      // Moved to another VNet: the same namespace, its veth into the other bridge.
      if (old.bridge !== vm.bridge) plan.world.push(`link set ${vm.veth} master ${vm.bridge}`);
      // A DIP change is a real address change: the old address leaves the interface.
      plan.vms.set(vm.ns, [
        'addr flush dev eth0',
        `addr add ${vm.address} dev eth0`,
        `route replace default via ${vm.gateway}`,
      ]);
      plan.readdressed.push(key);
    }
  }
  for (const [key, v] of prev.vnets) if (!next.vnets.has(key)) plan.world.push(`link del ${v.bridge}`);
  for (const a of prev.publicAddresses)
    if (!next.publicAddresses.has(a)) plan.world.push(`addr del ${a}/32 dev lo`);
  for (const a of next.publicAddresses)
    if (!prev.publicAddresses.has(a)) plan.world.push(`addr add ${a}/32 dev lo`);
  return plan;
}

// ---- execution ----------------------------------------------------------------------------------

/** Runs a command, resolving its stdout; rejects with its stderr's first line. */
export function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      if (err) {
        const why = String(stderr).trim().split('\n').slice(0, 3).join(' / ') || err.message;
        reject(new Error(`${cmd} ${args.slice(0, 4).join(' ')}: ${why}`));
      } else resolve(stdout);
    });
    // A command that reads no input may exit before taking it: that is not an error of ours.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

let nsenter: boolean | undefined;

/**
 * The command and arguments that run `argv` in network namespace `ns`. `nsenter --net` enters the
 * network namespace only; `ip -n` and `ip netns exec` also unshare the mount namespace (to remount
 * /sys and bind /etc/netns files), which copies every mount, one per namespace under /run/netns
 * included: with 1,000 VMs that made each `ip -n` cost ~15 ms instead of ~3. `ip netns exec` stays
 * for what needs its /etc/netns files (workloads, for their resolv.conf).
 */
export function inNetns(ns: string, argv: readonly string[]): [string, string[]] {
  nsenter ??= spawnSync('nsenter', ['--version'], { stdio: 'ignore' }).error === undefined;
  return nsenter ? ['nsenter', [`--net=/run/netns/${ns}`, ...argv]] : ['ip', ['netns', 'exec', ns, ...argv]];
}

/** Runs `ip -batch` lines, in namespace `ns` when given. */
export async function ipBatch(ns: string | undefined, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  const input = lines.join('\n') + '\n';
  if (ns === undefined) await run('ip', ['-batch', '-'], input);
  else await run(...inNetns(ns, ['ip', '-batch', '-']), input);
}

/** Names of the namespaces that exist and start with `prefix-`. */
export async function namespacesWithPrefix(prefix: string): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n.startsWith(`${prefix}-`));
}

/**
 * Deletes every namespace of this prefix (a previous run's leftovers, or ours on close). The
 * processes inside them go first (SIGKILL): workloads and the prober of a run killed with -9 would
 * otherwise keep an unnamed namespace alive.
 */
export async function removeWorld(prefix: string): Promise<number> {
  const names = await namespacesWithPrefix(prefix);
  if (names.length > 0) {
    // One pass over /proc instead of an `ip netns pids` process per namespace: a process is inside
    // one of ours when its /proc/PID/ns/net is the same nsfs inode as /run/netns/NAME.
    const ours = new Set<string>();
    for (const n of names) {
      const st = await stat(`/run/netns/${n}`).catch(() => undefined);
      if (st !== undefined) ours.add(`${st.dev}:${st.ino}`);
    }
    const pids = (await readdir('/proc').catch(() => [] as string[])).filter((p) => /^\d+$/.test(p));
    await Promise.all(
      pids.map(async (p) => {
        const pid = Number(p);
        if (pid <= 1 || pid === process.pid) return;
        const st = await stat(`/proc/${p}/ns/net`).catch(() => undefined);
        if (st === undefined || !ours.has(`${st.dev}:${st.ino}`)) return;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // gone already
        }
      }),
    );
  }
  await ipBatch(
    undefined,
    names.map((n) => `netns del ${n}`),
  );
  await removeEtcDirs(prefix);
  return names.length;
}

/** Where `ip netns exec NS` finds files to mount over /etc (its resolv.conf): ours to remove with NS. */
export const netnsEtcDir = (ns: string): string => `/etc/netns/${ns}`;

/** Removes the /etc/netns directories of this prefix's namespaces (resolv.conf of VMs). */
async function removeEtcDirs(prefix: string): Promise<void> {
  const names = await readdir('/etc/netns').catch(() => [] as string[]);
  await Promise.all(
    names
      .filter((n) => n.startsWith(`${prefix}-`))
      .map((n) => rm(netnsEtcDir(n), { recursive: true, force: true })),
  );
}

/** Makes the empty world and the internet namespace, linked. */
export async function createWorld(names: WorldNames): Promise<void> {
  await ipBatch(undefined, [`netns add ${names.world}`, `netns add ${names.internet}`]);
  await ipBatch(names.world, [
    'link set lo up',
    `link add ${INTERNET_IF} type veth peer name eth0 netns ${names.internet}`,
    `addr add ${INTERNET_WORLD_ADDR} dev ${INTERNET_IF}`,
    `link set ${INTERNET_IF} up`,
  ]);
  await ipBatch(names.internet, [
    'link set lo up',
    'link set eth0 up',
    `addr add ${INTERNET_CLIENT_ADDR} dev eth0`,
    `route add default via ${INTERNET_GATEWAY}`,
  ]);
  // Forwarding in the world only (a namespace's own sysctls); no ICMP redirects, which would tell a
  // VM to bypass the world for a flow the world NATs.
  await run('ip', [
    'netns',
    'exec',
    names.world,
    'sh',
    '-c',
    'echo 1 > /proc/sys/net/ipv4/ip_forward && echo 0 > /proc/sys/net/ipv4/conf/all/send_redirects && echo 0 > /proc/sys/net/ipv4/conf/default/send_redirects',
  ]);
}

/**
 * Runs a plan: new namespaces, then the world's devices, then each VM's (a few at a time), then the
 * namespaces of VMs that are gone.
 */
export async function execWorld(names: WorldNames, plan: WorldPlan): Promise<void> {
  await ipBatch(
    undefined,
    plan.addNamespaces.map((n) => `netns add ${n}`),
  );
  await ipBatch(names.world, plan.world);
  const jobs = [...plan.vms];
  const worker = async () => {
    for (let j = jobs.shift(); j !== undefined; j = jobs.shift()) await ipBatch(j[0], j[1]);
  };
  await Promise.all(Array.from({ length: 4 }, worker));
  await ipBatch(
    undefined,
    plan.deleteNamespaces.map((n) => `netns del ${n}`),
  );
}
