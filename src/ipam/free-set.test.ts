import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { FreeSet } from './free-set.ts';

/**
 * The free offsets as the permutation holds them: its first `freeCount` positions. Read through the
 * private `valueAt` on purpose: `takeAt` is only uniform if that prefix is exactly the free set, so
 * the test checks the structure the draw relies on, not just what `isFree` says.
 */
function freeValues(set: FreeSet): number[] {
  const inner = set as unknown as { valueAt(pos: number): number };
  const out: number[] = [];
  for (let i = 0; i < set.freeCount; i++) out.push(inner.valueAt(i));
  return out;
}

const ascending = (xs: Iterable<number>): number[] => [...xs].sort((a, b) => a - b);

describe('FreeSet', () => {
  test('a new set holds every offset, in identity order', () => {
    const s = new FreeSet(100);
    assert.equal(s.freeCount, 100);
    assert.equal(s.boundCount, 0);
    assert.deepEqual(
      freeValues(s),
      Array.from({ length: 100 }, (_, i) => i),
    );
    assert.equal(s.lowestFree(), 0);
  });

  test('offsets outside 0..size-1 are never free', () => {
    const s = new FreeSet(10);
    assert.equal(s.isFree(-1), false);
    assert.equal(s.isFree(10), false);
    assert.equal(s.isFree(11), false);
    assert.equal(s.take(10), false);
    assert.equal(s.take(-1), false);
    assert.equal(s.release(10), false);
    assert.equal(s.release(-1), false);
    assert.equal(s.freeCount, 10);
  });

  test('takeAt takes the offset at that position of the free prefix', () => {
    const s = new FreeSet(10);
    assert.equal(s.takeAt(3), 3);
    assert.equal(s.isFree(3), false);
    assert.equal(s.freeCount, 9);
    assert.ok(!freeValues(s).includes(3));
  });

  test('take refuses an offset that is already bound, release one that is already free', () => {
    const s = new FreeSet(40);
    assert.equal(s.take(33), true);
    assert.equal(s.take(33), false);
    assert.equal(s.boundCount, 1);
    assert.equal(s.release(33), true);
    assert.equal(s.release(33), false);
    assert.equal(s.freeCount, 40);
  });

  test('lowestFree walks across 32-bit words and returns -1 when everything is bound', () => {
    const s = new FreeSet(70);
    for (let i = 0; i < 70; i++) {
      assert.equal(s.lowestFree(), i);
      assert.equal(s.take(i), true);
    }
    assert.equal(s.lowestFree(), -1);
    assert.equal(s.freeCount, 0);
    assert.equal(s.release(64), true);
    assert.equal(s.lowestFree(), 64);
    assert.equal(s.release(31), true);
    assert.equal(s.lowestFree(), 31);
    assert.equal(s.release(0), true);
    assert.equal(s.lowestFree(), 0);
  });

  test('lowestFree is -1 when the tail of the last word is only padding', () => {
    const s = new FreeSet(33);
    for (let i = 0; i < 33; i++) s.take(i);
    assert.equal(s.lowestFree(), -1);
  });

  test('an empty set has nothing free', () => {
    const s = new FreeSet(0);
    assert.equal(s.freeCount, 0);
    assert.equal(s.lowestFree(), -1);
    assert.equal(s.isFree(0), false);
  });

  test('bad sizes are refused with a RangeError', () => {
    for (const bad of [-1, 1.5, Number.NaN, 2 ** 32]) assert.throws(() => new FreeSet(bad), RangeError);
  });

  test('a /8-sized set constructs quickly and draws from anywhere in it', () => {
    const size = 2 ** 24 - 2;
    const t0 = performance.now();
    const s = new FreeSet(size);
    const drawn = [s.takeAt(size - 1), s.takeAt(0), s.takeAt(12_345_678)];
    assert.ok(performance.now() - t0 < 1_000, 'constructing a /8 index took over a second');
    assert.deepEqual(drawn, [size - 1, 0, 12_345_678]);
    assert.equal(s.freeCount, size - 3);
    assert.equal(s.lowestFree(), 1);
  });

  test('random operation sequences agree with a Set after every step', () => {
    type Op =
      | { kind: 'takeAt'; r: number }
      | { kind: 'take'; o: number }
      | { kind: 'release'; o: number }
      | { kind: 'lowestFree' };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant('takeAt' as const), r: fc.nat() }),
      fc.record({ kind: fc.constant('take' as const), o: fc.nat() }),
      // Releases are weighted up so sets go back and forth between full and empty.
      { arbitrary: fc.record({ kind: fc.constant('release' as const), o: fc.nat() }), weight: 2 },
      fc.record({ kind: fc.constant('lowestFree' as const) }),
    );
    const size = fc.oneof(fc.integer({ min: 0, max: 70 }), fc.constantFrom(1, 31, 32, 33, 64, 65, 96));

    fc.assert(
      fc.property(size, fc.array(op, { maxLength: 300, size: 'max' }), (n, ops) => {
        const s = new FreeSet(n);
        const model = new Set<number>(Array.from({ length: n }, (_, i) => i));
        // Offsets a little outside the range too, to exercise the refusals.
        const pick = (o: number) => (o % (n + 4)) - 2;

        const check = (step: string) => {
          assert.equal(s.freeCount, model.size, `${step}: freeCount`);
          assert.equal(s.boundCount, n - model.size, `${step}: boundCount`);
          for (let o = -2; o < n + 2; o++) assert.equal(s.isFree(o), model.has(o), `${step}: isFree(${o})`);
          assert.deepEqual(ascending(freeValues(s)), ascending(model), `${step}: free values`);
          const min = model.size === 0 ? -1 : Math.min(...model);
          assert.equal(s.lowestFree(), min, `${step}: lowestFree`);
        };

        check('start');
        ops.forEach((o, i) => {
          const step = `step ${i} ${JSON.stringify(o)}`;
          switch (o.kind) {
            case 'takeAt': {
              if (model.size === 0) return;
              const r = o.r % model.size;
              const expected = freeValues(s)[r];
              const v = s.takeAt(r);
              assert.equal(v, expected, `${step}: takeAt returns the value at its position`);
              assert.ok(model.delete(v), `${step}: takeAt returned ${v}, which was not free`);
              break;
            }
            case 'take': {
              const off = pick(o.o);
              assert.equal(s.take(off), model.delete(off), step);
              break;
            }
            case 'release': {
              const off = pick(o.o);
              const wasBound = off >= 0 && off < n && !model.has(off);
              assert.equal(s.release(off), wasBound, step);
              if (wasBound) model.add(off);
              break;
            }
            case 'lowestFree':
              break; // checked after every step anyway
          }
          check(step);
        });
      }),
      { numRuns: 300 },
    );
  });
});
