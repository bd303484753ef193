/**
 * The one place where concrete implementations are chosen and wired: which store, which random
 * source, which clock, which defaults.
 */
import { chmodSync, existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { systemClock, type Clock } from './core/clock.ts';
import { VipdipError } from './core/errors.ts';
import { randomSeed, SeededRandom } from './core/random.ts';
import { Cloud, type CloudOptions } from './lifecycle/index.ts';
import { SqliteStore, type Store } from './store/index.ts';

export const DEFAULT_STATE_DIR = '.vipdip';
export const STATE_DB = 'state.db';
/** The `local` driver's default public pool (SPEC.md §7). */
export const DEFAULT_LOCAL_POOL = '127.100.0.0/16';

export interface StateOptions {
  stateDir?: string;
  /** A store URL; only the embedded SQLite store (`sqlite:PATH` or a path) is built in so far. */
  store?: string;
  seed?: number;
  clock?: Clock;
  defaultPublicPools?: readonly string[];
  publicZone?: string;
  internalZone?: string;
  /** The data-plane driver's check of the address plan (see CloudOptions.checkAddressPlan). */
  checkAddressPlan?: CloudOptions['checkAddressPlan'];
}

export interface OpenState {
  store: Store;
  cloud: Cloud;
  seed: number;
  dbPath: string;
  close(): Promise<void>;
}

/** Resolves where the SQLite file lives, creating the state directory (mode 0700) if needed. */
export function sqlitePath(opts: Pick<StateOptions, 'stateDir' | 'store'>): string {
  if (opts.store !== undefined) {
    if (/^postgres(ql)?:/.test(opts.store)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        'the PostgreSQL store is not available in this build yet; use the embedded SQLite store',
      );
    }
    return resolve(opts.store.replace(/^sqlite:/, ''));
  }
  const dir = resolve(opts.stateDir ?? DEFAULT_STATE_DIR);
  if (!existsSync(dir)) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  }
  return join(dir, STATE_DB);
}

export async function openState(opts: StateOptions = {}): Promise<OpenState> {
  const dbPath = sqlitePath(opts);
  const store = await SqliteStore.open(dbPath);
  const seed = opts.seed ?? randomSeed();
  try {
    const cloud = await Cloud.open(store, {
      random: new SeededRandom(seed),
      clock: opts.clock ?? systemClock,
      defaultPublicPools: opts.defaultPublicPools ?? [DEFAULT_LOCAL_POOL],
      ...(opts.publicZone !== undefined ? { publicZone: opts.publicZone } : {}),
      ...(opts.internalZone !== undefined ? { internalZone: opts.internalZone } : {}),
      ...(opts.checkAddressPlan !== undefined ? { checkAddressPlan: opts.checkAddressPlan } : {}),
    });
    return { store, cloud, seed, dbPath, close: () => store.close() };
  } catch (e) {
    await store.close();
    throw e;
  }
}
