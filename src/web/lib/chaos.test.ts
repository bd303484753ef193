import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ChaosRun } from '../../core/api-shapes.ts';
import { chaosRunOf, nextText, overWhat, ratesText, span, stepsDone } from './chaos.ts';

const run: ChaosRun = {
  id: '4f2a1c',
  reason: 'chaos run 4f2a1c',
  subscription: 'contoso',
  services: null,
  seed: 7,
  rates: { redeploy: 4, crash: 0.5, vip: 0 },
  pauseMs: 5000,
  durationMs: null,
  state: 'running',
  startedAt: '2026-12-03T21:00:00.000Z',
  endsAt: null,
  endedAt: null,
  note: null,
  // The API counts every kind, zeros included.
  counts: {
    maintenance: { done: 0, skipped: 0, failed: 0 },
    redeploy: { done: 3, skipped: 1, failed: 0 },
    deallocate: { done: 0, skipped: 0, failed: 0 },
    vip: { done: 0, skipped: 0, failed: 0 },
    crash: { done: 2, skipped: 0, failed: 0 },
  },
  next: { seq: 6, at: '2026-12-03T21:01:05.000Z', action: 'redeploy', target: 'contoso/shop/web1' },
  recent: [],
};

test('an event belongs to the chaos run its reason names, wherever in the reason', () => {
  assert.equal(chaosRunOf('chaos run 4f2a1c: redeploy'), '4f2a1c');
  assert.equal(chaosRunOf('no VM allocated any more (chaos run 4f2a1c: release-vip)'), '4f2a1c');
  assert.equal(chaosRunOf('maintenance of host rack1-host1'), null);
  assert.equal(chaosRunOf('redeploy'), null);
});

test('a running run reads as where, which rates, how many steps and what is next', () => {
  assert.equal(overWhat(run), 'subscription contoso');
  assert.equal(overWhat({ ...run, subscription: null }), 'the whole fabric');
  assert.equal(overWhat({ ...run, services: ['shop'] }), 'subscription contoso (shop)');
  assert.equal(ratesText(run), 'redeploy 4/min, crash 0.5/min');
  assert.equal(stepsDone(run), 5);
  assert.equal(nextText(run, Date.parse('2026-12-03T21:01:00.000Z')), 'redeploy contoso/shop/web1 in 5s');
  assert.equal(nextText(run, Date.parse('2026-12-03T21:01:05.200Z')), 'redeploy contoso/shop/web1 due now');
  assert.equal(nextText({ ...run, next: null }, 0), null);
  assert.equal(span(95_000), '1m35s');
});
