/**
 * The store for several control-plane replicas: PostgreSQL through node-postgres and Kysely's
 * PostgresDialect, on the same migrations and the same `Repo` as SQLite. See
 * docs/designs/2026-12-02-replicas-over-postgresql.md for why writes run at READ COMMITTED with row
 * locks, how events are numbered and how replicas follow each other.
 */
import { randomBytes } from 'node:crypto';
import { Kysely, Migrator, PostgresDialect, sql, type PostgresPool, type PostgresPoolClient } from 'kysely';
import pg from 'pg';
import { VipdipError, isVipdipError } from '../../core/errors.ts';
import { migrations } from '../migrations/index.ts';
import type { Database } from '../schema.ts';
import { RunAgain, type EventRow, type Repo, type Store } from '../store.ts';
import { COMMIT_WITH_EVENTS, EVENTS_CHANNEL, PostgresRepo } from './postgres-repo.ts';

/** Session advisory lock held while migrating, so that replicas starting together migrate once. */
const MIGRATION_LOCK_KEY = 7_480_000;
/** A transaction that lost a race is tried again this many times in all. */
const MAX_WRITE_ATTEMPTS = 12;
const RETRY_BASE_MS = 2;
const RETRY_MAX_MS = 50;
/** A request waits at most this long for a connection: past it, the store is unavailable. */
const CONNECT_TIMEOUT_MS = 3000;
/** While the LISTEN connection is down, it is tried again after this long, doubling up to the max. */
const LISTEN_RETRY_MS = 100;
const LISTEN_RETRY_MAX_MS = 2000;
/** Followers also look for new events this often, should a wake-up ever be lost. */
const POLL_INTERVAL_MS = 1000;

/** SQLSTATEs of a transaction that lost a race the database detected; running it again decides it. */
const RACE_CODES = new Set([
  '40001', // serialization_failure
  '40P01', // deadlock_detected
  '23505', // unique_violation: another writer inserted the same key first
  '23503', // foreign_key_violation: another writer deleted (or referenced) the parent first
]);

export interface PostgresStoreOptions {
  /** Connections of this process to the database (default 10). */
  poolSize?: number;
  connectTimeoutMs?: number;
}

const isDatabaseError = (e: unknown): e is pg.DatabaseError => e instanceof pg.DatabaseError;

/** Connection-level failures: the server is down, restarting, shutting down or out of connections. */
function isUnavailableCode(code: string | undefined): boolean {
  return code !== undefined && (code.startsWith('08') || code.startsWith('57P') || code.startsWith('53'));
}

function unavailable(e: unknown): VipdipError {
  const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
  return new VipdipError('UNAVAILABLE', `the PostgreSQL store cannot be reached (${why}); try again shortly`);
}

/**
 * Errors of the driver itself (no SQLSTATE: refused, reset, timed out) and connection-class
 * SQLSTATEs become UNAVAILABLE where they happen, so that a bug in our own code is never mistaken
 * for an outage.
 */
function classify(e: unknown): unknown {
  if (isVipdipError(e)) return e;
  if (isDatabaseError(e)) return isUnavailableCode(e.code) ? unavailable(e) : e;
  return unavailable(e);
}

/** OID of int8 (bigint): ids, addresses and counts, all well below 2^53. */
const INT8_OID = 20;
const parseInt8 = (v: string): number => Number(v);

/** int8 as numbers; every other type as node-postgres parses it. */
const types = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === INT8_OID
      ? parseInt8
      : (pg.types.getTypeParser as (o: number, f: string) => unknown)(
          oid,
          format ?? 'text',
        )) as typeof pg.types.getTypeParser,
};

/**
 * Statements are prepared once per connection under a name per SQL text: the server parses and
 * plans a lifecycle operation's joins once instead of on every call (measured: most of the time
 * of a short join). Only data statements, and a bounded number of texts.
 */
const MAX_PREPARED = 1000;
const PREPARABLE = /^\s*(select|insert|update|delete|with)\b/i;

class StatementNames {
  private readonly names = new Map<string, string>();
  of(text: string): string | undefined {
    let name = this.names.get(text);
    if (name === undefined && this.names.size < MAX_PREPARED && PREPARABLE.test(text)) {
      name = `vipdip_${this.names.size}`;
      this.names.set(text, name);
    }
    return name;
  }
}

/** Hands Kysely clients whose queries are counted and whose connection failures are classified. */
function countingPool(pool: pg.Pool, count: { statements: number }): PostgresPool {
  const names = new StatementNames();
  return {
    async connect(): Promise<PostgresPoolClient> {
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (e) {
        throw classify(e);
      }
      // The pool listens for errors of idle connections only. One that breaks while checked out
      // (the server shut down mid-query) fails its query, which we report; the 'error' event it
      // also emits must not bring the process down.
      // A connection that failed so is also closed rather than handed out again.
      let broken = false;
      const ignore = () => {
        broken = true;
      };
      client.on('error', ignore);
      // Set once a transaction committed with its events (PostgresRepo.appendEvents): until the
      // next BEGIN, a statement would run outside any transaction, so it is refused.
      let ended = false;
      return {
        query: (async (text: string, params: readonly unknown[]) => {
          count.statements++;
          if (ended && !/^(begin|commit|rollback)$/i.test(text))
            throw new Error('internal: a statement after its transaction committed with its events');
          if (text === 'begin') ended = false;
          try {
            if (text.endsWith(COMMIT_WITH_EVENTS)) {
              // Several statements (no parameters, never prepared): the answer is the first's.
              const all = (await client.query(text)) as unknown as pg.QueryResult | pg.QueryResult[];
              ended = true;
              return Array.isArray(all) ? all[0] : all;
            }
            const name = names.of(text);
            return name === undefined
              ? await client.query(text, params as unknown[])
              : await client.query({ name, text, values: params as unknown[] });
          } catch (e) {
            const c = classify(e);
            if (isVipdipError(c, 'UNAVAILABLE')) broken = true;
            throw c;
          }
        }) as unknown as PostgresPoolClient['query'],
        release: (destroy?: boolean) => {
          client.off('error', ignore);
          client.release(destroy === true || broken ? true : undefined);
        },
      };
    },
    end: () => pool.end(),
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class PostgresStore implements Store {
  readonly dialect = 'postgres' as const;
  /** Tells this process's NOTIFYs from the other replicas'. */
  readonly origin = randomBytes(8).toString('hex');
  private readonly wakers = new Set<(events?: readonly EventRow[]) => void>();
  private listener: { stop(): void } | undefined;
  private closed = false;
  retries = 0;
  /** Transactions PostgreSQL rolled back to break a deadlock (each also counts as a retry). */
  deadlocks = 0;

  private constructor(
    readonly url: string,
    private readonly pool: pg.Pool,
    private readonly db: Kysely<Database>,
    private readonly count: { statements: number },
  ) {}

  get statements(): number {
    return this.count.statements;
  }

  static async open(url: string, opts: PostgresStoreOptions = {}): Promise<PostgresStore> {
    const pool = new pg.Pool({
      connectionString: url,
      max: opts.poolSize ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
      application_name: 'vipdip',
      types,
    });
    // An idle connection the server closed (restart, outage) only warns here: the pool drops it
    // and the next request opens a new one.
    pool.on('error', () => {});
    const count = { statements: 0 };
    const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool: countingPool(pool, count) }) });
    try {
      await migrate(pool, db);
    } catch (e) {
      await db.destroy();
      throw classify(e);
    }
    return new PostgresStore(url, pool, db, count);
  }

  async write<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      let repo: PostgresRepo | undefined;
      try {
        // BEGIN, COMMIT and ROLLBACK by hand rather than Kysely's transaction(): a transaction that
        // appends events commits in the same message as its last statement (PostgresRepo), and
        // then needs no COMMIT of its own.
        return await this.db.connection().execute(async (conn) => {
          await sql`begin`.execute(conn);
          const r = new PostgresRepo(conn, { lock: true }, this.origin, true);
          repo = r;
          let result: T;
          try {
            result = await fn(r);
          } catch (e) {
            if (!r.committed) await sql`rollback`.execute(conn);
            throw e;
          }
          if (!r.committed) await sql`commit`.execute(conn);
          return result;
        });
      } catch (e) {
        repo?.rollbackMemory();
        if (e instanceof RunAgain && attempt < MAX_WRITE_ATTEMPTS) continue;
        if (attempt < MAX_WRITE_ATTEMPTS && isDatabaseError(e) && RACE_CODES.has(e.code ?? '')) {
          // Jittered, growing pause, so that the writers that collided do not collide again.
          this.retries++;
          if (e.code === '40P01') this.deadlocks++;
          const cap = Math.min(RETRY_MAX_MS, RETRY_BASE_MS << attempt);
          await sleep(Math.random() * cap);
          continue;
        }
        throw e;
      }
    }
  }

  async read<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    return fn(new PostgresRepo(this.db, {}, this.origin));
  }

  snapshot<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    return this.db
      .transaction()
      .setIsolationLevel('repeatable read')
      .setAccessMode('read only')
      .execute((trx) => fn(new PostgresRepo(trx, {}, this.origin)));
  }

  watch(wake: (events?: readonly EventRow[]) => void): () => void {
    this.wakers.add(wake);
    this.listener ??= this.listen();
    return () => {
      this.wakers.delete(wake);
      if (this.wakers.size === 0) {
        this.listener?.stop();
        this.listener = undefined;
      }
    };
  }

  private wakeAll(events?: readonly EventRow[]): void {
    for (const w of this.wakers) w(events);
  }

  /**
   * One connection LISTENs for the other replicas' commits. When it is lost it is opened again,
   * and every (re)connection wakes the followers, which read whatever they missed by sequence
   * number: a notification is only a wake-up, never the data. A timer wakes them too.
   */
  private listen(): { stop(): void } {
    let stopped = false;
    let current: pg.Client | undefined;
    let interrupt: (() => void) | undefined;
    const poll = setInterval(() => this.wakeAll(), POLL_INTERVAL_MS);
    poll.unref();
    void (async () => {
      let delay = LISTEN_RETRY_MS;
      while (!stopped) {
        const client = new pg.Client({
          connectionString: this.url,
          application_name: 'vipdip-listen',
          types,
        });
        current = client;
        const ended = new Promise<void>((res) => {
          interrupt = res;
          client.once('error', () => res());
          client.once('end', () => res());
        });
        try {
          await client.connect();
          client.on('notification', (n) => {
            const payload = n.payload ?? '';
            if (n.channel !== EVENTS_CHANNEL || payload.startsWith(`${this.origin} `)) return;
            this.wakeAll(parseNotification(payload));
          });
          await client.query(`listen ${EVENTS_CHANNEL}`);
          delay = LISTEN_RETRY_MS;
          this.wakeAll();
          await ended;
        } catch {
          // Down: try again below.
        }
        current = undefined;
        await client.end().catch(() => {});
        if (stopped) break;
        await new Promise<void>((res) => {
          interrupt = res;
          setTimeout(res, delay).unref();
        });
        delay = Math.min(LISTEN_RETRY_MAX_MS, delay * 2);
      }
    })();
    return {
      stop: () => {
        stopped = true;
        clearInterval(poll);
        interrupt?.();
        void current?.end().catch(() => {});
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.listener?.stop();
    this.listener = undefined;
    this.wakers.clear();
    await this.db.destroy();
  }
}

type NotifiedRow = [
  number,
  string,
  string,
  string | null,
  string,
  string,
  string | null,
  string | null,
  string | null,
];

/** The events a notification carries, or undefined when it carries only a wake-up. */
function parseNotification(payload: string): EventRow[] | undefined {
  const json = payload.slice(payload.indexOf(' ') + 1);
  if (!json.startsWith('[')) return undefined;
  try {
    return (JSON.parse(json) as NotifiedRow[]).map(
      ([seq, time, type, subscription, resource, reason, old, neu, changes]) => ({
        seq,
        time,
        type,
        subscription,
        resource,
        reason,
        old,
        new: neu,
        changes,
      }),
    );
  } catch {
    return undefined; // the table has them
  }
}

/** Migrations under a session advisory lock: a replica that waited finds them applied. */
async function migrate(pool: pg.Pool, db: Kysely<Database>): Promise<void> {
  const client = await pool.connect();
  try {
    await client.query('select pg_advisory_lock($1)', [MIGRATION_LOCK_KEY]);
    try {
      const { error } = await new Migrator({ db, provider: migrations('postgres') }).migrateToLatest();
      if (error !== undefined)
        throw error instanceof Error ? error : new Error('migration failed', { cause: error });
    } finally {
      await client.query('select pg_advisory_unlock($1)', [MIGRATION_LOCK_KEY]).catch(() => {});
    }
  } finally {
    client.release();
  }
}
