import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isVipdipError, parseIpv4 } from '../core/index.ts';
import type { AclRule } from '../core/api-shapes.ts';
import { compileAcl } from './acl.ts';

const rule = (order: number, action: 'permit' | 'deny', remoteSubnet: string): AclRule => ({
  order,
  action,
  remoteSubnet,
});

describe('endpoint ACLs', () => {
  const cases: [string, AclRule[], [string, boolean][]][] = [
    [
      'no rule permits everyone',
      [],
      [
        ['127.0.0.1', true],
        ['10.1.2.3', true],
      ],
    ],
    [
      'a permit rule makes the list an allow-list: the unmatched are denied',
      [rule(10, 'permit', '127.0.0.0/24')],
      [
        ['127.0.0.1', true],
        ['127.0.0.255', true],
        ['127.0.1.0', false],
        ['10.0.0.1', false],
      ],
    ],
    [
      'deny rules alone make a deny-list: the unmatched are permitted',
      [rule(10, 'deny', '127.0.0.2/32')],
      [
        ['127.0.0.2', false],
        ['127.0.0.3', true],
      ],
    ],
    [
      'the first matching rule by order wins, whatever order the list is written in',
      [rule(200, 'permit', '127.0.0.0/8'), rule(100, 'deny', '127.0.0.66/32')],
      [
        ['127.0.0.66', false],
        ['127.0.0.67', true],
        ['192.168.0.1', false],
      ],
    ],
    [
      'a wider permit before a narrower deny lets the narrower one go unused',
      [rule(1, 'permit', '127.0.0.0/8'), rule(2, 'deny', '127.0.0.66/32')],
      [['127.0.0.66', true]],
    ],
    [
      'the ends of the address space match as any other address',
      [rule(1, 'deny', '255.255.255.255/32'), rule(2, 'permit', '0.0.0.0/1')],
      [
        ['255.255.255.255', false],
        ['0.0.0.0', true],
        ['127.255.255.255', true],
        ['128.0.0.0', false],
      ],
    ],
  ];
  for (const [name, rules, checks] of cases) {
    test(name, () => {
      const check = compileAcl(rules);
      for (const [ip, want] of checks) assert.equal(check(parseIpv4(ip)), want, `${ip}`);
    });
  }

  test('a signed 32-bit form of an address is read as the same address', () => {
    const check = compileAcl([rule(1, 'permit', '200.0.0.0/8')]);
    assert.equal(check(parseIpv4('200.1.2.3') | 0), true);
  });

  test('malformed rules are refused when compiled', () => {
    assert.throws(
      () => compileAcl([rule(1, 'permit', '127.0.0.1/24')]),
      (e: unknown) => isVipdipError(e, 'INVALID_CIDR'),
    );
    assert.throws(
      () => compileAcl([rule(1, 'permit', '127.0.0.0/24'), rule(1, 'deny', '10.0.0.0/8')]),
      (e: unknown) => isVipdipError(e, 'INVALID_ARGUMENT'),
    );
  });
});
