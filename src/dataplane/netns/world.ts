/**
 * The netns driver's world: a core namespace with no uplink (so no packet of it can leave the
 * machine) that routes public addresses only — each VIP and ILPIP to its subscription's router, the
 * internet link to an "internet" namespace of outside clients. Each subscription has a router
 * namespace of its own behind the core (a veth with a /30 of ROUTER_LINKS): a bridge per VNet owning
 * each subnet's gateway address, the VIPs and ILPIPs as /32s on its `lo`, its own nft table (DNAT,
 * SNAT, ACLs) and its own routing table, so VNets of two subscriptions may overlap. One namespace
 * per VM joins its VNet's bridge by a veth (its DIP on `eth0`, a default route via the gateway).
 * Namespace names carry a prefix derived from the state directory, so two vipdip instances never
 * meet and a restart after a crash finds and removes what the last run left behind. Device names
 * live inside namespaces of this instance, where only it makes any.
 *
 * The plan (what to create, change, delete) is pure and tested; `execWorld` runs it with `ip`.
 */
import { execFile, spawnSync } from 'node:child_process';
import { readdir, rm, stat } from 'node:fs/promises';
import {
  VipdipError,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  ipv4,
  parseCidr,
  type Cidr,
} from '../../core/index.ts';
import type { DnsScope } from '../../dns/index.ts';
import { murmur3Text } from '../../lb/index.ts';
import type { DesiredVm, DesiredVnet } from '../driver.ts';
import { helperInput, setnsSyscall, VM_LINKS_PERL, type VmLinkOp, vmLinkOps } from './vm-links.ts';

/** The world's end of the link to the internet namespace, and the link's addresses. */
export const INTERNET_IF = 'inet0';
export const INTERNET_WORLD_ADDR = '198.18.255.1/30';
export const INTERNET_CLIENT_ADDR = '198.18.255.2/30';
export const INTERNET_GATEWAY = '198.18.255.1';
/** The link's /30: no VIP or DIP may be drawn from it (checkNetnsPlan). */
export const INTERNET_LINK = '198.18.255.0/30';

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
/**
 * A VNet bridge's MAC address, fixed: locally administered, unicast, from a hash of the VNet's key.
 * A bridge whose address was never set takes the lowest MAC of its ports, so a VM joining with a
 * lower (random) veth MAC changed the gateway's MAC under every other VM of the VNet: their
 * neighbour entries kept the old one, and their packets to the gateway (a backend's replies) were
 * lost until they asked again, up to half a minute. An address set at creation is kept (the
 * kernel then never recomputes it), and the same key gives the same MAC after a rebuild.
 */
export const bridgeMac = (vnetKey: string): string => {
  const h = murmur3Text(vnetKey).toString(16).padStart(8, '0');
  const l = murmur3Text(`mac:${vnetKey}`).toString(16).padStart(8, '0').slice(0, 2);
  return `02:${h.slice(0, 2)}:${h.slice(2, 4)}:${h.slice(4, 6)}:${h.slice(6, 8)}:${l}`;
};
/** The world's end of a VM's veth, from `service/vm`. */
export const vethName = (serviceVm: string): string => `v${hash(serviceVm, 7)}`;

export interface WorldVm {
  readonly key: string;
  readonly ns: string;
  /** Its subscription's router, which holds its bridge and its veth's other end. */
  readonly router: string;
  readonly veth: string;
  readonly bridge: string;
  /** `10.1.0.4/24`. */
  readonly address: string;
  readonly gateway: string;
}

export interface WorldVnet {
  readonly key: string;
  readonly subscription: string;
  /** Its subscription's router namespace. */
  readonly router: string;
  readonly bridge: string;
  /** Gateway addresses with their prefix: `10.1.0.1/24`. */
  readonly gateways: readonly string[];
}

/**
 * A subscription's router: a namespace of its own behind the core, holding its VNets' bridges and
 * gateways, the routes to its DIPs, and its VIPs and ILPIPs (DNAT, SNAT: its own nft table). Joined
 * to the core by a veth with a /30 of ROUTER_LINKS, which exists only inside the world.
 */
export interface WorldRouter {
  readonly subscription: string;
  readonly ns: string;
  /** The core's end of the link (inside the core); the router's end is ROUTER_UPLINK. */
  readonly coreIf: string;
  /** Which /30 of ROUTER_LINKS: kept for the router's life, so its link never changes under it. */
  readonly link: number;
  readonly coreAddr: string;
  readonly routerAddr: string;
  /** Its VIPs and ILPIPs: /32s on the router's `lo`, routed to it by the core. */
  readonly publicAddresses: ReadonlySet<string>;
}

/** The world as data. */
export interface WorldSpec {
  /** By subscription. */
  readonly routers: ReadonlyMap<string, WorldRouter>;
  readonly vnets: ReadonlyMap<string, WorldVnet>;
  readonly vms: ReadonlyMap<string, WorldVm>;
}

/** The links between the core and the routers: /30s of this range, never routed outside the world. */
export const ROUTER_LINKS = '100.127.0.0/16';
/** A router's end of its link to the core. */
export const ROUTER_UPLINK = 'up0';

/** A router's namespace: `PREFIX-rt-HASH-SUBSCRIPTION` (a VM's is `PREFIX-HASH7-VM`, never with a 2-character part). */
export const routerNamespace = (prefix: string, subscription: string): string =>
  `${prefix}-rt-${hash(subscription, 7)}-${subscription.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 30)}`;
/** The core's end of a router's link. */
export const routerLinkName = (subscription: string): string => `r${hash(subscription, 7)}`;

/** Loopback: inside a namespace it never leaves the namespace, so no VM or VIP can be there. */
const LOOPBACK = '127.0.0.0/8';

/**
 * The blocks the world cannot carry a VM or a public address in, each with why: the router links and
 * the internet namespace's link (an address there would take a link's address or be routed into
 * one), and loopback (no packet leaves a namespace by it).
 */
const UNCARRIED: readonly { block: string; why: string }[] = [
  { block: ROUTER_LINKS, why: "the netns world's links between its core and its routers" },
  { block: INTERNET_LINK, why: "the netns world's link to its internet namespace" },
  { block: LOOPBACK, why: 'loopback, which never leaves a network namespace' },
];

/** The first block of UNCARRIED that `cidr` overlaps, or undefined. */
const uncarried = (cidr: Cidr) => UNCARRIED.find((u) => cidrsOverlap(cidr, parseCidr(u.block)));

/**
 * The VNets the routers can hold: each subscription has one routing table (its router), so a VNet
 * whose subnet overlaps one of a VNet of the same subscription taken before it (in key order), or a
 * block the world cannot carry (UNCARRIED), is left out with the reason, and so are its VMs. VNets of different
 * subscriptions may overlap: they live in different routers.
 */
export function routableVnets(
  vms: readonly DesiredVm[],
  vnets: readonly DesiredVnet[],
): { vms: DesiredVm[]; vnets: DesiredVnet[]; refused: { key: string; error: string }[] } {
  const taken = new Map<string, { cidr: string; vnet: string }[]>();
  const ok: DesiredVnet[] = [];
  const refused: { key: string; error: string }[] = [];
  for (const v of [...vnets].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    const outside = v.subnets
      .map((c) => [c, uncarried(parseCidr(c))] as const)
      .find(([, u]) => u !== undefined);
    if (outside !== undefined) {
      refused.push({
        key: `vnet/${v.key}`,
        error: `virtual network ${v.key}: subnet ${outside[0]} overlaps ${outside[1]!.block}, ${outside[1]!.why}: the netns driver cannot carry it, so its VMs are left out`,
      });
      continue;
    }
    let mine = taken.get(v.subscription);
    if (mine === undefined) taken.set(v.subscription, (mine = []));
    const clash = v.subnets
      .flatMap((c) =>
        mine.filter((t) => cidrsOverlap(parseCidr(c), parseCidr(t.cidr))).map((t) => [c, t] as const),
      )
      .at(0);
    if (clash !== undefined) {
      refused.push({
        key: `vnet/${v.key}`,
        error: `virtual network ${v.key}: subnet ${clash[0]} overlaps ${clash[1].cidr} of ${clash[1].vnet}; a subscription's router has one routing table, so its VMs are left out`,
      });
      continue;
    }
    ok.push(v);
    for (const c of v.subnets) mine.push({ cidr: c, vnet: v.key });
  }
  const keep = new Set(ok.map((v) => v.key));
  return { vms: vms.filter((vm) => keep.has(vm.vnet)), vnets: ok, refused };
}

/**
 * Refuses (DRIVER_UNSUPPORTED) an address block the world cannot carry: one that overlaps the
 * router links or the internet namespace's link (a VIP or DIP there would take a link's address or
 * be routed into one) or loopback (which no packet leaves a namespace by). Said when the block is
 * created, by the API or an apply, and when `vipdip up --driver netns` starts on a stored plan; the
 * reconcile's own refusals (routablePublic, routableVnets) stay for what reaches it anyway. Pure.
 */
export function checkNetnsPlan(cidr: Cidr, what: string): void {
  const u = uncarried(cidr);
  if (u !== undefined)
    throw new VipdipError(
      'DRIVER_UNSUPPORTED',
      `${what} uses ${formatCidr(cidr)}, which overlaps ${u.block}, ${u.why}: the netns driver cannot carry it; choose a block outside it`,
    );
}

/**
 * The public addresses the world can answer: a VIP or ILPIP (an endpoint's address, or the source a
 * caller's DIP is SNATed to) in a block the world cannot carry (UNCARRIED) is left out with its
 * endpoints and SNAT entries, each with the reason. Pure.
 */
export function routablePublic<
  E extends { key: string; address: string },
  S extends { dip: string; source: string },
>(
  endpoints: readonly E[],
  snat: readonly S[],
): { endpoints: E[]; snat: S[]; refused: { key: string; error: string }[] } {
  const refused: { key: string; error: string }[] = [];
  const keep = (key: string, a: string) => {
    const u = uncarried(parseCidr(`${a}/32`));
    if (u === undefined) return true;
    refused.push({ key, error: `address ${a} is inside ${u.block}, ${u.why}; use a public pool outside it` });
    return false;
  };
  return {
    endpoints: endpoints.filter((e) => keep(e.key, e.address)),
    snat: snat.filter((x) => keep(`snat/${x.dip}`, x.source)),
    refused,
  };
}

const gatewayOf = (cidr: string) => {
  const c = parseCidr(cidr);
  return { gateway: formatIpv4(ipv4(c.base + 1)), prefix: c.prefix };
};

/** A public address (VIP or ILPIP) and the subscription whose router answers it. */
export interface PublicAddress {
  readonly address: string;
  readonly subscription: string;
}

/**
 * Desired VMs and VNets → the world they need: a router per subscription that has a VNet or a public
 * address. Pure. `prev` keeps each remaining router's link.
 */
export function worldSpec(
  prefix: string,
  vms: readonly DesiredVm[],
  vnets: readonly DesiredVnet[],
  publicAddresses: Iterable<PublicAddress>,
  prev: WorldSpec = EMPTY_WORLD,
): WorldSpec {
  const addresses = new Map<string, Set<string>>();
  const owner = new Map<string, string>();
  const want = (sub: string) => {
    let a = addresses.get(sub);
    if (a === undefined) addresses.set(sub, (a = new Set()));
    return a;
  };
  for (const v of vnets) want(v.subscription);
  for (const p of publicAddresses) {
    // An address is one router's: the first subscription to name it (VIPs are unique in a cloud).
    if (owner.has(p.address)) continue;
    owner.set(p.address, p.subscription);
    want(p.subscription).add(p.address);
  }
  const routers = new Map<string, WorldRouter>();
  const used = new Set<number>();
  for (const sub of addresses.keys()) {
    const old = prev.routers.get(sub);
    if (old !== undefined) used.add(old.link);
  }
  const links = parseCidr(ROUTER_LINKS);
  let free = 0;
  for (const sub of [...addresses.keys()].sort()) {
    let link = prev.routers.get(sub)?.link;
    if (link === undefined) {
      while (used.has(free)) free++;
      link = free;
      used.add(link);
    }
    routers.set(sub, {
      subscription: sub,
      ns: routerNamespace(prefix, sub),
      coreIf: routerLinkName(sub),
      link,
      coreAddr: formatIpv4(ipv4(links.base + link * 4 + 1)),
      routerAddr: formatIpv4(ipv4(links.base + link * 4 + 2)),
      publicAddresses: addresses.get(sub)!,
    });
  }
  const vn = new Map<string, WorldVnet>();
  for (const v of vnets) {
    vn.set(v.key, {
      key: v.key,
      subscription: v.subscription,
      router: routerNamespace(prefix, v.subscription),
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
      router: routerNamespace(prefix, vm.subscription),
      veth: vethName(`${vm.service}/${vm.vm}`),
      bridge: bridgeName(vm.vnet),
      address: `${vm.dip}/${g.prefix}`,
      gateway: g.gateway,
    });
  }
  return { routers, vnets: vn, vms: out };
}

/** The router namespace whose VNets hold `address` (a DIP), the first in subscription order. */
export function routerHolding(world: WorldSpec, address: string): string | undefined {
  const a = parseCidr(`${address}/32`);
  const vnets = [...world.vnets.values()].sort((x, y) =>
    x.subscription < y.subscription ? -1 : x.subscription > y.subscription ? 1 : 0,
  );
  for (const v of vnets) for (const g of v.gateways) if (cidrsOverlap(parseCidr(g), a)) return v.router;
  return undefined;
}

/**
 * Who asks through each DNS listener, by the namespace it listens in and its address there: in the
 * core, the internet link's end answers for the internet; in a router, a VNet's gateways answer for
 * that VNet. Gateways of two subscriptions can be the same address, so the namespace is part of
 * the key: a query is only ever relayed with the scope of the listener it arrived on. The routers'
 * input rules (render.ts) keep a VM from asking another VNet's gateway of its router.
 */
export function dnsListeners(world: WorldSpec, core: string): Map<string, Map<string, DnsScope>> {
  const out = new Map<string, Map<string, DnsScope>>([
    [core, new Map<string, DnsScope>([[INTERNET_GATEWAY, { kind: 'internet' }]])],
  ]);
  for (const v of world.vnets.values()) {
    let m = out.get(v.router);
    if (m === undefined) out.set(v.router, (m = new Map<string, DnsScope>()));
    for (const g of v.gateways) m.set(g.split('/')[0]!, { kind: 'vnet', vnet: v.key });
  }
  return out;
}

export const EMPTY_WORLD: WorldSpec = { routers: new Map(), vnets: new Map(), vms: new Map() };

/** What one reconcile of the world does, in order. */
export interface WorldPlan {
  /** Namespaces of VMs, then of routers, that are gone: deleted after their veths. */
  readonly deleteNamespaces: string[];
  /** Namespaces to create (routers and VMs). */
  readonly addNamespaces: string[];
  /** New routers: their sysctls are set before their batch runs. */
  readonly newRouters: string[];
  /** `ip -batch` lines run in the core. */
  readonly core: string[];
  /** `ip -batch` lines run in each router, after the core's. */
  readonly routers: Map<string, string[]>;
  /** `ip -batch` lines run in each VM namespace, after the routers'. */
  readonly vms: Map<string, string[]>;
  /** VMs whose address changed: their workloads restart on the new one. */
  readonly readdressed: string[];
}

/** From the world as it is (`prev`) to `next`. Pure. */
export function planWorld(prev: WorldSpec, next: WorldSpec): WorldPlan {
  const plan: WorldPlan = {
    deleteNamespaces: [],
    addNamespaces: [],
    newRouters: [],
    core: [],
    routers: new Map(),
    vms: new Map(),
    readdressed: [],
  };
  const gone = new Set<string>();
  for (const [sub, r] of prev.routers) if (!next.routers.has(sub)) gone.add(r.ns);
  const lines = (ns: string): string[] => {
    let l = plan.routers.get(ns);
    if (l === undefined) plan.routers.set(ns, (l = []));
    return l;
  };
  // Routers that are gone: the core's end of the link first (it takes the pair, and every route
  // through it, down at once); their namespaces go last, after their VMs'.
  for (const r of prev.routers.values()) if (gone.has(r.ns)) plan.core.push(`link del ${r.coreIf}`);
  for (const [sub, r] of next.routers) {
    const old = prev.routers.get(sub);
    if (old === undefined) {
      plan.addNamespaces.push(r.ns);
      plan.newRouters.push(r.ns);
      plan.core.push(
        `link add ${r.coreIf} type veth peer name ${ROUTER_UPLINK} netns ${r.ns}`,
        `link set ${r.coreIf} addrgenmode none`,
        `addr add ${r.coreAddr}/30 dev ${r.coreIf}`,
        `link set ${r.coreIf} up`,
      );
      lines(r.ns).push(
        'link set lo up',
        `link set ${ROUTER_UPLINK} addrgenmode none`,
        `addr add ${r.routerAddr}/30 dev ${ROUTER_UPLINK}`,
        `link set ${ROUTER_UPLINK} up`,
        `route add default via ${r.coreAddr}`,
      );
    }
    for (const a of old?.publicAddresses ?? [])
      if (!r.publicAddresses.has(a)) {
        lines(r.ns).push(`addr del ${a}/32 dev lo`);
        plan.core.push(`route del ${a}/32`);
      }
  }
  // Public addresses that moved to another router leave the old one (whose `lo` keeps no stale copy).
  for (const [sub, r] of next.routers) {
    const old = prev.routers.get(sub);
    for (const a of r.publicAddresses)
      if (!old?.publicAddresses.has(a)) {
        lines(r.ns).push(`addr add ${a}/32 dev lo`);
        plan.core.push(`route replace ${a}/32 via ${r.routerAddr} dev ${r.coreIf}`);
      }
  }
  for (const [key, v] of next.vnets) {
    const old = prev.vnets.get(key);
    if (old === undefined) {
      lines(v.router).push(
        // Its own MAC from the start (bridgeMac): never the lowest of its ports'.
        `link add ${v.bridge} address ${bridgeMac(key)} type bridge`,
        `link set ${v.bridge} addrgenmode none`,
        `link set ${v.bridge} up`,
      );
    }
    for (const g of v.gateways)
      if (!old?.gateways.includes(g)) lines(v.router).push(`addr add ${g} dev ${v.bridge}`);
    for (const g of old?.gateways ?? [])
      if (!v.gateways.includes(g)) lines(v.router).push(`addr del ${g} dev ${v.bridge}`);
  }
  for (const [key, vm] of prev.vms) {
    const n = next.vms.get(key);
    if (n === undefined) {
      // The router's end first: deleting it takes the pair down at once, whereas a namespace is torn
      // down by the kernel later, and a VM coming back would find its veth's name still taken.
      if (!gone.has(vm.router)) lines(vm.router).push(`link del ${vm.veth}`);
      plan.deleteNamespaces.push(vm.ns);
    }
  }
  for (const [key, vm] of next.vms) {
    const old = prev.vms.get(key);
    if (old === undefined) {
      plan.addNamespaces.push(vm.ns);
      lines(vm.router).push(
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
      // Moved to another VNet (of its subscription: the same router): its veth into the other bridge.
      if (old.bridge !== vm.bridge) lines(vm.router).push(`link set ${vm.veth} master ${vm.bridge}`);
      // A DIP change is a real address change: the old address leaves the interface.
      plan.vms.set(vm.ns, [
        'addr flush dev eth0',
        `addr add ${vm.address} dev eth0`,
        `route replace default via ${vm.gateway}`,
      ]);
      plan.readdressed.push(key);
    }
  }
  for (const [key, v] of prev.vnets)
    if (!next.vnets.has(key) && !gone.has(v.router)) lines(v.router).push(`link del ${v.bridge}`);
  for (const ns of gone) {
    plan.routers.delete(ns);
    plan.deleteNamespaces.push(ns);
  }
  for (const [ns, l] of plan.routers) if (l.length === 0) plan.routers.delete(ns);
  return plan;
}

// ---- execution ----------------------------------------------------------------------------------

/** Runs a command, resolving its stdout; rejects with its stderr's first line. */
export function run(
  cmd: string,
  args: readonly string[],
  input?: string,
  /** What to call the command in an error; by default the command and its first arguments. */
  label?: string,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 1 << 26 }, (err, stdout, stderr) => {
      if (err) {
        const why = String(stderr).trim().split('\n').slice(0, 3).join(' / ') || err.message;
        reject(new Error(`${label ?? `${cmd} ${args.slice(0, 4).join(' ')}`}: ${why}`));
      } else resolve(stdout);
    });
    // A command that reads no input may exit before taking it: that is not an error of ours.
    child.stdin?.on('error', () => {});
    child.stdin?.end(input ?? '');
  });
}

const runnable = new Map<string, boolean>();
/** Whether `cmd args` runs and exits 0 here (asked once per process: `nsenter`, `perl`). */
const canRun = (cmd: string, args: readonly string[]): boolean => {
  let ok = runnable.get(cmd);
  if (ok === undefined) runnable.set(cmd, (ok = spawnSync(cmd, args, { stdio: 'ignore' }).status === 0));
  return ok;
};
const hasNsenter = () => canRun('nsenter', ['--version']);

/**
 * The command and arguments that run `argv` in network namespace `ns`. `nsenter --net` enters the
 * network namespace only; `ip -n` and `ip netns exec` also unshare the mount namespace (to remount
 * /sys and bind /etc/netns files), which copies every mount, one per namespace under /run/netns
 * included: with 1,000 VMs that made each `ip -n` cost ~15 ms instead of ~3. `ip netns exec` stays
 * for what needs its /etc/netns files (workloads, for their resolv.conf).
 */
export function inNetns(ns: string, argv: readonly string[]): [string, string[]] {
  return hasNsenter()
    ? ['nsenter', [`--net=/run/netns/${ns}`, ...argv]]
    : ['ip', ['netns', 'exec', ns, ...argv]];
}

/** Runs `ip -batch` lines, in namespace `ns` when given. */
export async function ipBatch(ns: string | undefined, lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  const input = lines.join('\n') + '\n';
  if (ns === undefined) await run('ip', ['-batch', '-'], input);
  else await run(...inNetns(ns, ['ip', '-batch', '-']), input);
}

/**
 * Reads jobs from stdin — a namespace's name, its `ip -batch` lines, an empty line — and runs each
 * job's lines in its namespace; stops at the first that fails (ip's message on stderr). The names and
 * lines are data to it, never shell code.
 */
const batchEachScript = (enter: string) => `while IFS= read -r ns; do
  lines=""
  while IFS= read -r l && [ -n "$l" ]; do lines="$lines$l
"; done
  printf '%s' "$lines" | ${enter} ip -batch - || { printf 'in %s\\n' "$ns" >&2; exit 1; }
done`;
const BATCH_EACH_SCRIPT = batchEachScript('nsenter --net="/run/netns/$ns"');
/** Without `nsenter`: `ip netns exec`, which also copies the mount namespace (slower, same result). */
const BATCH_EACH_SCRIPT_NETNS_EXEC = batchEachScript('ip netns exec "$ns"');

/**
 * Runs `ip -batch` lines in each of many namespaces (a VM's side of its link: five lines each).
 * Jobs of the forms planWorld writes for a VM go to the VM-links helper (vm-links.ts): one perl
 * process per share enters each namespace and speaks rtnetlink, no process per namespace. Other jobs,
 * or all of them where perl cannot enter a namespace (`helper: false` too), go through `parallel`
 * shells that fork `nsenter` and `ip` per namespace. Measured at 1,000 VMs on two cores: a process
 * per namespace spawned from Node took 8.3 s, four shells forking `nsenter` 2.9 s. Without
 * `nsenter`, one `ip netns exec` per namespace. Rejects with the first failure's message, which names
 * its namespace.
 */
export async function ipBatchEach(
  jobs: ReadonlyMap<string, readonly string[]>,
  parallel: number,
  opts: { helper?: boolean } = {},
): Promise<void> {
  const all = [...jobs].filter(([, lines]) => lines.length > 0);
  for (const [ns, lines] of all)
    if (/[\s/]/.test(ns) || ns === '' || lines.some((l) => l.trim() === '' || l.includes('\n')))
      throw new Error(`ip batch for ${JSON.stringify(ns)}: a name or line that cannot be passed`);
  const setns = opts.helper === false ? undefined : setnsSyscall();
  const perl = setns !== undefined && canRun('perl', ['-e', '1']);
  const viaHelper: [string, VmLinkOp[]][] = [];
  const viaIp: [string, readonly string[]][] = [];
  for (const [ns, lines] of all) {
    const ops = perl ? vmLinkOps(lines) : undefined;
    if (ops === undefined) viaIp.push([ns, lines]);
    else viaHelper.push([ns, ops]);
  }
  const split = <T>(items: readonly T[], n: number): T[][] => {
    const shares = Array.from({ length: Math.min(n, items.length) }, () => [] as T[]);
    items.forEach((item, i) => shares[i % shares.length]!.push(item));
    return shares;
  };
  await Promise.all([
    // The helper's shares: its work per namespace is the kernel's, so two processes are enough.
    ...split(viaHelper, Math.min(parallel, 2)).map((share) =>
      run('perl', ['-e', VM_LINKS_PERL, String(setns)], helperInput(share), 'rtnetlink in VM namespaces'),
    ),
    ...split(viaIp, parallel).map((share) =>
      run(
        'sh',
        ['-c', hasNsenter() ? BATCH_EACH_SCRIPT : BATCH_EACH_SCRIPT_NETNS_EXEC],
        share.flatMap(([ns, lines]) => [ns, ...lines, '']).join('\n') + '\n',
        // Named for what it does: the script itself would say nothing to a reader of the error.
        'ip -batch in VM namespaces',
      ),
    ),
  ]);
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

/** Makes the empty world (its core namespace) and the internet namespace, linked. */
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
  // Forwarding in the core only (a namespace's own sysctls); no ICMP redirects, which would tell a
  // router to bypass the core; strict reverse-path filtering, so a packet from a router's link must
  // come from an address the core routes to that router (its VIPs and ILPIPs): no router can send
  // as another subscription's address.
  await run(...inNetns(names.world, ['sh', '-c', sysctlScript(CORE_SYSCTLS)]));
}

/** The core's sysctls (in its namespace). */
const CORE_SYSCTLS: Record<string, string> = {
  'net/ipv4/ip_forward': '1',
  'net/ipv4/conf/all/send_redirects': '0',
  'net/ipv4/conf/default/send_redirects': '0',
  'net/ipv4/conf/all/rp_filter': '1',
  'net/ipv4/conf/default/rp_filter': '1',
};

/**
 * A router's sysctls. br_netfilter, when loaded (by anything on the host), would pass bridged frames
 * through the router's nft hooks: a VM calling its own service's VIP and landing on itself would be
 * NATed twice and break. Its switches are per namespace (kernel ≥ 5.3) and exist only once it is
 * loaded, hence `-e`.
 */
const ROUTER_SYSCTLS: Record<string, string> = {
  'net/ipv4/ip_forward': '1',
  'net/ipv4/conf/all/send_redirects': '0',
  'net/ipv4/conf/default/send_redirects': '0',
  'net/bridge/bridge-nf-call-iptables': '0',
  'net/bridge/bridge-nf-call-arptables': '0',
};

const sysctlScript = (values: Record<string, string>) =>
  Object.entries(values)
    .map(([k, v]) => `if [ -e /proc/sys/${k} ]; then echo ${v} > /proc/sys/${k}; fi`)
    .join('; ');

/** Adds the plan's new namespaces (routers and VMs): before its batches, and before any ruleset goes into them. */
export async function addNamespaces(plan: WorldPlan): Promise<void> {
  await ipBatch(
    undefined,
    plan.addNamespaces.map((n) => `netns add ${n}`),
  );
}

/**
 * Runs a plan whose namespaces exist (addNamespaces): the core's devices and routes, then each
 * router's (its sysctls first when new) and each VM's (a few at a time), then the namespaces of VMs
 * and routers that are gone.
 */
export async function execWorld(names: WorldNames, plan: WorldPlan): Promise<void> {
  await ipBatch(names.world, plan.core);
  const newRouters = new Set(plan.newRouters);
  await Promise.all(
    [...new Set([...plan.newRouters, ...plan.routers.keys()])].map(async (ns) => {
      if (newRouters.has(ns)) await run(...inNetns(ns, ['sh', '-c', sysctlScript(ROUTER_SYSCTLS)]));
      await ipBatch(ns, plan.routers.get(ns) ?? []);
    }),
  );
  await ipBatchEach(plan.vms, 4);
  await ipBatch(
    undefined,
    plan.deleteNamespaces.map((n) => `netns del ${n}`),
  );
}

/**
 * Applies an nft text (a whole ruleset or an update) in namespace `ns`, atomically: the one place a
 * ruleset enters a namespace.
 */
export function applyRuleset(ns: string, text: string): Promise<string> {
  return run(...inNetns(ns, ['nft', '-f', '-']), text);
}
