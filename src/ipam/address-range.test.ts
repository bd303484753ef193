import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isVipdipError, type ErrorCode } from '../core/errors.ts';
import { formatIpv4, parseCidr, parseIpv4, type Ipv4 } from '../core/ip.ts';
import { SeededRandom } from '../core/random.ts';
import {
  ALLOCATION_POLICIES,
  AddressRange,
  POOL_RESERVATION,
  SUBNET_RESERVATION,
  type AllocationPolicy,
  type Reservation,
} from './address-range.ts';

const ip = parseIpv4;
const subnet = (cidr: string, label = `subnet net/${cidr}`) =>
  new AddressRange(label, parseCidr(cidr), SUBNET_RESERVATION);
const pool = (cidr: string, label = `public pool ${cidr}`) =>
  new AddressRange(label, parseCidr(cidr), POOL_RESERVATION);

function assertCode(fn: () => unknown, code: ErrorCode, ...named: string[]): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isVipdipError(e, code), `expected ${code}, got ${String(e)}`);
    for (const s of named)
      assert.ok(e.message.includes(s), `message ${JSON.stringify(e.message)} lacks ${s}`);
    return true;
  });
}

/** Allocates until the range is full and returns the addresses in the order drawn. */
function drain(range: AddressRange, policy: AllocationPolicy, random = new SeededRandom(1)): string[] {
  const out: string[] = [];
  while (range.freeCount > 0) out.push(formatIpv4(range.allocate(policy, random)));
  return out;
}

/** Every address of [from, to] as text. */
function span(from: string, to: string): string[] {
  const out: string[] = [];
  for (let n: number = ip(from); n <= ip(to); n++) out.push(formatIpv4(n as Ipv4));
  return out;
}

/**
 * The chi-square quantile for `df` degrees of freedom at the standard normal quantile `z`
 * (Wilson–Hilferty: (X/k)^(1/3) is close to normal with mean 1 - 2/(9k) and variance 2/(9k)).
 */
function chiSquareQuantile(df: number, z: number): number {
  const v = 2 / (9 * df);
  return df * (1 - v + z * Math.sqrt(v)) ** 3;
}
const Z_0_999 = 3.090232306167813;

describe('AddressRange', () => {
  describe('reserved addresses', () => {
    test('a subnet never hands out its first four addresses or its last one', () => {
      const r = subnet('10.1.2.0/24');
      assert.equal(r.usable, 251);
      const got = drain(r, 'random').sort((a, b) => ip(a) - ip(b));
      assert.deepEqual(got, span('10.1.2.4', '10.1.2.254'));
      for (const reserved of ['10.1.2.0', '10.1.2.1', '10.1.2.2', '10.1.2.3', '10.1.2.255']) {
        assert.equal(r.isReserved(ip(reserved)), true, reserved);
        assert.equal(r.isFree(ip(reserved)), false, reserved);
      }
    });

    test('a public pool never hands out its network or broadcast address', () => {
      const r = pool('127.100.0.0/28');
      assert.equal(r.usable, 14);
      const got = drain(r, 'random').sort((a, b) => ip(a) - ip(b));
      assert.deepEqual(got, span('127.100.0.1', '127.100.0.14'));
      assert.equal(r.isReserved(ip('127.100.0.0')), true);
      assert.equal(r.isReserved(ip('127.100.0.15')), true);
      assert.equal(r.isReserved(ip('127.100.0.1')), false);
    });

    test('the sequential policy skips the reserved head too', () => {
      assert.equal(formatIpv4(subnet('10.0.0.0/24').allocate('sequential', new SeededRandom(1))), '10.0.0.4');
      assert.equal(formatIpv4(pool('10.0.0.0/24').allocate('sequential', new SeededRandom(1))), '10.0.0.1');
    });

    test('addresses outside the block are neither reserved nor free', () => {
      const r = subnet('10.0.0.0/29');
      for (const a of ['9.255.255.255', '10.0.0.8', '10.0.1.5']) {
        assert.equal(r.contains(ip(a)), false, a);
        assert.equal(r.isReserved(ip(a)), false, a);
        assert.equal(r.isFree(ip(a)), false, a);
      }
    });
  });

  describe('exhaustion', () => {
    test('a /29 subnet has exactly three usable addresses and the fourth allocation is refused', () => {
      const label = 'subnet shop-net/front';
      const r = subnet('10.0.0.8/29', label);
      assert.equal(r.usable, 3);
      const random = new SeededRandom(9);
      const got = [1, 2, 3].map(() => formatIpv4(r.allocate('random', random)));
      assert.deepEqual(got.sort(), ['10.0.0.12', '10.0.0.13', '10.0.0.14']);
      assertCode(() => r.allocate('random', random), 'POOL_EXHAUSTED', label);
      assertCode(() => r.allocate('sequential', random), 'POOL_EXHAUSTED', label);
    });

    test('an exhausted pool carries its name in the error data and is left as it was', () => {
      const r = pool('127.100.0.0/30', 'public pool 127.100.0.0/30');
      drain(r, 'sequential');
      assert.throws(
        () => r.allocate('random', new SeededRandom(1)),
        (e: unknown) => isVipdipError(e, 'POOL_EXHAUSTED') && e.data['pool'] === 'public pool 127.100.0.0/30',
      );
      assert.equal(r.freeCount, 0);
      assert.equal(r.boundCount, 2);
      r.release(ip('127.100.0.2'));
      assert.equal(formatIpv4(r.allocate('random', new SeededRandom(1))), '127.100.0.2');
    });

    test('blocks too small for any usable address are exhausted from the start', () => {
      for (const r of [
        pool('10.0.0.1/32'),
        pool('10.0.0.0/31'),
        subnet('10.0.0.0/30'),
        subnet('10.0.0.0/29'),
      ]) {
        if (r.usable === 0) assertCode(() => r.allocate('random', new SeededRandom(1)), 'POOL_EXHAUSTED');
      }
      assert.equal(pool('10.0.0.1/32').usable, 0);
      assert.equal(subnet('10.0.0.0/30').usable, 0);
    });
  });

  describe('sequential policy', () => {
    test('allocates the lowest free address, in order', () => {
      const r = subnet('10.0.0.0/27');
      assert.deepEqual(drain(r, 'sequential'), span('10.0.0.4', '10.0.0.30'));
    });

    test('after a middle address is released, the next allocation returns it', () => {
      const r = subnet('10.0.0.0/24');
      const random = new SeededRandom(1);
      for (let i = 0; i < 20; i++) r.allocate('sequential', random);
      r.release(ip('10.0.0.12'));
      assert.equal(formatIpv4(r.allocate('sequential', random)), '10.0.0.12');
      assert.equal(formatIpv4(r.allocate('sequential', random)), '10.0.0.24');
    });

    test('fills the holes that random draws and static takes leave, lowest first', () => {
      const r = subnet('10.0.0.0/26');
      const random = new SeededRandom(5);
      for (let i = 0; i < 30; i++) r.allocate('random', random);
      const highestFree = span('10.0.0.4', '10.0.0.62').findLast((a) => r.isFree(ip(a)));
      r.take(ip(highestFree ?? assert.fail('no free address left')));
      const free = span('10.0.0.4', '10.0.0.62').filter((a) => r.isFree(ip(a)));
      assert.deepEqual(drain(r, 'sequential'), free);
    });
  });

  describe('random policy', () => {
    test('the same seed draws the same addresses', () => {
      const a = drain(subnet('10.0.0.0/24'), 'random', new SeededRandom(123));
      const b = drain(subnet('10.0.0.0/24'), 'random', new SeededRandom(123));
      const c = drain(subnet('10.0.0.0/24'), 'random', new SeededRandom(124));
      assert.deepEqual(a, b);
      assert.notDeepEqual(a, c);
    });

    test('draws are not handed out in address order', () => {
      const got = drain(subnet('10.0.0.0/24'), 'random', new SeededRandom(7));
      assert.notDeepEqual(got, span('10.0.0.4', '10.0.0.254'));
    });

    test('draws are uniform over the free addresses (chi-square, 0.001 < p < 0.999)', () => {
      const r = subnet('10.0.0.0/24');
      // A fixed occupancy: every other usable address from the bottom, 100 in all.
      for (let i = 0; i < 100; i++) r.take((ip('10.0.0.4') + 2 * i) as Ipv4);
      const free = r.freeCount;
      assert.equal(free, 151);

      const random = new SeededRandom(20260101);
      const counts = new Map<number, number>();
      const DRAWS = 100_000;
      for (let i = 0; i < DRAWS; i++) {
        const a = r.allocate('random', random);
        counts.set(a, (counts.get(a) ?? 0) + 1);
        r.release(a);
      }
      assert.equal(r.freeCount, free);
      assert.equal(counts.size, free, 'some free address was never drawn, or a bound one was');
      for (const a of counts.keys()) assert.ok(r.isFree(a as Ipv4), `${formatIpv4(a as Ipv4)} was bound`);

      const expected = DRAWS / free;
      let chi2 = 0;
      for (const c of counts.values()) chi2 += (c - expected) ** 2 / expected;
      const df = free - 1;
      const upper = chiSquareQuantile(df, Z_0_999);
      const lower = chiSquareQuantile(df, -Z_0_999);
      assert.ok(
        chi2 < upper,
        `chi2 = ${chi2.toFixed(1)} ≥ ${upper.toFixed(1)} (df ${df}): draws are not uniform`,
      );
      assert.ok(
        chi2 > lower,
        `chi2 = ${chi2.toFixed(1)} ≤ ${lower.toFixed(1)} (df ${df}): draws are too even`,
      );
    });

    test('the Wilson–Hilferty quantiles match tabulated chi-square values', () => {
      // Tables: chi2(0.999, 150) = 209.27, chi2(0.001, 150) = 102.11, chi2(0.999, 10) = 29.59.
      assert.ok(Math.abs(chiSquareQuantile(150, Z_0_999) - 209.27) < 0.5);
      assert.ok(Math.abs(chiSquareQuantile(150, -Z_0_999) - 102.11) < 0.5);
      assert.ok(Math.abs(chiSquareQuantile(10, Z_0_999) - 29.59) < 0.5);
    });
  });

  describe('take, check and release', () => {
    test('taking an address that is already bound is refused as ADDRESS_TAKEN', () => {
      const r = subnet('10.0.0.0/24', 'subnet shop-net/back');
      r.take(ip('10.0.0.50'));
      assertCode(() => r.take(ip('10.0.0.50')), 'ADDRESS_TAKEN', '10.0.0.50', 'subnet shop-net/back');
      assert.equal(r.boundCount, 1);
      const drawn = r.allocate('sequential', new SeededRandom(1));
      assertCode(() => r.take(drawn), 'ADDRESS_TAKEN', formatIpv4(drawn));
    });

    test('taking or checking an address outside the range is refused as ADDRESS_OUT_OF_RANGE', () => {
      const r = subnet('10.0.0.0/24', 'subnet shop-net/front');
      for (const a of ['10.0.1.4', '9.255.255.255', '10.0.1.0', '0.0.0.0', '255.255.255.255']) {
        assertCode(() => r.take(ip(a)), 'ADDRESS_OUT_OF_RANGE', a, 'subnet shop-net/front', '10.0.0.0/24');
        assertCode(() => r.check(ip(a)), 'ADDRESS_OUT_OF_RANGE', a);
        assertCode(() => r.release(ip(a)), 'ADDRESS_OUT_OF_RANGE', a);
      }
      assert.equal(r.boundCount, 0);
    });

    test('taking or checking a reserved address is refused as ADDRESS_RESERVED', () => {
      const r = subnet('10.0.0.0/24', 'subnet shop-net/front');
      for (const a of ['10.0.0.0', '10.0.0.1', '10.0.0.2', '10.0.0.3', '10.0.0.255']) {
        assertCode(() => r.take(ip(a)), 'ADDRESS_RESERVED', a, 'subnet shop-net/front');
        assertCode(() => r.check(ip(a)), 'ADDRESS_RESERVED', a);
        assertCode(() => r.release(ip(a)), 'ADDRESS_RESERVED', a);
      }
      const p = pool('127.100.0.0/16');
      assertCode(() => p.take(ip('127.100.0.0')), 'ADDRESS_RESERVED');
      assertCode(() => p.take(ip('127.100.255.255')), 'ADDRESS_RESERVED');
      p.take(ip('127.100.0.1'));
      p.take(ip('127.100.255.254'));
      assert.equal(r.boundCount, 0);
    });

    test('check accepts a usable address whether it is free or bound', () => {
      const r = subnet('10.0.0.0/24');
      r.check(ip('10.0.0.4'));
      r.take(ip('10.0.0.4'));
      r.check(ip('10.0.0.4'));
      r.check(ip('10.0.0.254'));
    });

    test('releasing makes an address available again', () => {
      const r = subnet('10.0.0.8/29');
      const random = new SeededRandom(3);
      drain(r, 'random', random);
      r.release(ip('10.0.0.13'));
      assert.equal(r.isFree(ip('10.0.0.13')), true);
      assert.equal(r.freeCount, 1);
      assert.equal(formatIpv4(r.allocate('random', random)), '10.0.0.13');
      r.release(ip('10.0.0.14'));
      r.take(ip('10.0.0.14'));
      assert.equal(r.isFree(ip('10.0.0.14')), false);
    });

    test('releasing an address that is not bound is refused as CONFLICT and changes nothing', () => {
      const r = subnet('10.0.0.0/24');
      assertCode(() => r.release(ip('10.0.0.9')), 'CONFLICT', '10.0.0.9');
      assert.equal(r.freeCount, 251);
    });
  });

  describe('size limits', () => {
    test('a /8 range constructs quickly and allocates', () => {
      const t0 = performance.now();
      const r = pool('10.0.0.0/8');
      const random = new SeededRandom(8);
      const drawn = Array.from({ length: 10_000 }, () => r.allocate('random', random));
      const elapsed = performance.now() - t0;
      assert.ok(elapsed < 2_000, `constructing and drawing 10,000 from a /8 took ${elapsed.toFixed(0)} ms`);
      assert.equal(r.usable, 2 ** 24 - 2);
      assert.equal(new Set(drawn).size, drawn.length);
      for (const a of drawn) assert.ok(r.contains(a) && !r.isReserved(a) && !r.isFree(a));
      assert.equal(
        formatIpv4(r.allocate('sequential', random)),
        drawn.includes(ip('10.0.0.1')) ? '10.0.0.2' : '10.0.0.1',
      );
    });

    test('a block larger than /8 is refused as INVALID_CIDR', () => {
      assertCode(() => pool('10.0.0.0/7'), 'INVALID_CIDR', '/8');
    });
  });

  test('random operation sequences keep every address bound at most once and nothing leaks', () => {
    const cases: [string, Reservation][] = [
      ['10.0.0.0/29', SUBNET_RESERVATION],
      ['10.0.0.0/28', SUBNET_RESERVATION],
      ['10.0.0.64/26', SUBNET_RESERVATION],
      ['127.100.0.0/28', POOL_RESERVATION],
      ['127.100.0.0/30', POOL_RESERVATION],
    ];
    type Op = { kind: 'allocate'; policy: AllocationPolicy } | { kind: 'take' | 'release'; o: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('allocate' as const), policy: fc.constantFrom(...ALLOCATION_POLICIES) }),
      fc.record({ kind: fc.constantFrom('take' as const, 'release' as const), o: fc.nat() }),
    );
    fc.assert(
      fc.property(
        fc.constantFrom(...cases),
        fc.nat(),
        fc.array(op, { maxLength: 150, size: 'max' }),
        ([cidr, reservation], seed, ops) => {
          const block = parseCidr(cidr);
          const size = 2 ** (32 - block.prefix);
          const r = new AddressRange('the range', block, reservation);
          const random = new SeededRandom(seed);
          const usable = new Set<number>();
          for (let a = block.base + reservation.head; a < block.base + size - reservation.tail; a++)
            usable.add(a);
          const bound = new Set<number>();
          const attempt = (fn: () => void): ErrorCode | undefined => {
            try {
              fn();
              return undefined;
            } catch (e) {
              if (isVipdipError(e)) return e.code;
              throw e;
            }
          };
          for (const o of ops) {
            if (o.kind === 'allocate') {
              if (bound.size === usable.size) {
                assert.equal(
                  attempt(() => r.allocate(o.policy, random)),
                  'POOL_EXHAUSTED',
                );
              } else {
                const a = r.allocate(o.policy, random);
                assert.ok(usable.has(a) && !bound.has(a), `${o.policy} drew ${formatIpv4(a)}`);
                if (o.policy === 'sequential') {
                  assert.equal(a, Math.min(...[...usable].filter((x) => !bound.has(x))));
                }
                bound.add(a);
              }
            } else {
              // Anywhere in the block and two addresses either side of it.
              const a = (block.base - 2 + (o.o % (size + 4))) as Ipv4;
              const expected = !(a >= block.base && a < block.base + size)
                ? 'ADDRESS_OUT_OF_RANGE'
                : !usable.has(a)
                  ? 'ADDRESS_RESERVED'
                  : o.kind === 'take' && bound.has(a)
                    ? 'ADDRESS_TAKEN'
                    : o.kind === 'release' && !bound.has(a)
                      ? 'CONFLICT'
                      : undefined;
              assert.equal(
                attempt(() => (o.kind === 'take' ? r.take(a) : r.release(a))),
                expected,
              );
              if (expected === undefined) {
                if (o.kind === 'take') bound.add(a);
                else bound.delete(a);
              }
            }
            assert.equal(r.boundCount, bound.size);
            assert.equal(r.freeCount + r.boundCount, usable.size);
            for (let a = block.base - 1; a <= block.base + size; a++) {
              assert.equal(r.isFree(a as Ipv4), usable.has(a) && !bound.has(a), formatIpv4(a as Ipv4));
            }
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
