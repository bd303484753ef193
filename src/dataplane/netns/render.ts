/**
 * The netns driver's nftables, rendered purely: the desired state of each router's rules (and the
 * core's few) as data
 * (chains with their rules, maps and sets with their elements), the whole ruleset as one `nft -f`
 * text, and the update from one state to the next as one `nft -f` transaction that touches only what
 * changed — above all, only the Maglev slots that moved (a 65,537-slot map loads in ~0.3 s, its
 * moved slots in milliseconds).
 *
 * The constructs, and why (docs/designs/2026-12-04-netns-driver.md says more):
 *
 * * Dispatch: a new flow finds its endpoint by one lookup of `ip daddr . meta l4proto . th dport`
 *   in a verdict map (`dnat_eps`, `acl_eps`) that leads to the endpoint's own chain (`ep_X`,
 *   `acl_X`), and its idle timeout by one set per timeout object (`eps_idle_tcp_240`), as
 *   kube-proxy's nftables proxier does. A rule per endpoint in the hooks would make every new
 *   connection walk the VIPs before its own, and every endpoint added or removed rewrite them all.
 * * VIP DNAT: `meta mark set jhash FIELDS mod M seed S map @slots_X dnat ip to meta mark map
 *   @backends_X`. The hash and its reduction are lb/'s flowHash/flowSlot (the kernel's jhash,
 *   reciprocal_scale), and `slots_X` holds lb/'s Maglev table slot by slot, so this driver and
 *   `local` send a flow to the same DIP. A slot holds a backend's *tag* (a hash of its stable id),
 *   not its address: `backends_X` maps tags to `DIP . port`, so a DIP change rewrites one element,
 *   and a health or membership change only the slots Maglev moved. A lookup that misses (no healthy
 *   backend: empty maps) leaves the packet to the world's own VIP address, which refuses it, as
 *   `local` does. ILPIP ports lead to one DIP: a plain `dnat`.
 * * ACLs: a filter chain at priority -150 (before DNAT at -100) goes per endpoint to a chain of its
 *   rules in `order`; the first matching subnet decides, and an allow-list ends with a denial (a
 *   TCP reset, as `local` gives, or a drop for UDP).
 * * R6: in postrouting, a flow that was DNATed (to a VIP) or leaves by the uplink takes the
 *   caller's VIP or ILPIP as source, from the `snat` map keyed by DIP.
 * * Idle timeouts: a `ct timeout` object per protocol and idle time (`idle_tcp_240`: TCP established
 *   240 s; UDP: replied 240 s), set on the endpoints' new flows in a chain at priority -190: after
 *   conntrack (-200) has made the entry and before it is confirmed, the only window in which the
 *   kernel (6.x) takes `ct timeout set` (at raw, -300, there is no entry yet and it does nothing). A flow idle for
 *   longer loses its entry and its DNAT: its next packet meets the VIP itself, which refuses it.
 * * Isolation: each subscription has a router of its own, whose table holds only its own VNets, so
 *   another subscription's DIPs have no route (the core routes public addresses only). A router's
 *   forward chain drops by default; it passes replies, DNATed flows (its VIPs), and routed traffic
 *   between its bridges or from a bridge to its uplink (the core: other VIPs, the internet).
 * * DNS listeners: a query to a listener's address (a gateway, the internet link's end) must come in
 *   on the interface that holds it (`fib daddr . iif type local`). Without this a VM could ask another
 *   VNet's gateway, which the world delivers locally (input, not forward), and get that VNet's scope.
 */
import { parseIpv4 } from '../../core/index.ts';
import {
  FLOW_HASH_SEED,
  NFT_FLOW_FIELDS,
  buildMaglevTable,
  maglevTableSize,
  murmur3Text,
} from '../../lb/index.ts';
import type { DesiredDataPlane, DesiredEndpoint, SourceNat } from '../driver.ts';
import { ROUTER_UPLINK, type WorldSpec } from './world.ts';

export const NFT_TABLE = 'vipdip';

/** One VNet as the world holds it: a bridge, and the subscription that owns it. */
export interface NftVnet {
  readonly subscription: string;
  readonly bridge: string;
}

/** What the world's rules are made from. */
export interface NftInput {
  readonly endpoints: readonly DesiredEndpoint[];
  readonly snat: readonly SourceNat[];
  readonly vnets: readonly NftVnet[];
  /** The way out of the router: its uplink to the core (other subscriptions' VIPs, the internet). */
  readonly internetIf: string;
  /** The largest Maglev table, a prime (65537 by default); each endpoint's is `maglevTableSize`'s. */
  readonly tableSize: number;
  /** The world addresses DNS listens on, each reachable only from its own interface. */
  readonly dnsListeners?: readonly string[];
  /** Wall-clock milliseconds per model millisecond (the time scale; 1 by default): idle timeouts are in model time. */
  readonly timeScale?: number;
}

export interface NftChain {
  /** `type nat hook prerouting priority -100; policy accept;`, or null for a regular chain. */
  readonly hook: string | null;
  readonly rules: readonly string[];
}

export interface NftCollection {
  /** `map` or `set`. */
  readonly kind: 'map' | 'set';
  /** `mark : ipv4_addr . inet_service`, or a whole `typeof …` declaration. */
  readonly type: string;
  /** Key → value text (`''` for a set's elements). */
  readonly elements: ReadonlyMap<string, string>;
  /**
   * What the elements were computed from, when that is cheaper to compare than they are (a slot
   * map's healthy backend ids): an equal `source` in the previous state lets its elements be reused.
   */
  readonly source?: string;
}

/** The desired ruleset of the world as data: what both the full text and the diff are made from. */
export interface NftState {
  readonly chains: ReadonlyMap<string, NftChain>;
  readonly collections: ReadonlyMap<string, NftCollection>;
  /**
   * Stateful objects (`ct timeout`): name → body. A name says everything its body does
   * (`idle_tcp_240`), so an object is only ever added or deleted, never changed.
   */
  readonly objects: ReadonlyMap<string, string>;
}

/** UDP's conntrack default for a flow that has not been answered yet, in seconds. */
const UDP_UNREPLIED_S = 30;

/**
 * The `ct timeout` object an endpoint's flows take: the endpoint's idle timeout (model time, scaled
 * to the wall clock, whole seconds, at least 1) as TCP's `established` or UDP's `replied` timeout.
 */
export function idleTimeoutObject(
  ep: Pick<DesiredEndpoint, 'protocol' | 'idleMs'>,
  timeScale = 1,
): { name: string; body: string } {
  const s = Math.max(1, Math.ceil((ep.idleMs * timeScale) / 1000));
  const policy =
    ep.protocol === 'tcp'
      ? `established: ${s}`
      : s < UDP_UNREPLIED_S
        ? `unreplied: ${s}, replied: ${s}`
        : `replied: ${s}`;
  return {
    name: `idle_${ep.protocol}_${s}`,
    body: `protocol ${ep.protocol}; l3proto ip; policy = { ${policy} };`,
  };
}

/** An endpoint key (`tcp/198.18.0.10:8080`) as an nft identifier: `tcp_198_18_0_10_8080`. */
export const nftIdent = (key: string): string => key.replace(/[^A-Za-z0-9]/g, '_');

/** The nft expression that hashes a flow as lb/'s flowHash does for `mode`. */
export function flowHashExpr(
  ep: Pick<DesiredEndpoint, 'distribution' | 'protocol'>,
  tableSize: number,
): string {
  const fields = NFT_FLOW_FIELDS[ep.distribution].map((f) => f.replace('PROTO', ep.protocol)).join(' . ');
  return `jhash ${fields} mod ${tableSize} seed 0x${FLOW_HASH_SEED.toString(16)}`;
}

/**
 * Each healthy backend's tag, the 32-bit mark its slots hold: a hash of its stable id, so the tag
 * survives DIP changes and other backends coming and going. Tags are made distinct within an
 * endpoint (the next free value, in id order) in the rare case two ids hash alike.
 */
export function backendTags(ep: DesiredEndpoint): Map<string, number> {
  const tags = new Map<string, number>();
  const used = new Set<number>();
  for (const id of ep.backends
    .filter((b) => b.healthy)
    .map((b) => b.id)
    .sort()) {
    let tag = murmur3Text(id);
    while (used.has(tag)) tag = (tag + 1) >>> 0;
    used.add(tag);
    tags.set(id, tag);
  }
  return tags;
}

const markText = (tag: number) => `0x${tag.toString(16).padStart(8, '0')}`;

/** Slot → backend tag: lb/'s Maglev table over the healthy backends, written out. */
export function slotElements(ep: DesiredEndpoint, tableSize: number): Map<string, string> {
  const healthy = ep.backends.filter((b) => b.healthy);
  const out = new Map<string, string>();
  if (healthy.length === 0) return out;
  const tags = backendTags(ep);
  const table = buildMaglevTable(
    healthy.map((b) => b.id),
    tableSize,
  );
  const values = healthy.map((b) => markText(tags.get(b.id)!));
  for (let s = 0; s < table.length; s++) out.set(String(s), values[table[s]!]!);
  return out;
}

/** Backend tag → `DIP . port`, for the healthy backends. */
export function backendElements(ep: DesiredEndpoint): Map<string, string> {
  const tags = backendTags(ep);
  const out = new Map<string, string>();
  for (const b of ep.backends) if (b.healthy) out.set(markText(tags.get(b.id)!), `${b.dip} . ${b.port}`);
  return out;
}

const byOrder = <T extends { order: number }>(a: T, b: T) => a.order - b.order;
const compare = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);

/**
 * Desired state → the world's ruleset as data. Pure; the same input gives the same output. Given the
 * previous state, a slot map whose healthy backends did not change is taken over as it is (the same
 * object), so a DIP or ACL change costs neither a Maglev table nor a 65,537-element diff.
 */
export function nftState(input: NftInput, prev?: NftState): NftState {
  const chains = new Map<string, NftChain>();
  const collections = new Map<string, NftCollection>();
  const objects = new Map<string, string>();
  // Endpoint → its chain, for the dispatch maps; endpoints by idle timeout object.
  const aclEps = new Map<string, string>();
  const dnatEps = new Map<string, string>();
  const byTimeout = new Map<string, Map<string, string>>();
  const endpoints = [...input.endpoints].sort((a, b) => compare(a.key, b.key));

  for (const ep of endpoints) {
    const id = nftIdent(ep.key);
    const tuple = `${ep.address} . ${ep.protocol} . ${ep.port}`;
    // nft takes a DNAT to an address *and port* only after a match on the transport protocol, which
    // the dispatch map's key does not count as; a hash over addresses alone (sourceIP) names none.
    const l4 = `meta l4proto ${ep.protocol}`;
    const idle = idleTimeoutObject(ep, input.timeScale);
    objects.set(idle.name, idle.body);
    if (!byTimeout.has(idle.name)) byTimeout.set(idle.name, new Map());
    byTimeout.get(idle.name)!.set(tuple, '');
    if (ep.acl.length > 0) {
      // A denied TCP client gets a reset, as from the local driver; a UDP datagram is dropped.
      const deny = ep.protocol === 'tcp' ? 'reject with tcp reset' : 'drop';
      const rules = [...ep.acl]
        .sort(byOrder)
        .map((r) => `ip saddr ${r.remoteSubnet} ${r.action === 'permit' ? 'accept' : deny}`);
      // An allow-list denies whoever it does not name; a deny-list lets them through.
      if (ep.acl.some((r) => r.action === 'permit')) rules.push(deny);
      chains.set(`acl_${id}`, { hook: null, rules });
      aclEps.set(tuple, `goto acl_${id}`);
    }
    if (ep.kind === 'ilpip') {
      const b = ep.backends.find((x) => x.healthy);
      if (b !== undefined) {
        chains.set(`ep_${id}`, { hook: null, rules: [`${l4} dnat ip to ${b.dip}:${b.port}`] });
        dnatEps.set(tuple, `goto ep_${id}`);
      }
      continue;
    }
    // nft names no datatype for a hash's integer result: `typeof` borrows numgen's.
    const size = maglevTableSize(ep.backends.length, input.tableSize);
    const source = `${size}|${ep.backends
      .filter((b) => b.healthy)
      .map((b) => b.id)
      .sort()
      .join(',')}`;
    const before = prev?.collections.get(`slots_${id}`);
    collections.set(`slots_${id}`, {
      kind: 'map',
      type: 'typeof numgen inc mod 2 : meta mark',
      elements: before?.source === source ? before.elements : slotElements(ep, size),
      source,
    });
    collections.set(`backends_${id}`, {
      kind: 'map',
      type: 'mark : ipv4_addr . inet_service',
      elements: backendElements(ep),
    });
    chains.set(`ep_${id}`, {
      hook: null,
      rules: [
        `${l4} meta mark set ${flowHashExpr(ep, size)} map @slots_${id} dnat ip to meta mark map @backends_${id}`,
      ],
    });
    dnatEps.set(tuple, `goto ep_${id}`);
  }

  // A new flow finds its endpoint in one lookup of a map keyed by (address, protocol, port), as
  // kube-proxy's nftables proxier does, never by walking a rule per endpoint: what a new connection
  // costs, and what adding or removing an endpoint rewrites, does not grow with the number of VIPs.
  // The dispatch maps always exist, so an update only ever adds and deletes their elements.
  const dispatch = 'ip daddr . meta l4proto . th dport';
  const tupleType = 'ipv4_addr . inet_proto . inet_service';
  collections.set('acl_eps', { kind: 'map', type: `${tupleType} : verdict`, elements: aclEps });
  collections.set('dnat_eps', { kind: 'map', type: `${tupleType} : verdict`, elements: dnatEps });
  // A set of endpoints per idle timeout object: one rule per distinct idle time, not per endpoint.
  const timeoutRules: string[] = [];
  for (const name of [...byTimeout.keys()].sort(compare)) {
    collections.set(`eps_${name}`, { kind: 'set', type: tupleType, elements: byTimeout.get(name)! });
    timeoutRules.push(`${dispatch} @eps_${name} ct timeout set "${name}"`);
  }

  // After conntrack (-200) made the entry, before it is confirmed: the kernel ignores it elsewhere.
  // Only a flow's first packet can take a timeout: every later one leaves at the first rule.
  chains.set('ct_hook', {
    hook: 'type filter hook prerouting priority -190; policy accept;',
    rules: timeoutRules.length > 0 ? ['ct state != new accept', ...timeoutRules] : [],
  });
  // Every packet passes here (an ACL holds for established flows too): without ACLs, no lookup.
  chains.set('acl_hook', {
    hook: 'type filter hook prerouting priority -150; policy accept;',
    rules: aclEps.size > 0 ? [`${dispatch} vmap @acl_eps`] : [],
  });
  chains.set('dnat_hook', {
    hook: 'type nat hook prerouting priority -100; policy accept;',
    rules: [`${dispatch} vmap @dnat_eps`],
  });

  const snat = [...input.snat].sort((a, b) => parseIpv4(a.dip) - parseIpv4(b.dip));
  collections.set('src_by_dip', {
    kind: 'map',
    type: 'ipv4_addr : ipv4_addr',
    elements: new Map(snat.map((s) => [s.dip, s.source])),
  });
  chains.set('snat_hook', {
    hook: 'type nat hook postrouting priority 100; policy accept;',
    rules: [
      'ct status dnat snat ip to ip saddr map @src_by_dip',
      `oifname "${input.internetIf}" snat ip to ip saddr map @src_by_dip`,
    ],
  });

  const pairs = new Map<string, string>();
  const vnets = [...input.vnets].sort((a, b) => compare(a.bridge, b.bridge));
  for (const from of vnets) {
    for (const to of vnets) {
      if (from.subscription === to.subscription) pairs.set(`"${from.bridge}" . "${to.bridge}"`, '');
    }
    pairs.set(`"${from.bridge}" . "${input.internetIf}"`, '');
  }
  collections.set('fwd_paths', { kind: 'set', type: 'ifname . ifname', elements: pairs });
  chains.set('fwd_hook', {
    hook: 'type filter hook forward priority 0; policy drop;',
    rules: [
      'ct state established,related accept',
      'ct status dnat accept',
      'iifname . oifname @fwd_paths accept',
    ],
  });

  dnsRules(input.dnsListeners ?? [], chains, collections);
  return { chains, collections, objects };
}

/** DNS to a listener's address must arrive on the interface that holds it. */
function dnsRules(
  listeners: readonly string[],
  chains: Map<string, NftChain>,
  collections: Map<string, NftCollection>,
): void {
  collections.set('dns_listeners', {
    kind: 'set',
    type: 'ipv4_addr',
    elements: new Map([...listeners].sort((a, b) => parseIpv4(a) - parseIpv4(b)).map((a) => [a, ''])),
  });
  chains.set('dns_hook', {
    hook: 'type filter hook input priority 0; policy accept;',
    rules: [
      'meta l4proto { tcp, udp } th dport 53 ip daddr @dns_listeners fib daddr . iif type != local drop',
    ],
  });
}

/**
 * The core's ruleset: the core routes public addresses only (its strict reverse-path filter keeps
 * each router to its own), and answers DNS for the internet on its link's end. Pure.
 */
export function coreNftState(dnsListeners: readonly string[]): NftState {
  const chains = new Map<string, NftChain>();
  const collections = new Map<string, NftCollection>();
  dnsRules(dnsListeners, chains, collections);
  return { chains, collections, objects: new Map() };
}

/** Tuning shared by every router's ruleset. */
export interface RouterNftOptions {
  readonly tableSize: number;
  readonly timeScale?: number;
}

/**
 * Desired state → the input of each router's ruleset, by router namespace: its subscription's
 * endpoints (VIPs and ILPIPs), the SNAT of its DIPs, its VNets' bridges, its uplink to the core as
 * "the internet", and its gateways as DNS listeners. A router's table never names another
 * subscription's address. Pure.
 */
export function routerNftInput(
  world: WorldSpec,
  desired: Pick<DesiredDataPlane, 'endpoints' | 'snat'>,
  opts: RouterNftOptions,
): Map<string, NftInput> {
  const out = new Map<string, NftInput>();
  for (const r of [...world.routers.values()].sort((a, b) => compare(a.ns, b.ns))) {
    const vnets = [...world.vnets.values()].filter((v) => v.router === r.ns);
    out.set(r.ns, {
      endpoints: desired.endpoints.filter((e) => e.subscription === r.subscription),
      snat: desired.snat.filter((s) => s.subscription === r.subscription),
      vnets: vnets.map((v) => ({ subscription: v.subscription, bridge: v.bridge })),
      internetIf: ROUTER_UPLINK,
      dnsListeners: vnets.flatMap((v) => v.gateways.map((g) => g.split('/')[0]!)),
      tableSize: opts.tableSize,
      ...(opts.timeScale !== undefined ? { timeScale: opts.timeScale } : {}),
    });
  }
  return out;
}

/** `type mark : …`, or `typeof …` as given. */
const typeDecl = (type: string) => (type.startsWith('typeof ') ? type : `type ${type}`);

const elementText = (c: NftCollection, keys: Iterable<string>): string =>
  [...keys].map((k) => (c.kind === 'set' ? k : `${k} : ${c.elements.get(k)!}`)).join(', ');

/** Regular chains first: a base chain's `jump` needs its target declared before it. */
const chainOrder = (s: NftState): string[] =>
  [...s.chains.keys()].sort((a, b) => {
    const ha = s.chains.get(a)!.hook === null ? 0 : 1;
    const hb = s.chains.get(b)!.hook === null ? 0 : 1;
    return ha - hb || compare(a, b);
  });

/**
 * The whole ruleset as one `nft -f` text that replaces any previous table of ours atomically (the
 * `table … {}` line makes the `delete` valid when there is none).
 */
export function renderRuleset(s: NftState): string {
  const out = [`table ip ${NFT_TABLE} {}`, `delete table ip ${NFT_TABLE}`, `table ip ${NFT_TABLE} {`];
  for (const [name, body] of [...s.objects].sort((a, b) => compare(a[0], b[0])))
    out.push(`  ct timeout ${name} { ${body} }`);
  for (const [name, c] of [...s.collections].sort((a, b) => compare(a[0], b[0]))) {
    const elements = c.elements.size > 0 ? ` elements = { ${elementText(c, c.elements.keys())} }` : '';
    out.push(`  ${c.kind} ${name} { ${typeDecl(c.type)};${elements} }`);
  }
  for (const name of chainOrder(s)) {
    const c = s.chains.get(name)!;
    out.push(`  chain ${name} {`);
    if (c.hook !== null) out.push(`    ${c.hook}`);
    for (const r of c.rules) out.push(`    ${r}`);
    out.push('  }');
  }
  out.push('}');
  return out.join('\n') + '\n';
}

/** How many map elements an update writes: the measure of "only the moved slots". */
export interface NftUpdate {
  readonly script: string;
  readonly elementsWritten: number;
}

/**
 * The `nft -f` transaction from `prev` to `next`: new maps and chains added, changed chains flushed
 * and refilled, only the changed elements of a map deleted and added, then what is gone deleted.
 * Empty script when nothing changed. With no `prev`, the whole ruleset.
 */
export function renderUpdate(prev: NftState | undefined, next: NftState): NftUpdate {
  if (prev === undefined) {
    let n = 0;
    for (const c of next.collections.values()) n += c.elements.size;
    return { script: renderRuleset(next), elementsWritten: n };
  }
  const t = `ip ${NFT_TABLE}`;
  const out: string[] = [];
  let written = 0;
  for (const [name, body] of next.objects)
    if (!prev.objects.has(name)) out.push(`add ct timeout ${t} ${name} { ${body} }`);
  // New chains are declared first: a dispatch map's new element names its chain (`goto ep_X`).
  const order = chainOrder(next);
  for (const name of order) {
    const c = next.chains.get(name)!;
    const old = prev.chains.get(name);
    if (old === undefined) out.push(`add chain ${t} ${name}${c.hook !== null ? ` { ${c.hook} }` : ''}`);
  }
  for (const [name, c] of next.collections) {
    const old = prev.collections.get(name);
    // A collection's name fixes its kind and type (slots_…, src_by_dip, fwd_paths), so an old one is only diffed.
    if (old !== undefined && old.elements === c.elements) continue;
    if (old === undefined) {
      out.push(`add ${c.kind} ${t} ${name} { ${typeDecl(c.type)}; }`);
      if (c.elements.size > 0) out.push(`add element ${t} ${name} { ${elementText(c, c.elements.keys())} }`);
      written += c.elements.size;
      continue;
    }
    const gone: string[] = [];
    const set: string[] = [];
    for (const [k, v] of old.elements) {
      const nv = c.elements.get(k);
      if (nv === undefined) gone.push(k);
      else if (nv !== v) {
        gone.push(k);
        set.push(k);
      }
    }
    for (const k of c.elements.keys()) if (!old.elements.has(k)) set.push(k);
    if (gone.length > 0) out.push(`delete element ${t} ${name} { ${gone.join(', ')} }`);
    if (set.length > 0) out.push(`add element ${t} ${name} { ${elementText(c, set)} }`);
    written += set.length;
  }
  for (const name of [...order].reverse()) {
    const c = next.chains.get(name)!;
    const old = prev.chains.get(name);
    if (old !== undefined && old.hook === c.hook && sameRules(old.rules, c.rules)) continue;
    if (old !== undefined) out.push(`flush chain ${t} ${name}`);
    for (const r of c.rules) out.push(`add rule ${t} ${name} ${r}`);
  }
  for (const name of prev.chains.keys()) {
    if (!next.chains.has(name)) out.push(`flush chain ${t} ${name}`);
  }
  for (const name of prev.chains.keys()) {
    if (!next.chains.has(name)) out.push(`delete chain ${t} ${name}`);
  }
  for (const [name, old] of prev.collections) {
    const c = next.collections.get(name);
    if (c === undefined) out.push(`delete ${old.kind} ${t} ${name}`);
  }
  // Last: no rule refers to them any more.
  for (const name of prev.objects.keys())
    if (!next.objects.has(name)) out.push(`delete ct timeout ${t} ${name}`);
  return { script: out.length > 0 ? out.join('\n') + '\n' : '', elementsWritten: written };
}

const sameRules = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((r, i) => r === b[i]);
