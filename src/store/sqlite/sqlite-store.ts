import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import type { SqliteDatabase, SqliteStatement } from 'kysely';
import { migrations } from '../migrations/index.ts';
import type { Database } from '../schema.ts';
import { Repo, type Store } from '../store.ts';

/**
 * Kysely asks its SQLite handle only for `prepare` and `close` (the smallest interface); we hand it
 * one that caches prepared statements by SQL text, since preparing costs more than running the
 * short statements of a lifecycle operation.
 */
function cachingHandle(db: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, SqliteStatement>();
  return {
    prepare(sql: string): SqliteStatement {
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

  private constructor(
    readonly path: string,
    readonly raw: BetterSqlite3.Database,
    private readonly db: Kysely<Database>,
  ) {}

  static async open(path: string, opts: SqliteStoreOptions = {}): Promise<SqliteStore> {
    const raw = new BetterSqlite3(path);
    raw.pragma('journal_mode = WAL');
    raw.pragma(`synchronous = ${opts.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
    raw.pragma('foreign_keys = ON');
    raw.pragma('busy_timeout = 5000');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: cachingHandle(raw) }) });
    const { error } = await new Migrator({ db, provider: migrations('sqlite') }).migrateToLatest();
    if (error !== undefined) {
      await db.destroy();
      throw error instanceof Error ? error : new Error('migration failed', { cause: error });
    }
    return new SqliteStore(path, raw, db);
  }

  async write<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    let repo: Repo | undefined;
    try {
      return await this.db.transaction().execute((trx) => {
        repo = new Repo(trx);
        return fn(repo);
      });
    } catch (e) {
      repo?.rollbackMemory();
      throw e;
    }
  }

  read<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    return fn(new Repo(this.db));
  }

  async close(): Promise<void> {
    await this.db.destroy();
  }
}
