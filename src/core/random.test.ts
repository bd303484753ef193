import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { SeededRandom, randomSeed } from './random.ts';

function sequence(seed: number, length: number, n = 0x100000000): number[] {
  const r = new SeededRandom(seed);
  return Array.from({ length }, () => r.int(n));
}

describe('SeededRandom', () => {
  test('the same seed gives the same sequence', () => {
    for (const seed of [0, 1, 42, 0xffffffff]) {
      assert.deepEqual(sequence(seed, 1000), sequence(seed, 1000));
      assert.deepEqual(sequence(seed, 200, 251), sequence(seed, 200, 251));
    }
  });

  test('different seeds give different sequences', () => {
    const seen = new Set<string>();
    for (let seed = 0; seed < 100; seed++) seen.add(sequence(seed, 8).join(','));
    assert.equal(seen.size, 100);
    // Neighbouring seeds must not give shifted copies of one another.
    const a = sequence(1, 64);
    const b = sequence(2, 64);
    assert.equal(
      a.filter((x) => b.includes(x)).length,
      0,
      'seeds 1 and 2 share values: the seed is not spread over the state',
    );
  });

  test('u32 returns unsigned 32-bit integers covering both halves of the range', () => {
    const r = new SeededRandom(7);
    let high = 0;
    for (let i = 0; i < 10_000; i++) {
      const x = r.u32();
      assert.ok(Number.isInteger(x) && x >= 0 && x <= 0xffffffff, `${x}`);
      if (x >= 0x80000000) high++;
    }
    assert.ok(high > 4_500 && high < 5_500, `${high} of 10000 in the top half`);
  });

  for (const n of [1, 2, 3, 7, 251, 2 ** 31, 2 ** 31 + 1, 2 ** 32 - 1, 2 ** 32]) {
    test(`int(${n}) stays within [0, ${n})`, () => {
      const r = new SeededRandom(n);
      let max = 0;
      for (let i = 0; i < 20_000; i++) {
        const x = r.int(n);
        assert.ok(Number.isInteger(x) && x >= 0 && x < n, `int(${n}) gave ${x}`);
        if (x > max) max = x;
      }
      if (n === 1) assert.equal(max, 0);
      if (n >= 2 && n <= 251) assert.equal(max, n - 1, `int(${n}) never reached ${n - 1}`);
      if (n >= 2 ** 31) assert.ok(max > n / 2, `int(${n}) never went above the half`);
    });
  }

  test('int(3) hits every value about equally often', () => {
    const r = new SeededRandom(3);
    const counts = [0, 0, 0];
    for (let i = 0; i < 30_000; i++) counts[r.int(3)]!++;
    for (const c of counts) assert.ok(c > 9_500 && c < 10_500, `counts ${counts.join(',')}`);
  });

  for (const bad of [0, -1, 0.5, 2.5, 2 ** 32 + 1, 2 ** 33, Number.NaN, Infinity, -Infinity]) {
    test(`int(${bad}) throws a RangeError`, () => {
      assert.throws(() => new SeededRandom(1).int(bad), RangeError);
    });
  }

  test('randomSeed returns an unsigned 32-bit integer', () => {
    for (let i = 0; i < 100; i++) {
      const s = randomSeed();
      assert.ok(Number.isInteger(s) && s >= 0 && s <= 0xffffffff, `${s}`);
    }
  });
});
