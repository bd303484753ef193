import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PassiveHealth, backendKey } from './passive.ts';

const A = backendKey(0x7f100101, 8000);
const B = backendKey(0x7f100102, 8000);

describe('passive health', () => {
  test('three consecutive failures trip a backend once, and only that backend', () => {
    const p = new PassiveHealth({ now: () => 0 });
    assert.deepEqual([p.failure(A), p.failure(A)], [false, false]);
    assert.equal(p.isOut(A), false);
    assert.equal(p.failure(A), true);
    assert.equal(p.isOut(A), true);
    assert.equal(p.failure(A), false, 'a tripped backend is not tripped again');
    assert.equal(p.isOut(B), false);
  });

  test('a successful connect between failures starts the count again', () => {
    const p = new PassiveHealth({ now: () => 0 });
    p.failure(A);
    p.failure(A);
    p.success(A);
    assert.deepEqual([p.failure(A), p.failure(A), p.isOut(A)], [false, false, false]);
    assert.equal(p.failure(A), true);
  });

  test('an unacknowledged trip lasts the hold time, then one failure trips it again', () => {
    let now = 0;
    const p = new PassiveHealth({ now: () => now, holdMs: 5000 });
    for (let i = 0; i < 3; i++) p.failure(A);
    now = 4999;
    assert.equal(p.isOut(A), true);
    now = 5000;
    assert.equal(p.isOut(A), false);
    assert.equal(p.failure(A), true, 'half open: a single failure takes it out again');
  });

  test('clear and retain forget backends', () => {
    const p = new PassiveHealth({ now: () => 0 });
    for (let i = 0; i < 3; i++) {
      p.failure(A);
      p.failure(B);
    }
    p.clear(A);
    assert.deepEqual([p.isOut(A), p.count(A)], [false, 0]);
    p.retain(new Set([A]));
    assert.deepEqual([p.isOut(B), p.count(B)], [false, 0]);
  });

  test('a threshold below one is refused', () => {
    assert.throws(() => new PassiveHealth({ threshold: 0 }), RangeError);
  });
});
