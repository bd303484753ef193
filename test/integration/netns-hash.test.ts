/**
 * The flow hash of lb/ is the kernel's: inside a throwaway namespace, nft's `jhash` of each mode's
 * fields (NFT_FLOW_FIELDS, the very list the netns driver renders) picks a slot of a 65,537-slot map
 * whose every slot DNATs to an address of its own, and a server reports the address each connection
 * reached. lb/'s flowSlot(flowHash(…)) must name the same slot for every tuple. Root only; the
 * namespace is deleted by name when the test ends, pass or fail. Addresses: 10.0.0.0/8, inside the
 * namespace only (a `local` route there, none in the root namespace).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { formatIpv4, parseIpv4, type Ipv4 } from '../../src/core/index.ts';
import { NFT_FLOW_FIELDS, PROTOCOL_NUMBER, flowHash, flowSlot } from '../../src/lb/index.ts';
import { ip, makeNamespace, nftIn, requireNetns, testPrefix } from '../support/netns.ts';

const M = 65537;
const PORT = 80;
const SLOT_BASE = parseIpv4('10.0.0.0');
const VIPS = { fiveTuple: '10.255.0.1', sourceIP: '10.255.0.2', sourceIPProtocol: '10.255.0.3' } as const;

test('nft jhash … mod 65537 picks the slot lb/ computes, in every distribution mode, on many tuples', (t) => {
  if (!requireNetns(t)) return;
  const ns = makeNamespace(t, `${testPrefix('h')}`);
  ip('-n', ns, 'route', 'add', 'local', '10.0.0.0/8', 'dev', 'lo');
  const slots: string[] = [];
  for (let s = 0; s < M; s++) slots.push(`${s} : ${formatIpv4((SLOT_BASE + s) as Ipv4)}`);
  const rules = Object.entries(VIPS).map(([mode, vip]) => {
    const fields = NFT_FLOW_FIELDS[mode as keyof typeof VIPS]
      .map((f) => f.replace('PROTO', 'tcp'))
      .join(' . ');
    return `ip daddr ${vip} tcp dport ${PORT} meta mark set jhash ${fields} mod ${M} seed 0x76697064 dnat to meta mark map @slots`;
  });
  nftIn(
    ns,
    `table ip t {\n map slots { type mark : ipv4_addr; elements = { ${slots.join(', ')} } }\n` +
      ` chain out { type nat hook output priority -100;\n  ${rules.join('\n  ')}\n }\n}\n`,
  );

  // Sources spread over 10.9.0.0/16, ports over the whole range: both vary in every word of the hash.
  const tuples: { src: string; sport: number; mode: keyof typeof VIPS }[] = [];
  for (let i = 0; i < 300; i++) {
    const mode = (['fiveTuple', 'sourceIP', 'sourceIPProtocol'] as const)[i % 3]!;
    tuples.push({
      src: `10.9.${(i * 37) % 256}.${((i * 11) % 254) + 1}`,
      sport: 1024 + ((i * 7919) % 64000),
      mode,
    });
  }
  const r = spawnSync(
    'ip',
    ['netns', 'exec', ns, process.execPath, 'test/fixtures/netns-observe.mjs', String(PORT)],
    {
      input: tuples.map((x) => `${x.src} ${x.sport} ${VIPS[x.mode]}`).join('\n') + '\n',
      encoding: 'utf8',
      timeout: 60_000,
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const reached = r.stdout.trim().split('\n');
  assert.equal(reached.length, tuples.length);
  let agree = 0;
  const disagree: string[] = [];
  tuples.forEach((x, i) => {
    const kernel = parseIpv4(reached[i]!) - SLOT_BASE;
    const ours = flowSlot(
      flowHash(x.mode, parseIpv4(x.src), x.sport, parseIpv4(VIPS[x.mode]), PORT, PROTOCOL_NUMBER.tcp),
      M,
    );
    if (kernel === ours) agree++;
    else disagree.push(`${x.mode} ${x.src}:${x.sport} kernel ${kernel} lb ${ours}`);
  });
  assert.deepEqual(disagree, []);
  assert.equal(agree, tuples.length);
});
