import { sql } from 'kysely';
import {
  EVENT_PARAMS,
  POSTGRES_MAX_PARAMS,
  Repo,
  chunks,
  type AppendedEvent,
  type NewEvent,
  type RepoOptions,
} from '../store.ts';
import type { Database } from '../schema.ts';
import type { Kysely, Transaction } from 'kysely';

/**
 * The channel every replica LISTENs on. The payload is `ORIGIN JSON` (the transaction's events as
 * arrays of the events table's columns) or, when that would not fit, `ORIGIN LASTSEQ`.
 */
export const EVENTS_CHANNEL = 'vipdip_events';
/** PostgreSQL refuses payloads of 8000 bytes and more. */
const MAX_NOTIFY_BYTES = 7900;

/** Key of the transaction-level advisory lock that serializes public pool additions. */
const POOLS_LOCK_KEY = 7_480_001;
/** Key of the transaction-level advisory lock that serializes image changes with the VMs naming them. */
const IMAGES_LOCK_KEY = 7_480_002;

/** The queries whose SQL differs on PostgreSQL; everything else is the shared `Repo`. */
export class PostgresRepo extends Repo {
  constructor(
    db: Kysely<Database> | Transaction<Database>,
    opts: RepoOptions,
    private readonly origin: string,
  ) {
    super(db, opts);
  }

  /**
   * One statement: locks the counter row, numbers the events after it, stamps each with its own
   * time or the last event's, whichever is later, inserts them, and queues the wake-up of the other
   * replicas (NOTIFY is delivered at commit, in commit order). The counter row stays locked until
   * this transaction ends, so no other transaction numbers its events before this one is committed
   * and visible: a reader by sequence number never sees a later event before an earlier one, and a
   * rollback gives its numbers back (no gap).
   */
  override async appendEvents(events: readonly NewEvent[]): Promise<AppendedEvent[]> {
    // Chunks keep each statement under the protocol's parameter limit (with room for the few the
    // statement binds besides the events); the counter row, locked by
    // the first, keeps the numbering gap-free across them.
    const out: AppendedEvent[] = [];
    for (const chunk of chunks(events, Math.floor((POSTGRES_MAX_PARAMS - 16) / EVENT_PARAMS)))
      out.push(...(await this.appendChunk(chunk)));
    return out;
  }

  private async appendChunk(events: readonly NewEvent[]): Promise<AppendedEvent[]> {
    const n = events.length;
    if (n === 0) return [];
    const latest = events.reduce((m, e) => (e.time > m ? e.time : m), '');
    const rows = sql.join(
      events.map(
        (e, i) =>
          sql`(${sql.lit(i + 1)}, ${e.time}::text, ${e.type}::text, ${e.subscription ?? null}::text, ${e.resource}::text, ${e.reason}::text, ${e.old ?? null}::text, ${e.new ?? null}::text, ${e.changes ?? null}::text)`,
      ),
    );
    const r = await sql<{ seq: number; time: string }>`
      with prev as (select seq, "time" from event_counter where id = 1 for update),
      bump as (
        update event_counter set seq = prev.seq + ${sql.lit(n)}, "time" = greatest(prev."time", ${latest}::text)
        from prev where event_counter.id = 1
      ),
      ins as (
        insert into events (seq, "time", "type", subscription, resource, reason, "old", "new", changes)
        select prev.seq + v.k, greatest(v.t, prev."time"), v.ty, v.sub, v.res, v.why, v.o, v.n, v.ch
        from prev, (values ${rows}) as v (k, t, ty, sub, res, why, o, n, ch)
        returning seq, "time", "type", subscription, resource, reason, "old", "new", changes
      ),
      -- The wake-up carries the events themselves when they fit in a notification, so that the
      -- other replicas need not read them back; else it carries the last number only.
      body as (
        select ${this.origin}::text || ' ' || json_agg(
          json_build_array(i.seq, i."time", i."type", i.subscription, i.resource, i.reason, i."old", i."new", i.changes)
          order by i.seq)::text as j
        from ins i
      ),
      note as (
        select pg_notify(${EVENTS_CHANNEL}::text, case when octet_length(body.j) <= ${sql.lit(MAX_NOTIFY_BYTES)} then body.j
          else ${this.origin}::text || ' ' || (prev.seq + ${sql.lit(n)}) end)
        from prev, body
      )
      select ins.seq, ins."time" from ins, note order by ins.seq`.execute(this.db);
    if (r.rows.length !== n) throw new Error('the event counter row is missing');
    return r.rows.map((x) => ({ seq: Number(x.seq), time: x.time }));
  }

  override async lockPools(): Promise<void> {
    await sql`select pg_advisory_xact_lock(${sql.lit(POOLS_LOCK_KEY)})`.execute(this.db);
  }

  override async lockImages(): Promise<void> {
    await sql`select pg_advisory_xact_lock(${sql.lit(IMAGES_LOCK_KEY)})`.execute(this.db);
  }
}
