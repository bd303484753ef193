import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { parseIpv4 } from '../core/index.ts';
import { PROXY_V2_IPV4_LENGTH, parseProxyV2, proxyV2Header } from './proxy-protocol.ts';

describe('PROXY protocol v2', () => {
  const src = parseIpv4('127.0.0.42');
  const dst = parseIpv4('127.100.0.1');

  test('a TCP over IPv4 header has the layout of the specification', () => {
    const h = proxyV2Header('tcp', src, 51000, dst, 8080);
    assert.equal(h.length, PROXY_V2_IPV4_LENGTH);
    assert.equal(h.subarray(0, 12).toString('hex'), '0d0a0d0a000d0a515549540a');
    assert.deepEqual([h[12], h[13], h.readUInt16BE(14)], [0x21, 0x11, 12]);
    assert.equal(h.subarray(16, 28).toString('hex'), '7f00002a7f640001c7381f90');
    assert.equal(proxyV2Header('udp', src, 1, dst, 2)[13], 0x12);
  });

  test('a header parses back to its addresses, with the payload after it', () => {
    const payload = Buffer.from('GET / HTTP/1.1\r\n');
    const b = Buffer.concat([proxyV2Header('tcp', src, 51000, dst, 8080), payload]);
    const p = parseProxyV2(b)!;
    assert.deepEqual(p, {
      command: 'proxy',
      srcIp: src,
      srcPort: 51000,
      dstIp: dst,
      dstPort: 8080,
      length: 28,
    });
    assert.equal(b.subarray(p.length).toString(), payload.toString());
  });

  test('a header cut short asks for more; bytes that are not a header say so at once', () => {
    const h = proxyV2Header('tcp', src, 1, dst, 2);
    for (let n = 0; n < h.length; n++) assert.equal(parseProxyV2(h.subarray(0, n)), undefined, `${n} bytes`);
    assert.equal(parseProxyV2(Buffer.from('GET / HTTP/1.1\r\n')), null);
    assert.equal(parseProxyV2(Buffer.from([0x0d, 0x0a, 0x0d, 0x0b])), null);
  });

  test('a LOCAL command carries no addresses', () => {
    const h = proxyV2Header('tcp', src, 1, dst, 2);
    h[12] = 0x20;
    assert.equal(parseProxyV2(h)!.command, 'local');
  });
});
