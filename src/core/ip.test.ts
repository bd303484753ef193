import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isVipdipError } from './errors.ts';
import {
  blockSize,
  cidrContains,
  cidrContainsCidr,
  cidrsOverlap,
  formatCidr,
  formatIpv4,
  ipv4,
  lastAddress,
  parseCidr,
  parseIpv4,
  tryParseIpv4,
} from './ip.ts';

/** Asserts that `fn` throws a VipdipError of `code` whose message quotes `value`. */
function assertRefused(fn: () => unknown, code: 'INVALID_ADDRESS' | 'INVALID_CIDR', value: string): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isVipdipError(e, code), `expected ${code}, got ${String(e)}`);
    assert.ok(e.message.includes(`"${value}"`), `message ${JSON.stringify(e.message)} should name ${value}`);
    return true;
  });
}

describe('IPv4 addresses', () => {
  const roundTrips: [string, number][] = [
    ['0.0.0.0', 0],
    ['0.0.0.1', 1],
    ['10.0.0.1', 0x0a000001],
    ['127.100.0.0', 0x7f640000],
    ['192.168.1.254', 0xc0a801fe],
    ['128.0.0.0', 0x80000000],
    ['255.255.255.254', 0xfffffffe],
    ['255.255.255.255', 0xffffffff],
  ];
  for (const [text, n] of roundTrips) {
    test(`${text} parses to ${n} and formats back to the same text`, () => {
      const ip = parseIpv4(text);
      assert.equal(ip, n);
      assert.equal(formatIpv4(ip), text);
      assert.equal(tryParseIpv4(text), n);
    });
  }

  test('addresses are unsigned: the top half of the space parses to positive numbers', () => {
    assert.ok(parseIpv4('255.255.255.255') > 0);
    assert.ok(parseIpv4('200.1.2.3') > 0);
  });

  const malformed = [
    '10.0.0.256',
    '256.0.0.0',
    '010.0.0.1',
    '10.00.0.1',
    '10.0.0.01',
    ' 10.0.0.1',
    '10.0.0.1 ',
    '10.0.0.1\n',
    '',
    '1.2.3',
    '1.2.3.4.5',
    '1..2.3',
    '1.2.3.',
    '.1.2.3',
    '-1.0.0.0',
    '+1.0.0.0',
    '1e1.0.0.0',
    '0x10.0.0.1',
    'a.b.c.d',
    '10.0.0.0/24',
    '1000.0.0.1',
  ];
  for (const text of malformed) {
    test(`${JSON.stringify(text)} is refused as INVALID_ADDRESS with the bad value named`, () => {
      assertRefused(() => parseIpv4(text), 'INVALID_ADDRESS', text);
      assert.equal(tryParseIpv4(text), undefined);
    });
  }

  test('ipv4() accepts exactly the unsigned 32-bit integers', () => {
    assert.equal(ipv4(0), 0);
    assert.equal(ipv4(0xffffffff), 0xffffffff);
    for (const bad of [-1, 0x100000000, 1.5, Number.NaN, Infinity]) {
      assert.throws(() => ipv4(bad), RangeError, `ipv4(${bad})`);
    }
  });
});

describe('CIDR blocks', () => {
  const good: [string, number, number, string][] = [
    ['0.0.0.0/0', 0, 0, '255.255.255.255'],
    ['10.0.0.0/8', 0x0a000000, 8, '10.255.255.255'],
    ['127.100.0.0/16', 0x7f640000, 16, '127.100.255.255'],
    ['10.0.0.0/24', 0x0a000000, 24, '10.0.0.255'],
    ['10.0.0.8/29', 0x0a000008, 29, '10.0.0.15'],
    ['10.0.0.1/32', 0x0a000001, 32, '10.0.0.1'],
    ['255.255.255.255/32', 0xffffffff, 32, '255.255.255.255'],
    ['255.255.255.0/24', 0xffffff00, 24, '255.255.255.255'],
  ];
  for (const [text, base, prefix, last] of good) {
    test(`${text} parses to base ${base} /${prefix}, ends at ${last} and formats back`, () => {
      const c = parseCidr(text);
      assert.deepEqual(c, { base, prefix });
      assert.equal(formatCidr(c), text);
      assert.equal(formatIpv4(lastAddress(c)), last);
      assert.equal(lastAddress(c) - c.base + 1, blockSize(prefix));
    });
  }

  const malformed = [
    '10.0.0.0/33',
    '10.0.0.1/24',
    '11.0.0.0/7',
    '0.0.0.1/0',
    '010.0.0.0/8',
    '10.0.0.256/24',
    ' 10.0.0.0/24',
    '10.0.0.0/24 ',
    '10.0.0.0/ 24',
    '',
    '10.0.0.0',
    '/24',
    '10.0.0.0/',
    '10.0.0.0/024',
    '10.0.0.0/00',
    '10.0.0.0/-1',
    '10.0.0.0/+8',
    '10.0.0.0/8.0',
    '10.0.0.0/24/24',
    '1.2.3/24',
    '1.2.3.4.5/32',
  ];
  for (const text of malformed) {
    test(`${JSON.stringify(text)} is refused as INVALID_CIDR with the bad value named`, () => {
      assertRefused(() => parseCidr(text), 'INVALID_CIDR', text);
    });
  }

  test('a block with host bits set is refused with a message that says so', () => {
    assert.throws(() => parseCidr('10.0.0.1/24'), /host bits/);
  });

  test('block sizes run from one address at /32 to the whole space at /0', () => {
    assert.equal(blockSize(32), 1);
    assert.equal(blockSize(29), 8);
    assert.equal(blockSize(24), 256);
    assert.equal(blockSize(8), 2 ** 24);
    assert.equal(blockSize(0), 2 ** 32);
  });
});

describe('containment and overlap', () => {
  const C = parseCidr;
  const A = parseIpv4;

  const contains: [string, string, boolean][] = [
    ['10.0.0.0/24', '10.0.0.0', true],
    ['10.0.0.0/24', '10.0.0.255', true],
    ['10.0.0.0/24', '10.0.0.17', true],
    ['10.0.0.0/24', '10.0.1.0', false],
    ['10.0.0.0/24', '9.255.255.255', false],
    ['10.0.0.8/29', '10.0.0.7', false],
    ['10.0.0.8/29', '10.0.0.8', true],
    ['10.0.0.8/29', '10.0.0.15', true],
    ['10.0.0.8/29', '10.0.0.16', false],
    ['10.0.0.1/32', '10.0.0.1', true],
    ['10.0.0.1/32', '10.0.0.2', false],
    ['10.0.0.1/32', '10.0.0.0', false],
    ['0.0.0.0/0', '0.0.0.0', true],
    ['0.0.0.0/0', '255.255.255.255', true],
    ['0.0.0.0/0', '128.0.0.0', true],
    ['255.255.255.255/32', '255.255.255.255', true],
    ['255.255.255.255/32', '255.255.255.254', false],
    ['128.0.0.0/1', '127.255.255.255', false],
    ['128.0.0.0/1', '128.0.0.0', true],
    ['128.0.0.0/1', '255.255.255.255', true],
  ];
  for (const [cidr, ip, expected] of contains) {
    test(`${cidr} ${expected ? 'contains' : 'does not contain'} ${ip}`, () => {
      assert.equal(cidrContains(C(cidr), A(ip)), expected);
    });
  }

  const containsCidr: [string, string, boolean][] = [
    ['10.0.0.0/8', '10.1.0.0/16', true],
    ['10.0.0.0/8', '10.0.0.0/8', true],
    ['10.0.0.0/8', '10.255.255.255/32', true],
    ['10.0.0.0/8', '11.0.0.0/16', false],
    ['10.0.0.0/8', '8.0.0.0/6', false],
    ['10.1.0.0/16', '10.0.0.0/8', false],
    ['10.0.0.0/24', '10.0.0.128/25', true],
    ['10.0.0.128/25', '10.0.0.0/25', false],
    ['0.0.0.0/0', '0.0.0.0/0', true],
    ['0.0.0.0/0', '255.255.255.255/32', true],
    ['0.0.0.0/0', '10.0.0.0/8', true],
    ['10.0.0.0/8', '0.0.0.0/0', false],
    ['10.0.0.1/32', '10.0.0.1/32', true],
    ['10.0.0.1/32', '10.0.0.2/32', false],
    ['255.255.255.0/24', '255.255.255.255/32', true],
  ];
  for (const [outer, inner, expected] of containsCidr) {
    test(`${outer} ${expected ? 'contains' : 'does not contain'} the block ${inner}`, () => {
      assert.equal(cidrContainsCidr(C(outer), C(inner)), expected);
    });
  }

  const overlap: [string, string, boolean][] = [
    ['10.0.0.0/24', '10.0.0.0/24', true],
    ['10.0.0.0/24', '10.0.0.128/25', true],
    ['10.0.0.0/24', '10.0.1.0/24', false],
    ['10.0.0.0/23', '10.0.1.0/24', true],
    ['10.0.0.0/8', '10.200.3.0/24', true],
    ['10.0.0.0/8', '11.0.0.0/8', false],
    ['9.255.255.255/32', '10.0.0.0/8', false],
    ['10.255.255.255/32', '10.0.0.0/8', true],
    ['0.0.0.0/0', '255.255.255.255/32', true],
    ['0.0.0.0/0', '0.0.0.0/0', true],
    ['0.0.0.0/1', '128.0.0.0/1', false],
    ['10.0.0.1/32', '10.0.0.1/32', true],
    ['10.0.0.1/32', '10.0.0.2/32', false],
    ['255.255.255.254/31', '255.255.255.255/32', true],
  ];
  for (const [a, b, expected] of overlap) {
    test(`${a} and ${b} ${expected ? 'overlap' : 'do not overlap'}, whichever comes first`, () => {
      assert.equal(cidrsOverlap(C(a), C(b)), expected);
      assert.equal(cidrsOverlap(C(b), C(a)), expected);
    });
  }
});
