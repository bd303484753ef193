/**
 * The vocabulary of a chaos run and the parsing of what a person types for it: the kinds of weather,
 * rates such as `redeploy=4/min`, and durations such as `5m`. Pure; shared by the CLI, the API and
 * the runner.
 */
import type { ChaosRates } from '../core/api-shapes.ts';
import { CHAOS_KINDS, type ChaosKind } from '../core/chaos-kinds.ts';
import { VipdipError } from '../core/errors.ts';

export { CHAOS_KINDS, type ChaosKind } from '../core/chaos-kinds.ts';
/** Operations per minute of each kind; a kind left out (or 0) never happens. */
export type { ChaosRates } from '../core/api-shapes.ts';

/** The most of any one kind, and of all together: brisk enough for tests, bounded for the server. */
export const MAX_RATE_PER_MIN = 600;
export const MAX_DURATION_MS = 24 * 3600_000;
export const MAX_PAUSE_MS = 10 * 60_000;
/** How long a VM stays deallocated (and a service without its VIP) before chaos starts it again. */
export const DEFAULT_PAUSE_MS = 5000;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, min: 60_000, h: 3600_000 };
const PER_MIN: Record<string, number> = { s: 60, sec: 60, m: 1, min: 1, h: 1 / 60 };

export const isChaosKind = (s: string): s is ChaosKind => (CHAOS_KINDS as readonly string[]).includes(s);

/** `90s`, `5m`, `1h`, `500ms`, or a plain number of seconds → milliseconds. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d{1,9}(?:\.\d{1,3})?)(ms|s|m|min|h)?$/.exec(text.trim());
  if (m === null) {
    throw new VipdipError('INVALID_ARGUMENT', `${what} ${text}: expected a duration such as 90s, 5m or 1h`);
  }
  return Math.round(Number(m[1]) * UNIT_MS[m[2] ?? 's']!);
}

/**
 * `maintenance=1/min,redeploy=4/min,crash=0.5/s` → per-minute rates. Each kind at most once; a rate
 * is a positive number per second, minute or hour.
 */
export function parseRates(text: string): ChaosRates {
  const out: ChaosRates = {};
  const parts = text
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  if (parts.length === 0) throw new VipdipError('INVALID_ARGUMENT', 'rate: give at least one KIND=N/min');
  for (const p of parts) {
    const m = /^([a-z]+)=(\d{1,6}(?:\.\d{1,6})?)(?:\/(s|sec|m|min|h))?$/.exec(p);
    if (m === null) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `rate ${p}: expected KIND=N/min (or N/s, N/h), such as redeploy=4/min`,
      );
    }
    const kind = m[1]!;
    if (!isChaosKind(kind)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `rate ${p}: unknown kind ${kind} (kinds: ${CHAOS_KINDS.join(', ')})`,
      );
    }
    if (out[kind] !== undefined)
      throw new VipdipError('INVALID_ARGUMENT', `rate ${p}: ${kind} is given twice`);
    out[kind] = Number(m[2]) * PER_MIN[m[3] ?? 'min']!;
  }
  checkRates(out);
  return out;
}

/** Refuses rates that are negative, absurd or all zero (the API's body goes through this too). */
export function checkRates(rates: ChaosRates): void {
  let total = 0;
  for (const [kind, r] of Object.entries(rates)) {
    if (!isChaosKind(kind)) throw new VipdipError('INVALID_ARGUMENT', `rate of ${kind}: unknown kind`);
    if (typeof r !== 'number' || !Number.isFinite(r) || r < 0 || r > MAX_RATE_PER_MIN) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `rate of ${kind}: must be from 0 to ${MAX_RATE_PER_MIN} per minute`,
      );
    }
    total += r;
  }
  if (total <= 0) throw new VipdipError('INVALID_ARGUMENT', 'rates: at least one kind needs a rate above 0');
  if (total > MAX_RATE_PER_MIN) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `rates: ${total} per minute in all is above ${MAX_RATE_PER_MIN}`,
    );
  }
}

/** `redeploy=4/min, crash=2/min`: rates as a person reads them. */
export function formatRates(rates: ChaosRates): string {
  return CHAOS_KINDS.filter((k) => (rates[k] ?? 0) > 0)
    .map((k) => `${k}=${Number(rates[k]!.toFixed(3))}/min`)
    .join(', ');
}

/** 95000 → `1m35s`; for tables. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  return h > 0
    ? `${h}h${String(m).padStart(2, '0')}m`
    : m > 0
      ? `${m}m${String(r).padStart(2, '0')}s`
      : `${r}s`;
}
