import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  MAGLEV_TABLE_LADDER,
  MAGLEV_TABLE_SIZE_DEFAULT,
  buildMaglevTable,
  checkTableSize,
  isPrime,
  maglevPermutation,
  maglevTableSize,
} from './maglev.ts';

const M = MAGLEV_TABLE_SIZE_DEFAULT;
const names = (n: number, prefix = 'contoso/shop/web') =>
  Array.from({ length: n }, (_, i) => `${prefix}${i + 1}`);

/** Slot → backend name, so tables built from different lists compare by who owns each slot. */
const owners = (list: readonly string[], table: Int32Array) => Array.from(table, (i) => list[i]!);

function counts(table: Int32Array, n: number): number[] {
  const c = new Array<number>(n).fill(0);
  for (const i of table) c[i]!++;
  return c;
}

describe('Maglev table sizes', () => {
  test('the default size is the prime 65537', () => {
    assert.equal(M, 65537);
    assert.ok(isPrime(M));
  });

  test("an endpoint's size: the smallest prime of the ladder with 100 slots per backend, never above the largest", () => {
    for (const size of MAGLEV_TABLE_LADDER) assert.ok(isPrime(size), `${size} is prime`);
    assert.deepEqual(
      [0, 1, 2, 3, 10, 11, 40, 41, 163, 164, 655, 656, 5000].map((n) => maglevTableSize(n)),
      [101, 101, 1021, 1021, 1021, 4093, 4093, 16381, 16381, 65537, 65537, 65537, 65537],
    );
    for (let n = 1; n <= 655; n++) assert.ok(maglevTableSize(n) >= 100 * n, `${n} backends`);
    // An operator's smaller largest size wins, whatever the ladder says.
    assert.equal(maglevTableSize(2, 251), 251);
    assert.equal(maglevTableSize(3, 251), 251);
    assert.equal(maglevTableSize(50, 20011), 16381);
    assert.equal(maglevTableSize(200, 20011), 20011);
    assert.equal(maglevTableSize(50, 16381), 16381);
  });

  test('every step of the ladder keeps each of up to its N backends within 1 % of its share', () => {
    for (const n of [1, 2, 3, 7, 10, 11, 29, 40, 41, 100, 163]) {
      const size = maglevTableSize(n);
      const c = counts(buildMaglevTable(names(n), size), n);
      for (const k of c)
        assert.ok(Math.abs(k - size / n) <= 0.01 * (size / n) + 1, `${n} backends on ${size}: ${k}`);
    }
  });

  test('primality is decided right around the small primes and a few large ones', () => {
    const primes = [2, 3, 5, 7, 11, 13, 251, 257, 65521, 65537, 1_000_003];
    const composites = [0, 1, 4, 9, 15, 25, 49, 65535, 65539 * 3, 1_000_001, -7, 2.5, Number.NaN];
    for (const p of primes) assert.ok(isPrime(p), `${p} is prime`);
    for (const c of composites) assert.ok(!isPrime(c), `${c} is not prime`);
  });

  test('a size that is not prime, or smaller than the set, is refused', () => {
    assert.throws(() => checkTableSize(65536, 3), /not a prime/);
    assert.throws(() => buildMaglevTable(['a', 'b', 'c'], 2), /smaller than the number of backends/);
    assert.throws(() => buildMaglevTable(['a', 'a'], 7), /listed twice/);
  });

  test('every permutation visits every slot of a prime table exactly once', () => {
    const size = 251;
    for (const name of names(20)) {
      const { offset, skip } = maglevPermutation(name, size);
      assert.ok(skip >= 1 && skip < size && offset >= 0 && offset < size);
      const seen = new Set<number>();
      for (let j = 0; j < size; j++) seen.add((offset + j * skip) % size);
      assert.equal(seen.size, size);
    }
  });
});

describe('Maglev tables', () => {
  test('an empty set gives a table with no owner anywhere', () => {
    const t = buildMaglevTable([], 7);
    assert.deepEqual(Array.from(t), new Array(7).fill(-1));
  });

  test('one backend owns every slot', () => {
    assert.ok(buildMaglevTable(['only']).every((i) => i === 0));
  });

  test('with M = 65537 and any N ≤ 100, no backend holds more than 1.01 × M/N slots', () => {
    let worst = 0;
    for (let n = 1; n <= 100; n++) {
      const c = counts(buildMaglevTable(names(n)), n);
      assert.equal(
        c.reduce((a, b) => a + b, 0),
        M,
        'every slot is owned',
      );
      const max = Math.max(...c);
      assert.ok(max <= (1.01 * M) / n, `N=${n}: a backend holds ${max} slots, bound ${(1.01 * M) / n}`);
      // Turns are taken round by round, so the counts differ by one at most.
      assert.ok(max - Math.min(...c) <= 1, `N=${n}: counts ${Math.min(...c)}..${max}`);
      worst = Math.max(worst, max / (M / n));
    }
    assert.ok(worst <= 1.01, `worst imbalance ${worst}`);
  });

  test('removing one backend of N moves at most 2/N of all slots', () => {
    let at100 = 0;
    for (let n = 2; n <= 100; n++) {
      const all = names(n);
      const before = buildMaglevTable(all);
      // A removal from the middle, the start and the end of the name order.
      for (const gone of new Set([0, Math.floor(n / 2), n - 1])) {
        const after = buildMaglevTable(all.filter((_, i) => i !== gone));
        let moved = 0;
        let held = 0;
        for (let s = 0; s < M; s++) {
          const a = after[s]!;
          // Indexes into the shorter list, back to indexes into the whole one.
          if (before[s] !== (a < gone ? a : a + 1)) moved++;
          if (before[s] === gone) held++;
        }
        const share = moved / M;
        assert.ok(moved >= held, `N=${n}: at least the removed backend's ${held} slots move`);
        assert.ok(
          share <= 2 / n,
          `N=${n}, removing #${gone}: ${(share * n).toFixed(3)}/N of the slots moved`,
        );
        if (n === 100) at100 = Math.max(at100, share * n);
      }
    }
    assert.ok(at100 > 1 && at100 <= 2, `at N = 100 the movement is ${at100.toFixed(2)}/N`);
  });

  test('the table depends on the set of names, not on the order they are listed in', () => {
    const list = names(37);
    const shuffled = [...list].reverse();
    shuffled.push(shuffled.shift()!);
    assert.deepEqual(owners(list, buildMaglevTable(list)), owners(shuffled, buildMaglevTable(shuffled)));
  });

  test('the same backends give the identical table in another process', () => {
    const list = names(42, 'fabrikam/blog/www');
    const digest = (l: string[]) =>
      createHash('sha256')
        .update(Buffer.from(owners(l, buildMaglevTable(l)).join('\n')))
        .digest('hex');
    const here = digest(list);
    const maglev = fileURLToPath(new URL('./maglev.ts', import.meta.url));
    const script = `
      import { createHash } from 'node:crypto';
      import { buildMaglevTable } from ${JSON.stringify(maglev)};
      const list = JSON.parse(process.argv[1]);
      const t = buildMaglevTable(list);
      const owners = Array.from(t, (i) => list[i]);
      process.stdout.write(createHash('sha256').update(Buffer.from(owners.join('\\n'))).digest('hex'));
    `;
    const there = execFileSync(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script, JSON.stringify([...list].reverse())],
      { encoding: 'utf8' },
    );
    assert.equal(there, here);
  });
});
