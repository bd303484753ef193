/**
 * The SQLite repo: the shared `Repo`, with the statements of the hottest path (a VM's start and
 * deallocation) run as prepared statements on the connection itself. A CPU profile of 1,000
 * deallocate+start cycles per second put about a fifth of the time in Kysely building and compiling
 * the same few queries again for every call, and a few more promise hops per query in its executor;
 * these methods skip both. They run on the very connection Kysely holds, so they are used only inside
 * a transaction (write or snapshot), which holds that connection: there they are part of it. A
 * plain read outside any transaction keeps the shared Repo, whose queries wait for the connection.
 *
 * The statements are hot-statements.ts's (shared with the PostgreSQL repo), each the SQL Kysely
 * generates for the same method (store.ts, checked by hot-statements.test.ts), so they return rows
 * of the same shape; the store contract suite runs the shared code and these alike.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.ts';
import {
  ALLOCATED_VM_COUNT,
  BIND,
  HOSTS,
  UNBIND,
  UNBIND_OWNED,
  VM_CONTEXT_BY_NAMES,
  updateVmStatement,
} from '../hot-statements.ts';
import {
  Repo,
  type AppendedEvent,
  type BindingRow,
  type HostRow,
  type NewEvent,
  type VmContextRow,
  type VmPatch,
  type Unflagged,
  vmFromStore,
} from '../store.ts';

/** Statements prepared once per connection, by SQL text; `statements` counts the ones run. */
export class Prepared {
  private readonly cache = new Map<string, BetterSqlite3.Statement>();

  constructor(
    private readonly raw: BetterSqlite3.Database,
    private readonly count: { statements: number },
  ) {}

  /** The statement for a SQL text, prepared on first use; counted as one statement run. */
  get(sql: string): BetterSqlite3.Statement {
    this.count.statements++;
    let s = this.cache.get(sql);
    if (s === undefined) {
      s = this.raw.prepare(sql);
      this.cache.set(sql, s);
    }
    return s;
  }
}

const INSERT_EVENTS_SQL = `insert into "events" ("time", "type", "subscription", "resource", "reason", "old", "new", "changes") values`;
const EVENT_ROW = '(?, ?, ?, ?, ?, ?, ?, ?)';

/**
 * Up to this many events go in one prepared statement (one per count, so at most this many kept);
 * a larger batch (an apply) takes the shared path, which chunks it by the parameter limit.
 */
const EVENTS_ONE_STATEMENT_MAX = 16;

/**
 * The result of a synchronous statement as the promise the Repo's callers expect; a statement that
 * throws (a constraint) rejects it, as Kysely's would, rather than throwing at the call.
 */
function settle<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

export class SqliteRepo extends Repo {
  constructor(
    db: Kysely<Database> | Transaction<Database>,
    private readonly prepared: Prepared,
  ) {
    super(db);
  }

  override vmContext(
    serviceName: string,
    vmName: string,
    _opts: { service?: 'share' | 'update' } = {},
  ): Promise<VmContextRow | undefined> {
    return settle(() => {
      // One writer at a time: nothing to lock (RepoOptions.lock is never set on SQLite).
      const r = this.prepared.get(VM_CONTEXT_BY_NAMES).get(serviceName, vmName) as
        Unflagged<VmContextRow> | undefined;
      return r === undefined ? undefined : vmFromStore(r);
    });
  }

  override updateVm(id: number, patch: VmPatch): Promise<void> {
    return settle(() => {
      const u = updateVmStatement(id, patch);
      if (u !== undefined) this.prepared.get(u.text).run(...u.params);
    });
  }

  override allocatedVmCount(serviceId: number): Promise<number> {
    return settle(() => Number((this.prepared.get(ALLOCATED_VM_COUNT).get(serviceId) as { n: number }).n));
  }

  override hosts(): Promise<HostRow[]> {
    return settle(() => this.prepared.get(HOSTS).all() as HostRow[]);
  }

  override bind(b: BindingRow): Promise<boolean> {
    return settle(() => this.prepared.get(BIND).run(b.scope, b.address, b.owner, b.kind).changes === 1);
  }

  override unbind(scope: string, address: number): Promise<void> {
    return settle(() => {
      this.prepared.get(UNBIND).run(scope, address);
    });
  }

  override unbindOwned(scope: string, address: number, owner: string): Promise<boolean> {
    return settle(() => this.prepared.get(UNBIND_OWNED).run(scope, address, owner).changes === 1);
  }

  override async appendEvents(events: readonly NewEvent[]): Promise<AppendedEvent[]> {
    if (events.length === 0) return [];
    if (events.length > EVENTS_ONE_STATEMENT_MAX) return super.appendEvents(events);
    const sql = `${INSERT_EVENTS_SQL} ${Array.from({ length: events.length }, () => EVENT_ROW).join(', ')} returning "seq"`;
    const params = events.flatMap((e) => [
      e.time,
      e.type,
      e.subscription ?? null,
      e.resource,
      e.reason,
      e.old ?? null,
      e.new ?? null,
      e.changes ?? null,
    ]);
    const seqs = (this.prepared.get(sql).all(...params) as { seq: number }[])
      .map((r) => Number(r.seq))
      .sort((a, b) => a - b);
    return events.map((e, i) => ({ seq: seqs[i]!, time: e.time }));
  }
}
