/**
 * Chaos on the dashboard: which events a chaos run caused (their reason names it), and a running
 * run in words. Pure, so it is tested in Node beside this file.
 */
import type { ChaosRun } from '../../core/api-shapes.ts';

/** The run an event's reason names (`chaos run 4f2a1c: redeploy`, also inside parentheses), or null. */
export function chaosRunOf(reason: string): string | null {
  const m = /\bchaos run ([A-Za-z0-9-]+)/.exec(reason);
  return m === null ? null : m[1]!;
}

/** 95 000 ms → `1m35s`. */
export function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  const m = Math.floor(s / 60);
  return m > 0 ? `${m}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export function overWhat(r: ChaosRun): string {
  const where = r.subscription === null ? 'the whole fabric' : `subscription ${r.subscription}`;
  return r.services === null ? where : `${where} (${r.services.join(', ')})`;
}

export function ratesText(r: ChaosRun): string {
  return Object.entries(r.rates)
    .filter(([, v]) => (v ?? 0) > 0)
    .map(([k, v]) => `${k} ${Number((v ?? 0).toFixed(2))}/min`)
    .join(', ');
}

export function stepsDone(r: ChaosRun): number {
  return Object.values(r.counts).reduce((n, c) => n + c.done, 0);
}

/** `redeploy contoso/shop/web1 in 3s` (or `due now`); null when nothing is next. */
export function nextText(r: ChaosRun, nowMs: number): string | null {
  if (r.next === null) return null;
  const wait = Date.parse(r.next.at) - nowMs;
  return `${r.next.action} ${r.next.target} ${wait > 500 ? `in ${span(wait)}` : 'due now'}`;
}
