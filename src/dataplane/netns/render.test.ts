import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { buildMaglevTable, maglevTableSize } from '../../lb/index.ts';
import type { DesiredBackend, DesiredEndpoint } from '../driver.ts';
import {
  coreNftState,
  idleTimeoutObject,
  nftState,
  renderRuleset,
  renderUpdate,
  routerNftInput,
  type NftInput,
} from './render.ts';
import { dnsListeners, worldSpec } from './world.ts';

const GOLDEN = fileURLToPath(new URL('./testdata/ruleset.golden.nft', import.meta.url));
const ROUTERS_GOLDEN = fileURLToPath(new URL('./testdata/routers.golden.nft', import.meta.url));

const backend = (vm: string, dip: string, healthy = true): DesiredBackend => ({
  id: `s1/web/${vm}`,
  vm,
  dip,
  port: 8000,
  healthy,
});

const endpoint = (over: Partial<DesiredEndpoint>): DesiredEndpoint => ({
  key: 'tcp/198.18.0.10:8080',
  kind: 'vip',
  subscription: 's1',
  service: 'web',
  name: 'http',
  lbSet: null,
  address: '198.18.0.10',
  protocol: 'tcp',
  port: 8080,
  distribution: 'fiveTuple',
  idleMs: 240_000,
  acl: [],
  proxyProtocol: false,
  backends: [],
  ...over,
});

/** A small world: a web VIP with an allow-list, a UDP VIP by source IP, an ILPIP, two subscriptions. */
function sampleInput(backends: DesiredBackend[], tableSize = 7): NftInput {
  return {
    endpoints: [
      endpoint({
        backends,
        acl: [
          { order: 2, action: 'deny', remoteSubnet: '198.18.255.0/30' },
          { order: 1, action: 'permit', remoteSubnet: '10.0.0.0/8' },
        ],
      }),
      endpoint({ key: 'udp/198.18.0.10:53', protocol: 'udp', port: 53, distribution: 'sourceIP', backends }),
      endpoint({
        key: 'tcp/198.18.0.20:8000',
        kind: 'ilpip',
        address: '198.18.0.20',
        port: 8000,
        backends: [backend('vm1', '10.1.0.4')],
      }),
    ],
    snat: [
      { subscription: 's1', dip: '10.1.0.5', source: '198.18.0.10' },
      { subscription: 's1', dip: '10.1.0.4', source: '198.18.0.20' },
    ],
    vnets: [
      { subscription: 's1', bridge: 'vdx-b1' },
      { subscription: 's2', bridge: 'vdx-b3' },
      { subscription: 's1', bridge: 'vdx-b2' },
    ],
    internetIf: 'vdx-inet',
    dnsListeners: ['198.18.255.1', '10.2.0.1', '10.1.0.1'],
    tableSize,
  };
}

const two = [backend('vm1', '10.1.0.4'), backend('vm2', '10.1.0.5')];

describe('the netns ruleset', () => {
  test('renders the sample world as the golden file says', () => {
    const text = renderRuleset(nftState(sampleInput(two)));
    if (process.env.UPDATE_GOLDEN) writeFileSync(GOLDEN, text);
    assert.equal(text, readFileSync(GOLDEN, 'utf8'));
  });

  test('the same desired state in any order renders the same text', () => {
    const a = sampleInput(two);
    const b = {
      ...a,
      endpoints: [...a.endpoints].reverse(),
      snat: [...a.snat].reverse(),
      vnets: [...a.vnets].reverse(),
    };
    assert.equal(renderRuleset(nftState(b)), renderRuleset(nftState(a)));
  });

  test('each VIP slot leads, through its backend tag, to the backend of the same slot of lb/ Maglev table', () => {
    const s = nftState(sampleInput(two, 65537));
    const slots = s.collections.get('slots_tcp_198_18_0_10_8080')!.elements;
    const backends = s.collections.get('backends_tcp_198_18_0_10_8080')!.elements;
    // Two backends take the ladder's first step, as the local driver's picker does.
    const M = maglevTableSize(2, 65537);
    assert.equal(M, 1021);
    const table = buildMaglevTable(['s1/web/vm1', 's1/web/vm2'], M);
    assert.equal(slots.size, M);
    assert.equal(backends.size, 2);
    assert.equal(
      s.collections.get('dnat_eps')!.elements.get('198.18.0.10 . tcp . 8080'),
      'goto ep_tcp_198_18_0_10_8080',
    );
    assert.ok(
      s.chains
        .get('ep_tcp_198_18_0_10_8080')!
        .rules.some((r) => r.startsWith('meta l4proto tcp meta mark set jhash') && r.includes(` mod ${M} `)),
    );
    for (let i = 0; i < M; i++) {
      assert.equal(
        backends.get(slots.get(String(i))!),
        table[i] === 0 ? '10.1.0.4 . 8000' : '10.1.0.5 . 8000',
      );
    }
  });

  test("an endpoint's table follows the number of backends it lists, never their health, up to the largest size", () => {
    const many = (n: number, healthy: number) =>
      Array.from({ length: n }, (_, i) => backend(`vm${i}`, `10.1.${i >> 8}.${(i & 255) + 4}`, i < healthy));
    const size = (backends: DesiredBackend[], largest = 65537) =>
      nftState(sampleInput(backends, largest)).collections.get('slots_tcp_198_18_0_10_8080')!.elements.size;
    assert.equal(size(many(1, 1)), 101);
    assert.equal(size(many(2, 1)), 1021, 'one of two failing leaves the size alone');
    assert.equal(size(many(10, 10)), 1021);
    assert.equal(size(many(11, 11)), 4093);
    assert.equal(size(many(11, 1)), 4093, 'ten of eleven failing leave the size alone');
    assert.equal(size(many(41, 41)), 16381);
    assert.equal(size(many(164, 164)), 65537);
    assert.equal(size(many(164, 164), 16381), 16381, "never above the operator's largest table");
  });

  test('a DIP change rewrites one backend element per map that uses it, and no slot', () => {
    const M = 65537;
    const u = renderUpdate(
      nftState(sampleInput(two, M)),
      nftState(sampleInput([backend('vm1', '10.1.0.4'), backend('vm2', '10.1.0.9')], M)),
    );
    assert.equal(u.elementsWritten, 2);
    assert.doesNotMatch(u.script, /slots_/);
    assert.match(u.script, /backends_tcp_198_18_0_10_8080 \{ 0x[0-9a-f]{8} : 10\.1\.0\.9 \. 8000 \}/);
  });

  test('given the previous state, an unchanged slot map is reused as is, and the result renders the same', () => {
    const M = 65537;
    const prev = nftState(sampleInput(two, M));
    const moved = sampleInput([backend('vm1', '10.1.0.4'), backend('vm2', '10.1.0.9')], M);
    const reused = nftState(moved, prev);
    const name = 'slots_tcp_198_18_0_10_8080';
    assert.equal(reused.collections.get(name)!.elements, prev.collections.get(name)!.elements);
    assert.equal(renderRuleset(reused), renderRuleset(nftState(moved)));
    const failed = nftState(sampleInput([backend('vm1', '10.1.0.4')], M), prev);
    assert.notEqual(failed.collections.get(name)!.elements, prev.collections.get(name)!.elements);
    assert.equal(
      renderRuleset(failed),
      renderRuleset(nftState(sampleInput([backend('vm1', '10.1.0.4')], M))),
    );
  });

  test('an unchanged state needs no update at all', () => {
    const u = renderUpdate(nftState(sampleInput(two, 65537)), nftState(sampleInput(two, 65537)));
    assert.equal(u.script, '');
    assert.equal(u.elementsWritten, 0);
  });

  test('a backend failing rewrites only the slots it held, in both maps that use it', () => {
    const M = maglevTableSize(2, 65537);
    const prev = nftState(sampleInput(two, 65537));
    const next = nftState(
      sampleInput([backend('vm1', '10.1.0.4'), backend('vm2', '10.1.0.5', false)], 65537),
    );
    const u = renderUpdate(prev, next);
    const held = buildMaglevTable(['s1/web/vm1', 's1/web/vm2'], M).filter((x) => x === 1).length;
    assert.ok(held > 0.45 * M && held < 0.55 * M, String(held));
    assert.equal(u.elementsWritten, 2 * held);
    assert.doesNotMatch(u.script, /flush|chain/);
  });

  test('a third backend joining moves about a third of the slots, not all of them', () => {
    const M = maglevTableSize(3, 65537);
    assert.equal(M, maglevTableSize(2, 65537), 'two and three backends share a table size');
    const u = renderUpdate(
      nftState(sampleInput(two, 65537)),
      nftState(sampleInput([...two, backend('vm3', '10.1.0.6')], 65537)),
    );
    const perMap = u.elementsWritten / 2;
    assert.ok(perMap > M / 3 - 0.04 * M && perMap < M / 3 + 0.04 * M, String(perMap));
  });

  test('removing an endpoint with an ACL drops its dispatch elements, then its chains, then its maps', () => {
    const prev = nftState(sampleInput(two));
    const input = sampleInput(two);
    const next = nftState({ ...input, endpoints: input.endpoints.slice(1) });
    const { script } = renderUpdate(prev, next);
    const lines = script.trim().split('\n');
    const unDnat = lines.indexOf('delete element ip vipdip dnat_eps { 198.18.0.10 . tcp . 8080 }');
    const unAcl = lines.indexOf('delete element ip vipdip acl_eps { 198.18.0.10 . tcp . 8080 }');
    const delAcl = lines.indexOf('delete chain ip vipdip acl_tcp_198_18_0_10_8080');
    const delEp = lines.indexOf('delete chain ip vipdip ep_tcp_198_18_0_10_8080');
    const delMap = lines.indexOf('delete map ip vipdip slots_tcp_198_18_0_10_8080');
    assert.ok(unDnat >= 0 && unAcl >= 0 && delAcl > unAcl && delEp > unDnat && delMap > delEp, script);
    // Its last ACL gone, the ACL hook has nothing to look up; the DNAT hook is not touched.
    assert.ok(lines.includes('flush chain ip vipdip acl_hook'), script);
    assert.ok(!lines.includes('flush chain ip vipdip dnat_hook'), script);
  });

  test('what a new flow walks, and what adding an endpoint writes, do not grow with the number of VIPs', () => {
    const vips = (n: number): NftInput => ({
      ...sampleInput(two),
      endpoints: Array.from({ length: n }, (_, i) =>
        endpoint({
          key: `tcp/198.18.${i >> 8}.${i & 255}:80`,
          address: `198.18.${i >> 8}.${i & 255}`,
          port: 80,
          backends: two,
          acl: [{ order: 1, action: 'permit', remoteSubnet: '10.0.0.0/8' }],
        }),
      ),
    });
    const hookRules = (s: ReturnType<typeof nftState>) =>
      [...s.chains.values()].filter((c) => c.hook !== null).map((c) => c.rules.length);
    assert.deepEqual(hookRules(nftState(vips(2))), hookRules(nftState(vips(250))));
    // The 251st endpoint: its chains, maps and one element in each dispatch map and timeout set.
    const prev = nftState(vips(250));
    const { script } = renderUpdate(prev, nftState(vips(251), prev));
    const lines = script.trim().split('\n');
    // Nothing of the 250 others, no hook chain: one element in each dispatch map and timeout set.
    assert.ok(
      lines.every((l) => !/_hook|198\.18\.0\.(?!250\b)\d+/.test(l)),
      script,
    );
    assert.deepEqual(
      lines
        .filter((l) => l.startsWith('add element'))
        .map((l) => l.split(' ')[4])
        .sort(),
      [
        'acl_eps',
        'backends_tcp_198_18_0_250_80',
        'dnat_eps',
        'eps_idle_tcp_240',
        'slots_tcp_198_18_0_250_80',
      ],
    );
  });

  test('bridges of one subscription reach each other and the internet; other subscriptions only through VIPs', () => {
    const paths = nftState(sampleInput(two)).collections.get('fwd_paths')!.elements;
    assert.ok(paths.has('"vdx-b1" . "vdx-b2"'));
    assert.ok(paths.has('"vdx-b3" . "vdx-inet"'));
    assert.ok(!paths.has('"vdx-b1" . "vdx-b3"'));
    assert.ok(!paths.has('"vdx-b3" . "vdx-b1"'));
    assert.ok(!paths.has('"vdx-inet" . "vdx-b1"'));
  });

  test('idle timeouts: one ct timeout object per protocol and idle time, scaled to the wall clock', () => {
    assert.deepEqual(idleTimeoutObject({ protocol: 'tcp', idleMs: 240_000 }), {
      name: 'idle_tcp_240',
      body: 'protocol tcp; l3proto ip; policy = { established: 240 };',
    });
    // Below UDP's unreplied default (30 s) an unanswered flow expires no later than an answered one.
    assert.equal(
      idleTimeoutObject({ protocol: 'udp', idleMs: 240_000 }, 0.05).body,
      'protocol udp; l3proto ip; policy = { unreplied: 12, replied: 12 };',
    );
    assert.equal(idleTimeoutObject({ protocol: 'tcp', idleMs: 10 }).name, 'idle_tcp_1');
    const s = nftState({ ...sampleInput(two), timeScale: 0.5 });
    assert.deepEqual([...s.objects.keys()].sort(), ['idle_tcp_120', 'idle_udp_120']);
    assert.ok(s.collections.get('eps_idle_tcp_120')!.elements.has('198.18.0.20 . tcp . 8000'));
    assert.ok(
      s.chains
        .get('ct_hook')!
        .rules.includes('ip daddr . meta l4proto . th dport @eps_idle_tcp_120 ct timeout set "idle_tcp_120"'),
    );
  });

  test('an idle time change adds the new object, points the rules at it, and deletes the old one last', () => {
    const prev = nftState(sampleInput(two));
    const input = sampleInput(two);
    const next = nftState({
      ...input,
      endpoints: input.endpoints.map((e) => (e.protocol === 'udp' ? { ...e, idleMs: 60_000 } : e)),
    });
    const lines = renderUpdate(prev, next).script.trim().split('\n');
    const add = lines.indexOf(
      'add ct timeout ip vipdip idle_udp_60 { protocol udp; l3proto ip; policy = { replied: 60 }; }',
    );
    const set = lines.indexOf('add element ip vipdip eps_idle_udp_60 { 198.18.0.10 . udp . 53 }');
    const rule = lines.indexOf(
      'add rule ip vipdip ct_hook ip daddr . meta l4proto . th dport @eps_idle_udp_60 ct timeout set "idle_udp_60"',
    );
    const delSet = lines.indexOf('delete set ip vipdip eps_idle_udp_240');
    const del = lines.indexOf('delete ct timeout ip vipdip idle_udp_240');
    assert.ok(add >= 0 && set > add && rule > set && delSet > rule && del > delSet, lines.join('\n'));
    assert.ok(
      !lines.some((l) => / ct timeout ip vipdip idle_tcp_240/.test(l)),
      'the TCP object stays as it is',
    );
  });

  test('two subscriptions with the same address space: a router each, each with its own VIPs, SNAT and gateways only, as the golden file says', () => {
    const net = (sub: string) => ({
      key: `${sub}/net`,
      subscription: sub,
      name: 'net',
      subnets: ['10.1.0.0/24'],
    });
    const vm = (sub: string, service: string) => ({
      key: `${sub}/${service}/vm1`,
      subscription: sub,
      service,
      vm: 'vm1',
      vnet: `${sub}/net`,
      cidr: '10.1.0.0/24',
      dip: '10.1.0.4',
    });
    const ep = (sub: string, service: string, vip: string) =>
      endpoint({
        key: `tcp/${vip}:80`,
        subscription: sub,
        service,
        address: vip,
        port: 80,
        backends: [{ id: `${sub}/${service}/vm1`, vm: 'vm1', dip: '10.1.0.4', port: 8000, healthy: true }],
      });
    const desired = {
      endpoints: [ep('s2', 'blog', '198.18.0.20'), ep('s1', 'web', '198.18.0.10')],
      snat: [
        { subscription: 's2', dip: '10.1.0.4', source: '198.18.0.20' },
        { subscription: 's1', dip: '10.1.0.4', source: '198.18.0.10' },
      ],
    };
    const world = worldSpec(
      'vdx',
      [vm('s1', 'web'), vm('s2', 'blog')],
      [net('s1'), net('s2')],
      desired.endpoints.map((e) => ({ address: e.address, subscription: e.subscription })),
    );
    const inputs = routerNftInput(world, desired, { tableSize: 7 });
    assert.equal(inputs.size, 2);
    for (const [ns, input] of inputs) {
      const sub = [...world.routers.values()].find((r) => r.ns === ns)!.subscription;
      assert.ok(input.endpoints.every((e) => e.subscription === sub));
      assert.ok(input.snat.every((x) => x.subscription === sub));
      assert.deepEqual(input.dnsListeners, ['10.1.0.1']);
    }
    const core = [...dnsListeners(world, 'vdx-world').get('vdx-world')!.keys()];
    const text = [
      '# vdx-world',
      renderRuleset(coreNftState(core)),
      ...[...inputs].flatMap(([ns, input]) => [`# ${ns}`, renderRuleset(nftState(input))]),
    ].join('\n');
    if (process.env.UPDATE_GOLDEN) writeFileSync(ROUTERS_GOLDEN, text);
    assert.equal(text, readFileSync(ROUTERS_GOLDEN, 'utf8'));
  });
});
