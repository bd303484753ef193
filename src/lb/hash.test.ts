import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIpv4 } from '../core/index.ts';
import {
  FLOW_HASH_SEED,
  PROTOCOL_NUMBER,
  flowHash,
  flowKey,
  murmur3,
  murmur3Text,
  type Flow,
} from './hash.ts';

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
  const le = (...words: number[]) => {
    const b = new Uint8Array(words.length * 4);
    const v = new DataView(b.buffer);
    words.forEach((w, i) => v.setUint32(i * 4, w >>> 0, true));
    return b;
  };

  test('is MurmurHash3 of the documented little-endian words, so another implementation agrees', () => {
    assert.equal(flowKey('sourceIP', flow), murmur3(le(flow.srcIp, flow.dstIp), FLOW_HASH_SEED));
    assert.equal(flowKey('sourceIPProtocol', flow), murmur3(le(flow.srcIp, flow.dstIp, 6), FLOW_HASH_SEED));
    assert.equal(
      flowKey('fiveTuple', flow),
      murmur3(le(flow.srcIp, flow.dstIp, (flow.srcPort << 16) | flow.dstPort, 6), FLOW_HASH_SEED),
    );
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
      const h = flowHash('fiveTuple', flow.srcIp, (1024 + p) & 0xffff, flow.dstIp, 8080, 6) % M;
      buckets[h % 16]!++;
    }
    for (const b of buckets) assert.ok(Math.abs(b - n / 16) < (n / 16) * 0.05, `bucket ${b} of ${n / 16}`);
  });
});
