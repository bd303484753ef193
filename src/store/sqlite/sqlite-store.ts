import BetterSqlite3 from 'better-sqlite3';
import { Kysely, Migrator, SqliteDialect } from 'kysely';
import type { SqliteDatabase, SqliteStatement, Transaction } from 'kysely';
import { migrations } from '../migrations/index.ts';
import type { Database } from '../schema.ts';
import { Repo, RunAgain, type Store } from '../store.ts';
import { startCheckpointer, type Checkpointer } from './checkpointer.ts';
import { Prepared, SqliteRepo } from './sqlite-repo.ts';

/** A function that asks to run again (RunAgain) is run at most this many times. */
const MAX_RUNS = 3;

/**
 * Checkpoints (copying the WAL back into the database file, with a sync of each) run four times a
 * second on a thread of their own (checkpointer.ts), not inside whichever commit crosses SQLite's
 * threshold: a checkpoint in a commit stalls the event loop for its syncs, tens of milliseconds on
 * ext4. The thread's interval keeps the WAL below the threshold at any rate this process reaches:
 * at 2,000 VM operations a second (about six WAL pages each) an interval of one second let the WAL
 * pass 8,192 pages every ~0.7 s, and each of those commits checkpointed in the event loop's thread
 * (14–36 ms stalls, p99 21 ms at 2,000 req/s; 11–12 ms at 250 ms and 32,768 pages, with no stall
 * left from checkpoints). A hot page is still copied a few times a second rather than once per
 * hundred commits. Durability is unchanged: a commit is in the WAL (synchronous=NORMAL, as before)
 * whenever it is checkpointed; a crash replays the WAL on open.
 */
const CHECKPOINT_INTERVAL_MS = 250;
/** SQLite still checkpoints by itself beyond this many WAL pages (128 MiB), should the thread lag. */
const WAL_AUTOCHECKPOINT_PAGES = 32_768;

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

/**
 * Group commit. A VM operation writes about 10 WAL pages at its commit, most of them the same
 * pages as the next operation's (the tails of the events table and of its indexes, the VM's and
 * the bindings' index pages): concurrent writes committed together write each page once. A group
 * holds at most this many writes…
 */
const GROUP_MAX_WRITES = 64;
/** …and waits for more at most this long after its first write began (turns of the event loop). */
const GROUP_MAX_WAIT_MS = 3;

interface PendingWrite {
  fn: (repo: Repo) => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
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

  /** Writes waiting for a group, oldest first. */
  private readonly queue: PendingWrite[] = [];
  /** The loop that runs groups while writes wait, if it runs (it takes the queue). */
  private grouping: Promise<void> | undefined;
  private readonly groupStats = { commits: 0, writes: 0 };
  private readonly savepoint: BetterSqlite3.Statement;
  private readonly release: BetterSqlite3.Statement;
  private readonly rollbackTo: BetterSqlite3.Statement;
  private readonly rollbackAll: BetterSqlite3.Statement;
  private readonly begin: BetterSqlite3.Statement;

  private constructor(
    readonly path: string,
    readonly raw: BetterSqlite3.Database,
    private readonly db: Kysely<Database>,
    private readonly count: { statements: number },
    private readonly prepared: Prepared,
    private readonly synchronous: 'NORMAL' | 'FULL',
  ) {
    this.savepoint = raw.prepare('SAVEPOINT write');
    this.release = raw.prepare('RELEASE write');
    this.rollbackTo = raw.prepare('ROLLBACK TO write');
    this.rollbackAll = raw.prepare('ROLLBACK');
    this.begin = raw.prepare('BEGIN');
  }

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
    // Savepoints (group commit) keep their pages' old contents in a statement journal: in memory,
    // rather than in a temporary file once past 64 KiB.
    raw.pragma('temp_store = MEMORY');
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

  /** Transactions committed that wrote something: a group of concurrent writes is one. */
  get commits(): number {
    return this.groupStats.commits;
  }

  /** Writes committed (each in its group's commit); `writes / commits` is the group size. */
  get writes(): number {
    return this.groupStats.writes;
  }

  /**
   * Runs `fn` as one write. Writes that arrive while another is running, or while its group waits
   * to commit, join that group: one SQLite transaction in which each write runs in a savepoint of
   * its own, committed once (see GROUP_MAX_WRITES). A write's promise settles only after its group
   * committed: nothing is acknowledged before it is in the WAL, and a write that failed rolled back
   * its savepoint alone.
   */
  write<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    if (this.checkpointer === undefined && !this.raw.memory) {
      this.checkpointer = startCheckpointer(this.path, {
        intervalMs: CHECKPOINT_INTERVAL_MS,
        synchronous: this.synchronous,
      });
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ fn, resolve: resolve as (v: unknown) => void, reject });
      this.grouping ??= this.runGroups();
    });
  }

  /** Runs groups until no write waits. One group at a time: they share the one connection. */
  private async runGroups(): Promise<void> {
    try {
      while (this.queue.length > 0) await this.runGroup();
    } finally {
      this.grouping = undefined;
    }
  }

  /**
   * One group: takes the connection (Kysely's transaction, so reads outside it wait for the commit
   * and never see a write not yet committed), runs the waiting writes one after another, each in a
   * savepoint, and goes on with writes that arrive meanwhile until the group is full, has waited
   * long enough, or a turn of the event loop brought none; then commits and settles every write of
   * the group, in the order they ran (their events are published in that order, which is their
   * sequence order).
   */
  private async runGroup(): Promise<void> {
    const ran: { w: PendingWrite; repo?: SqliteRepo; ok: boolean; value?: unknown; error?: unknown }[] = [];
    try {
      await this.db.transaction().execute(async (trx) => {
        const started = performance.now();
        for (;;) {
          while (this.queue.length > 0 && ran.length < GROUP_MAX_WRITES) {
            const w = this.queue.shift()!;
            ran.push(await this.runOne(trx, w, ran.length === 0));
            if (!this.raw.inTransaction) {
              // SQLite rolled the whole transaction back (an I/O error, a full disk): every write
              // of the group is lost with it, and the commit below fails for all of them.
              throw new Error('the group transaction was rolled back by SQLite');
            }
          }
          if (ran.length >= GROUP_MAX_WRITES || performance.now() - started >= GROUP_MAX_WAIT_MS) break;
          // Let this turn's I/O run: requests read in it may bring writes to this group.
          await new Promise<void>((r) => setImmediate(r));
          if (this.queue.length === 0) break;
        }
      });
    } catch (e) {
      // The commit (or the group) failed: nothing of it is in the database.
      for (let i = ran.length - 1; i >= 0; i--) ran[i]!.repo?.rollbackMemory();
      for (const r of ran) r.w.reject(r.ok ? e : r.error);
      // No transaction at all (the store is closed): the waiting writes fail with it, rather than
      // wait for a connection that will not come back.
      if (ran.length === 0) for (const w of this.queue.splice(0)) w.reject(e);
      return;
    }
    // A group whose writes all failed committed an empty transaction: nothing was written, so it
    // is not counted as a commit (writes / commits stays the size of the groups that wrote).
    const wrote = ran.filter((r) => r.ok).length;
    if (wrote > 0) this.groupStats.commits++;
    this.groupStats.writes += wrote;
    for (const r of ran) {
      if (r.ok) r.w.resolve(r.value);
      else r.w.reject(r.error);
    }
  }

  /**
   * One write in its savepoint: released when `fn` succeeds, rolled back when it throws. The first
   * write of a group needs none: the transaction holds nothing else, so rolling the whole of it back
   * (and beginning again) undoes that write alone. A savepoint costs its pages' old contents in a
   * statement journal, which for one large write (an apply of 10,000 VMs) is most of the database.
   */
  private async runOne(
    trx: Transaction<Database>,
    w: PendingWrite,
    first: boolean,
  ): Promise<{ w: PendingWrite; repo?: SqliteRepo; ok: boolean; value?: unknown; error?: unknown }> {
    for (let attempt = 1; ; attempt++) {
      const repo = new SqliteRepo(trx, this.prepared);
      if (!first) this.savepoint.run();
      try {
        const value = await w.fn(repo);
        if (!first) this.release.run();
        return { w, repo, ok: true, value };
      } catch (e) {
        if (this.raw.inTransaction) {
          if (first) {
            this.rollbackAll.run();
            this.begin.run();
          } else {
            this.rollbackTo.run();
            this.release.run();
          }
        }
        repo.rollbackMemory();
        if (e instanceof RunAgain && attempt < MAX_RUNS && this.raw.inTransaction) continue;
        return { w, ok: false, error: e };
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
    // Writes already asked for commit (or fail) before the connection goes.
    while (this.grouping !== undefined) await this.grouping;
    await this.checkpointer?.stop();
    await this.db.destroy();
  }
}
