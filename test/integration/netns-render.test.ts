/**
 * The rendered ruleset loads into the kernel, and every incremental update lands on the same rules
 * as a full load of the new state would: the diff is exact, not only smaller. Root only; two
 * throwaway namespaces, deleted by name when the test ends.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { DesiredBackend, DesiredEndpoint } from '../../src/dataplane/index.ts';
import {
  nftState,
  renderRuleset,
  renderUpdate,
  type NftInput,
  type NftState,
} from '../../src/dataplane/netns/render.ts';
import { makeNamespace, nftIn, requireNetns, testPrefix } from '../support/netns.ts';

/** The largest table: each endpoint's own follows lb/'s ladder. */
const M = 65537;
const b = (vm: string, dip: string, healthy = true): DesiredBackend => ({
  id: `s/w/${vm}`,
  vm,
  dip,
  port: 80,
  healthy,
});
const vip = (address: string, port: number, backends: DesiredBackend[], acl = false): DesiredEndpoint => ({
  key: `tcp/${address}:${port}`,
  kind: 'vip',
  subscription: 's',
  service: 'w',
  name: 'http',
  lbSet: null,
  address,
  protocol: 'tcp',
  port,
  distribution: 'fiveTuple',
  idleMs: 60_000,
  acl: acl ? [{ order: 1, action: 'permit', remoteSubnet: '198.18.255.0/24' }] : [],
  proxyProtocol: false,
  backends,
});
const input = (endpoints: DesiredEndpoint[], snat: [string, string][]): NftInput => ({
  endpoints,
  snat: snat.map(([dip, source]) => ({ subscription: 's', dip, source })),
  vnets: [
    { subscription: 's', bridge: 'vdy-b1' },
    { subscription: 't', bridge: 'vdy-b2' },
  ],
  internetIf: 'vdy-inet',
  tableSize: M,
});

/**
 * The table as the kernel holds it, in a form where only meaning counts: no handles, collections and
 * chains by name, elements as a sorted list (the kernel lists them in creation order), rules in their
 * order within their chain (which matters).
 */
function list(ns: string): string {
  const out = execFileSync('ip', ['netns', 'exec', ns, 'nft', '-j', 'list', 'table', 'ip', 'vipdip'], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const items = (JSON.parse(out) as { nftables: Record<string, Record<string, unknown>>[] }).nftables;
  const norm: string[] = [];
  const rulesSeen = new Map<string, number>();
  for (const item of items) {
    const [kind, body] = Object.entries(item)[0]!;
    if (kind === 'metainfo' || kind === 'table') continue;
    const { handle: _h, elem, ...rest } = body;
    if (kind === 'rule') {
      const chain = String(rest.chain);
      const i = rulesSeen.get(chain) ?? 0;
      rulesSeen.set(chain, i + 1);
      norm.push(`rule ${chain} ${String(i).padStart(4, '0')} ${JSON.stringify(rest)}`);
    } else {
      const elems = Array.isArray(elem) ? elem.map((e) => JSON.stringify(e)).sort() : [];
      norm.push(`${kind} ${String(rest.name)} ${JSON.stringify(rest)} ${elems.join(',')}`);
    }
  }
  return norm.sort().join('\n');
}

test('the golden ruleset loads into the kernel as it is', (t) => {
  if (!requireNetns(t)) return;
  const ns = makeNamespace(t, testPrefix('rg'));
  nftIn(
    ns,
    readFileSync(new URL('../../src/dataplane/netns/testdata/ruleset.golden.nft', import.meta.url), 'utf8'),
  );
  assert.match(list(ns), /ep_udp_198_18_0_10_53/);
});

test('incremental updates leave exactly the ruleset a full load of the last state gives', (t) => {
  if (!requireNetns(t)) return;
  const a = makeNamespace(t, testPrefix('ra'));
  const z = makeNamespace(t, testPrefix('rz'));
  const states = [
    input(
      [vip('198.18.0.10', 80, [b('a', '10.1.0.4'), b('b', '10.1.0.5')], true)],
      [['10.1.0.4', '198.18.0.10']],
    ),
    // A UDP endpoint hashed on addresses alone (no port in its hash) and an ILPIP port join.
    input(
      [
        vip('198.18.0.10', 80, [b('a', '10.1.0.4'), b('b', '10.1.0.5', false), b('c', '10.1.0.6')], true),
        vip('198.18.0.11', 443, [b('d', '10.2.0.4')]),
        {
          ...vip('198.18.0.10', 53, [b('a', '10.1.0.4')]),
          key: 'udp/198.18.0.10:53',
          protocol: 'udp',
          distribution: 'sourceIP',
        },
        { ...vip('198.18.0.20', 22, [b('a', '10.1.0.4')]), key: 'tcp/198.18.0.20:22', kind: 'ilpip' },
      ],
      [
        ['10.1.0.4', '198.18.0.10'],
        ['10.2.0.4', '198.18.0.11'],
      ],
    ),
    input([vip('198.18.0.11', 443, [b('d', '10.2.0.9'), b('e', '10.2.0.5')])], [['10.2.0.9', '198.18.0.11']]),
    // Eleven backends: the table grows a step of the ladder (1,021 → 4,093 slots), then shrinks back.
    input(
      [
        vip('198.18.0.11', 443, [
          b('d', '10.2.0.9'),
          ...Array.from({ length: 10 }, (_, i) => b(`f${i}`, `10.2.1.${i + 4}`)),
        ]),
      ],
      [['10.2.0.9', '198.18.0.11']],
    ),
    input([vip('198.18.0.11', 443, [b('d', '10.2.0.9'), b('e', '10.2.0.5')])], [['10.2.0.9', '198.18.0.11']]),
    // Another idle time: a new ct timeout object, the old one deleted.
    input(
      [{ ...vip('198.18.0.11', 443, [b('d', '10.2.0.9'), b('e', '10.2.0.5')]), idleMs: 30_000 }],
      [['10.2.0.9', '198.18.0.11']],
    ),
  ].reduce<NftState[]>((acc, x) => [...acc, nftState(x, acc.at(-1))], []);
  nftIn(a, renderRuleset(states[0]!));
  for (let i = 1; i < states.length; i++) {
    const u = renderUpdate(states[i - 1], states[i]!);
    nftIn(a, u.script);
  }
  nftIn(z, renderRuleset(states[states.length - 1]!));
  assert.equal(list(a), list(z));
});
