/**
 * The one place where concrete implementations are chosen and wired: which store, which random
 * source, which clock, which defaults.
 */
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, statSync } from 'node:fs';
import { OPERATOR_TOKEN_FILE } from './core/state-files.ts';
import { dirname, join, resolve } from 'node:path';
import { systemClock, type Clock } from './core/clock.ts';
import { VipdipError } from './core/errors.ts';
import { randomSeed, SeededRandom } from './core/random.ts';
import { Cloud, type CloudOptions } from './lifecycle/index.ts';
import { PostgresStore, SqliteStore, type Store } from './store/index.ts';

export const DEFAULT_STATE_DIR = '.vipdip';
export const STATE_DB = 'state.db';
/** The `local` driver's default public pool (SPEC.md §7). */
export const DEFAULT_LOCAL_POOL = '127.100.0.0/16';

/** The environment variable that names the store when --store does not (the flag wins). */
export const STORE_ENV = 'VIPDIP_STORE';

export interface StateOptions {
  stateDir?: string;
  /**
   * Where the state lives: `sqlite:PATH`, a plain PATH (SQLite), or `postgres://…` /
   * `postgresql://…` (several replicas can share it). Default: VIPDIP_STORE, else SQLite in the
   * state directory.
   */
  store?: string;
  /** The environment to read VIPDIP_STORE from (default process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  seed?: number;
  clock?: Clock;
  defaultPublicPools?: readonly string[];
  publicZone?: string;
  internalZone?: string;
  /** The data-plane driver's check of the address plan (see CloudOptions.checkAddressPlan). */
  checkAddressPlan?: CloudOptions['checkAddressPlan'];
  /** Failures of background work (following the other replicas). */
  onError?: (e: unknown) => void;
}

export interface OpenState {
  store: Store;
  cloud: Cloud;
  seed: number;
  /** Where the state is, for people: the SQLite file, or the PostgreSQL URL without its password. */
  location: string;
  /** The directory of the operator token file. */
  tokenDir: string;
  close(): Promise<void>;
}

export type StoreChoice = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string };

const isPostgresUrl = (s: string) => /^postgres(ql)?:\/\//.test(s);

/**
 * Creates a state directory (mode 0700) if needed, narrows one found wider, and returns its absolute
 * path. The state holds every tenant's resources and the operator token: nobody else on the host
 * reads it.
 */
function stateDirectory(dir: string | undefined): string {
  const abs = resolve(dir ?? DEFAULT_STATE_DIR);
  if (!existsSync(abs)) {
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    chmodSync(abs, 0o700);
  } else tighten(abs, 0o700);
  return abs;
}

/** Where the one-line notices of files made private go (stderr unless a test says otherwise). */
let noticeSink: (line: string) => void = (line) => process.stderr.write(`vipdip: ${line}\n`);
export function setNoticeSink(sink: (line: string) => void): void {
  noticeSink = sink;
}

/**
 * Narrows a file or directory that others may read or write to `mode` (0600 or 0700), saying so once.
 * Returns whether it changed anything. A missing path is left alone.
 */
export function tighten(path: string, mode: number): boolean {
  let now: number;
  try {
    now = statSync(path).mode & 0o777;
  } catch {
    return false;
  }
  if ((now & 0o077) === 0) return false;
  chmodSync(path, mode);
  noticeSink(
    `${path} was mode ${now.toString(8).padStart(4, '0')}; made it ${mode.toString(8).padStart(4, '0')}`,
  );
  return true;
}

/** The SQLite database and its WAL and shared-memory files. */
const sqliteFiles = (db: string) => [db, `${db}-wal`, `${db}-shm`];

/** Which store the options name: --store, else VIPDIP_STORE, else SQLite in the state directory. */
export function chooseStore(opts: Pick<StateOptions, 'stateDir' | 'store' | 'env'>): StoreChoice {
  const env = opts.env ?? process.env;
  const spec = opts.store ?? (env[STORE_ENV] === '' ? undefined : env[STORE_ENV]);
  if (spec === undefined) return { kind: 'sqlite', path: join(stateDirectory(opts.stateDir), STATE_DB) };
  if (isPostgresUrl(spec)) {
    try {
      new URL(spec);
    } catch {
      throw new VipdipError('INVALID_ARGUMENT', `store ${redact(spec)}: not a valid PostgreSQL URL`);
    }
    return { kind: 'postgres', url: spec };
  }
  if (!spec.startsWith('sqlite:') && /^[a-z][a-z0-9+.-]*:\/\//i.test(spec)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `store ${redact(spec)}: expected sqlite:PATH, a file path, or postgres://USER@HOST:PORT/DATABASE`,
    );
  }
  const path = spec.replace(/^sqlite:(\/\/(?=\/))?/, '');
  if (path === '') throw new VipdipError('INVALID_ARGUMENT', 'store sqlite: needs a file path');
  return { kind: 'sqlite', path: resolve(path) };
}

/** A URL fit to print: the password, if any, is replaced. */
export function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^:/@]+):[^@]*@/, '//$1:***@');
  }
}

/** Opens only the store the options name (migrated), for tools that need no control plane. */
export async function openStore(
  opts: Pick<StateOptions, 'stateDir' | 'store' | 'env'>,
): Promise<{ store: Store; location: string; tokenDir: string }> {
  const choice = chooseStore(opts);
  if (choice.kind === 'sqlite') {
    // SQLite creates the WAL and shared-memory files with the database file's mode: a private
    // database before opening keeps all three private.
    for (const f of sqliteFiles(choice.path)) tighten(f, 0o600);
    if (!existsSync(choice.path)) closeSync(openSync(choice.path, 'a', 0o600));
    const store = await SqliteStore.open(choice.path);
    for (const f of sqliteFiles(choice.path)) tighten(f, 0o600);
    tighten(join(dirname(choice.path), OPERATOR_TOKEN_FILE), 0o600);
    return { store, location: choice.path, tokenDir: dirname(choice.path) };
  }
  const tokenDir = stateDirectory(opts.stateDir);
  tighten(join(tokenDir, OPERATOR_TOKEN_FILE), 0o600);
  return { store: await PostgresStore.open(choice.url), location: redact(choice.url), tokenDir };
}

export async function openState(opts: StateOptions = {}): Promise<OpenState> {
  const { store, location, tokenDir } = await openStore(opts);
  const seed = opts.seed ?? randomSeed();
  try {
    const cloud = await Cloud.open(store, {
      random: new SeededRandom(seed),
      clock: opts.clock ?? systemClock,
      defaultPublicPools: opts.defaultPublicPools ?? [DEFAULT_LOCAL_POOL],
      ...(opts.publicZone !== undefined ? { publicZone: opts.publicZone } : {}),
      ...(opts.internalZone !== undefined ? { internalZone: opts.internalZone } : {}),
      ...(opts.checkAddressPlan !== undefined ? { checkAddressPlan: opts.checkAddressPlan } : {}),
      ...(opts.onError !== undefined ? { onError: opts.onError } : {}),
    });
    return {
      store,
      cloud,
      seed,
      location,
      tokenDir,
      close: async () => {
        cloud.close();
        await store.close();
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}
