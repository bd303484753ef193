/**
 * The SQLite repo: the shared `Repo`, with the statements of the hottest path (a VM's start and
 * deallocation) run as prepared statements on the connection itself. A CPU profile of 1,000
 * deallocate+start cycles per second put about a fifth of the time in Kysely building and compiling
 * the same few queries again for every call, and a few more promise hops per query in its executor;
 * these methods skip both. They run on the very connection Kysely holds, so they are used only inside
 * a transaction (write or snapshot), which holds that connection: there they are part of it. A
 * plain read outside any transaction keeps the shared Repo, whose queries wait for the connection.
 *
 * Every statement here is the SQL Kysely generated for the same method (store.ts), and returns rows
 * of the same shape; the store contract suite runs the shared code and these alike.
 */
import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../schema.ts';
import {
  Repo,
  type AppendedEvent,
  type BindingRow,
  type HostRow,
  type NewEvent,
  type VmContextRow,
  type VmPatch,
  type Unflagged,
  flagToStore,
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

const CONTEXT_SQL = `select "vms".*,
  "cloud_services"."name" as "service_name",
  "cloud_services"."subscription_id" as "subscription_id",
  "cloud_services"."vnet_id" as "service_vnet_id",
  "cloud_services"."reserved_ip_id" as "service_reserved_ip_id",
  "cloud_services"."vip" as "service_vip",
  "cloud_services"."vip_pool_id" as "service_vip_pool_id",
  "subscriptions"."name" as "subscription_name",
  "subnets"."name" as "subnet_name",
  "vnets"."name" as "vnet_name",
  "vnets"."dip_policy" as "dip_policy",
  "vnets"."move_policy" as "move_policy",
  "hosts"."name" as "host_name",
  "hosts"."rack" as "host_rack"
from "vms"
inner join "cloud_services" on "cloud_services"."id" = "vms"."service_id"
inner join "subscriptions" on "subscriptions"."id" = "cloud_services"."subscription_id"
inner join "subnets" on "subnets"."id" = "vms"."subnet_id"
inner join "vnets" on "vnets"."id" = "subnets"."vnet_id"
left join "hosts" on "hosts"."id" = "vms"."host_id"
where "cloud_services"."name" = ? and "vms"."name" = ?`;

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

/** A column name of a patch, checked before it is spliced into SQL (the names come from code). */
const COLUMN = /^[a-z_]+$/;

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
      const r = this.prepared.get(CONTEXT_SQL).get(serviceName, vmName) as
        Unflagged<VmContextRow> | undefined;
      return r === undefined ? undefined : vmFromStore(r);
    });
  }

  override updateVm(id: number, patch: VmPatch): Promise<void> {
    return settle(() => {
      const entries = Object.entries(patch)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => [k, typeof v === 'boolean' ? flagToStore(v) : v] as const);
      if (entries.length === 0) return;
      for (const [k] of entries) if (!COLUMN.test(k)) throw new Error(`not a column of vms: ${k}`);
      const set = entries.map(([k]) => `"${k}" = ?`).join(', ');
      this.prepared.get(`update "vms" set ${set} where "id" = ?`).run(...entries.map(([, v]) => v), id);
    });
  }

  override allocatedVmCount(serviceId: number): Promise<number> {
    return settle(() => {
      const r = this.prepared
        .get(`select count(*) as "n" from "vms" where "service_id" = ? and "state" != 'deallocated'`)
        .get(serviceId) as { n: number };
      return Number(r.n);
    });
  }

  override hosts(): Promise<HostRow[]> {
    return settle(() => {
      return this.prepared.get(`select * from "hosts" order by "name"`).all() as HostRow[];
    });
  }

  override bind(b: BindingRow): Promise<boolean> {
    return settle(() => {
      const r = this.prepared
        .get(
          `insert into "address_bindings" ("scope", "address", "owner", "kind") values (?, ?, ?, ?)
           on conflict ("scope", "address") do nothing`,
        )
        .run(b.scope, b.address, b.owner, b.kind);
      return r.changes === 1;
    });
  }

  override unbind(scope: string, address: number): Promise<void> {
    return settle(() => {
      this.prepared
        .get(`delete from "address_bindings" where "scope" = ? and "address" = ?`)
        .run(scope, address);
    });
  }

  override unbindOwned(scope: string, address: number, owner: string): Promise<boolean> {
    return settle(() => {
      const r = this.prepared
        .get(`delete from "address_bindings" where "scope" = ? and "address" = ? and "owner" = ?`)
        .run(scope, address, owner);
      return r.changes === 1;
    });
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
