import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { migrations } from '../migrations/index.ts';
import type { Database } from '../schema.ts';
import { Repo, RunAgain, type Store } from '../store.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import { Prepared, SqliteRepo } from './sqlite-repo.ts';

/** A function that asks to run again (RunAgain) is run at most this many times. */
const MAX_RUNS = 3;

/**
 * Checkpoints (copying the WAL back into the database file, with a sync of each) run once a second
 * on a thread of their own (checkpointer.ts), not inside whichever commit crosses SQLite's default
 * threshold of 1,000 WAL pages: a VM operation writes about 10 pages, so that was a checkpoint every
 * hundred commits, and a quarter of the time of deallocate+start cycles (profiled). Once a second
 * copies each hot page once instead of twenty times. Durability is unchanged: a commit is in the WAL
 * (synchronous=NORMAL, as before) whenever it is checkpointed; a crash replays the WAL on open.
 */
const CHECKPOINT_INTERVAL_MS = 1000;
/** SQLite still checkpoints by itself beyond this many WAL pages (32 MiB), should the thread lag. */
const WAL_AUTOCHECKPOINT_PAGES = 8192;

/**
 * Kysely asks its SQLite handle only for `prepare` and `close` (the smallest interface); we hand it
 * one that caches prepared statements by SQL text, since preparing costs more than running the
 * short statements of a lifecycle operation.
 */
function cachingHandle(db: BetterSqlite3.Database, count: { statements: number }): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    prepare(sql: string): SqliteStatement {
      // Kysely prepares once per execution, so this counts the statements run.
      count.statements++;
      let s = cache.get(sql);
      if (s === undefined) {
        s = db.prepare(sql);
        if (cache.size < 2000) cache.set(sql, s);
      }
      return s;
    },
    close: () => db.close(),
  };
}

export interface SqliteStoreOptions {
  /** `full` makes every commit durable against power loss, at the price of an fsync per commit. */
  synchronous?: 'normal' | 'full';
}

/** The embedded store: one SQLite file in WAL mode. */
export class SqliteStore implements Store {
  readonly dialect = 'sqlite' as const;

  /** Started by the first write: a store that only reads (fsck, a CLI command) starts no thread. */
  private checkpointer: Checkpointer | undefined;

  private constructor(
    readonly path: string,
    readonly raw: BetterSqlite3.Database,
    private readonly db: Kysely<Database>,
    private readonly count: { statements: number },
    private readonly prepared: Prepared,
    private readonly synchronous: 'NORMAL' | 'FULL',
  ) {}

  get statements(): number {
    return this.count.statements;
  }

  static async open(path: string, opts: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const raw = new BetterSqlite3(path);
    raw.pragma('journal_mode = WAL');
    raw.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    raw.pragma('foreign_keys = ON');
    raw.pragma('busy_timeout = 5000');
    raw.pragma(`wal_autocheckpoint = ${WAL_AUTOCHECKPOINT_PAGES}`);
    const count = { statements: 0 };
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingHandle(raw, count) }) });
    const { error } = await new Migrator({ db, provider: migrations('sqlite') }).migrateToLatest();
    if (error !== undefined) {
      await db.destroy();
      throw error instanceof Error ? error : new Error('migration failed', { cause: error });
    }
    const synchronous = opts.synchronous === 'full' ? 'FULL' : 'NORMAL';
    return new SqliteStore(path, raw, db, count, new Prepared(raw, count), synchronous);
  }

  async write<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    if (this.checkpointer === undefined && !this.raw.memory) {
      this.checkpointer = startCheckpointer(this.path, {
        intervalMs: CHECKPOINT_INTERVAL_MS,
        synchronous: this.synchronous,
      });
    }
    for (let attempt = 1; ; attempt++) {
      let repo: Repo | undefined;
      try {
        return await this.db.transaction().execute((trx) => {
          repo = new SqliteRepo(trx, this.prepared);
          return fn(repo);
        });
      } catch (e) {
        repo?.rollbackMemory();
        if (e instanceof RunAgain && attempt < MAX_RUNS) continue;
        throw e;
      }
    }
  }

  read<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    return fn(new Repo(this.db));
  }

  /** A deferred transaction: in WAL mode its reads share one snapshot. */
  snapshot<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    return this.db.transaction().execute((trx) => fn(new SqliteRepo(trx, this.prepared)));
  }

  async close(): Promise<void> {
    await this.checkpointer?.stop();
    await this.db.destroy();
  }
}
