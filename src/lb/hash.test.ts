import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIpv4 } from '../core/index.ts';
import { PROTOCOL_NUMBER, flowHash, flowKey, flowSlot, murmur3Text, type Flow } from './hash.ts';

describe('MurmurHash3 x86_32', () => {
  // Published vectors of the reference implementation (SMHasher's MurmurHash3_x86_32).
  const vectors: [string, number, number][] = [
    ['', 0, 0],
    ['', 1, 0x514e28b7],
    ['', 0xffffffff, 0x81f16f39],
    ['\0\0\0\0', 0, 0x2362f9de],
    ['aaaa', 0x9747b28c, 0x5a97808a],
    ['aaa', 0x9747b28c, 0x283e0130],
    ['aa', 0x9747b28c, 0x5d211726],
    ['a', 0x9747b28c, 0x7fa09ea6],
    ['abcd', 0x9747b28c, 0xf0478627],
    ['abc', 0x9747b28c, 0xc84a62dd],
    ['ab', 0x9747b28c, 0x74875592],
    ['Hello, world!', 0x9747b28c, 0x24884cba],
    ['The quick brown fox jumps over the lazy dog', 0x9747b28c, 0x2fa826cd],
  ];
  for (const [text, seed, want] of vectors) {
    test(`hashes ${JSON.stringify(text)} with seed 0x${seed.toString(16)} to the reference's 0x${want.toString(16)}`, () => {
      assert.equal(murmur3Text(text, seed), want);
    });
  }

  test('answers unsigned 32-bit numbers', () => {
    for (let i = 0; i < 1000; i++) {
      const h = murmur3Text(`backend-${i}`);
      assert.ok(Number.isInteger(h) && h >= 0 && h <= 0xffffffff, String(h));
    }
  });
});

describe('the flow hash', () => {
  const flow: Flow = {
    srcIp: parseIpv4('127.0.0.1'),
    srcPort: 54321,
    dstIp: parseIpv4('127.100.0.7'),
    dstPort: 8080,
    protocol: 'tcp',
  };

  // Slots observed from the kernel (6.18, x86-64, nftables 1.0.6) inside a throwaway namespace: the rule
  // `meta mark set jhash FIELDS mod 65537 seed 0x76697064 dnat to meta mark map @slots`, with every slot
  // mapped to its own local address, and a server reporting which address each connection reached.
  // test/integration/netns-hash.test.ts repeats the observation live on many tuples when run as root.
  const observed: [Flow['srcIp'], number, 'fiveTuple' | 'sourceIP' | 'sourceIPProtocol', number][] = [
    [parseIpv4('10.9.0.1'), 20000, 'fiveTuple', 39213],
    [parseIpv4('10.1.2.3'), 65535, 'fiveTuple', 48327],
    [parseIpv4('10.200.7.9'), 1024, 'fiveTuple', 62716],
    [parseIpv4('10.0.0.2'), 443, 'fiveTuple', 42493],
    [parseIpv4('10.9.0.1'), 20000, 'sourceIP', 50797],
    [parseIpv4('10.1.2.3'), 65535, 'sourceIP', 51413],
    [parseIpv4('10.9.0.1'), 20000, 'sourceIPProtocol', 5998],
    [parseIpv4('10.1.2.3'), 65535, 'sourceIPProtocol', 43314],
  ];
  for (const [srcIp, srcPort, mode, slot] of observed) {
    test(`picks the slot the kernel's nft jhash picked for ${mode} from port ${srcPort} (${slot})`, () => {
      const h = flowHash(mode, srcIp, srcPort, parseIpv4('10.255.0.1'), 80, 6);
      assert.equal(flowSlot(h, 65537), slot);
    });
  }

  test('reduces a hash to a slot as reciprocal_scale does, (h × M) >> 32, not h mod M', () => {
    assert.equal(flowSlot(0, 65537), 0);
    assert.equal(flowSlot(0xffffffff, 65537), 65536);
    assert.equal(flowSlot(0x80000000, 7), 3);
    assert.equal(flowSlot(0x12345678, 65537), Number((0x12345678n * 65537n) >> 32n));
  });

  test('the numeric form gives the same value as the Flow form in every mode', () => {
    for (const mode of ['fiveTuple', 'sourceIP', 'sourceIPProtocol'] as const) {
      for (const protocol of ['tcp', 'udp'] as const) {
        const f = { ...flow, protocol };
        assert.equal(
          flowHash(mode, f.srcIp, f.srcPort, f.dstIp, f.dstPort, PROTOCOL_NUMBER[protocol]),
          flowKey(mode, f),
        );
      }
    }
  });

  test('sourceIP ignores the ports, sourceIPProtocol ignores them but not the protocol', () => {
    const other = { ...flow, srcPort: 1, dstPort: 2 };
    assert.equal(flowKey('sourceIP', flow), flowKey('sourceIP', other));
    assert.equal(flowKey('sourceIPProtocol', flow), flowKey('sourceIPProtocol', other));
    assert.notEqual(
      flowKey('sourceIPProtocol', flow),
      flowKey('sourceIPProtocol', { ...flow, protocol: 'udp' }),
    );
    assert.equal(flowKey('sourceIP', flow), flowKey('sourceIP', { ...flow, protocol: 'udp' }));
  });

  test('the 5-tuple hash changes with the source port and the destination', () => {
    const base = flowKey('fiveTuple', flow);
    assert.notEqual(base, flowKey('fiveTuple', { ...flow, srcPort: flow.srcPort + 1 }));
    assert.notEqual(base, flowKey('fiveTuple', { ...flow, dstIp: parseIpv4('127.100.0.8') }));
    assert.notEqual(
      flowKey('sourceIP', flow),
      flowKey('sourceIP', { ...flow, dstIp: parseIpv4('127.100.0.8') }),
    );
  });

  test('consecutive source ports spread evenly over the residues of a prime table', () => {
    const M = 65537;
    const buckets = new Uint32Array(16);
    const n = 160_000;
    for (let p = 0; p < n; p++) {
      const h = flowSlot(flowHash('fiveTuple', flow.srcIp, (1024 + p) & 0xffff, flow.dstIp, 8080, 6), M);
      buckets[h % 16]!++;
    }
    for (const b of buckets) assert.ok(Math.abs(b - n / 16) < (n / 16) * 0.05, `bucket ${b} of ${n / 16}`);
  });
});
