import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isVipdipError } from '../core/errors.ts';
import { formatDuration, formatRates, parseDuration, parseRates } from './spec.ts';

test('rates are read per second, minute or hour and kept per minute', () => {
  assert.deepEqual(parseRates('maintenance=1/min,redeploy=4/min,deallocate=2/min,vip=1/min,crash=2/min'), {
    maintenance: 1,
    redeploy: 4,
    deallocate: 2,
    vip: 1,
    crash: 2,
  });
  assert.deepEqual(parseRates('crash=0.5/s, redeploy=30/h, vip=3'), { crash: 30, redeploy: 0.5, vip: 3 });
  assert.equal(formatRates({ crash: 30, redeploy: 0.5 }), 'redeploy=0.5/min, crash=30/min');
});

test('a bad rate is refused with a message that names it', () => {
  for (const [text, mention] of [
    ['', 'at least one'],
    ['storm=1/min', 'unknown kind storm'],
    ['redeploy=1/min,redeploy=2/min', 'given twice'],
    ['redeploy=fast', 'redeploy=fast'],
    ['redeploy=-1/min', 'redeploy=-1/min'],
    ['redeploy=0/min', 'above 0'],
    ['redeploy=20/s', 'from 0 to 600'],
    ['redeploy=400/min,crash=400/min', 'in all'],
  ] as const) {
    assert.throws(
      () => parseRates(text),
      (e: unknown) => isVipdipError(e, 'INVALID_ARGUMENT') && e.message.includes(mention),
      text,
    );
  }
});

test('durations read as ms, s, m or h, and print back short', () => {
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration('90s'), 90_000);
  assert.equal(parseDuration('90'), 90_000);
  assert.equal(parseDuration('1h'), 3_600_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.throws(() => parseDuration('soon', '--duration'), /--duration soon: expected a duration/);
  assert.equal(formatDuration(95_000), '1m35s');
  assert.equal(formatDuration(3_660_000), '1h01m');
  assert.equal(formatDuration(400), '400ms');
});
