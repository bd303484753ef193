import { CompiledQuery, sql, type QueryResult, type RawBuilder } from 'kysely';
import pg from 'pg';
import {
  ALLOCATED_VM_COUNT,
  BIND,
  HOSTS,
  LOCK_VM_AND_SERVICE,
  LOCK_VM_SHARE_SERVICE,
  UNBIND,
  UNBIND_OWNED,
  VM_CONTEXT_BY_ID,
  VM_CONTEXT_BY_NAMES,
  numbered,
  updateVmStatement,
} from '../hot-statements.ts';
import {
  EVENT_PARAMS,
  POSTGRES_MAX_PARAMS,
  Repo,
  chunks,
  vmFromStore,
  type AppendedEvent,
  type BindingRow,
  type HostRow,
  type NewEvent,
  type RepoOptions,
  type Unflagged,
  type VmContextRow,
  type VmPatch,
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

/**
 * Ends the text of the statement that appends a transaction's last events and commits it, in one
 * message of the simple query protocol (the store's connection sees it and runs it so).
 */
export const COMMIT_WITH_EVENTS = ';\ncommit';

/** A value written into the statement's text (the simple query protocol binds no parameters). */
const literal = (v: string | null): RawBuilder<unknown> => sql.raw(v === null ? 'null' : pg.escapeLiteral(v));

/** The queries whose SQL differs on PostgreSQL; everything else is the shared `Repo`. */
export class PostgresRepo extends Repo {
  private ended = false;

  constructor(
    db: Kysely<Database> | Transaction<Database>,
    opts: RepoOptions,
    private readonly origin: string,
    /**
     * A write transaction the store lets this repo commit: the statement that appends its events,
     * which is its last, commits it as well.
     */
    private readonly commitWithEvents = false,
  ) {
    super(db, opts);
  }

  /** Whether the transaction was committed with its events (the store then sends no COMMIT). */
  get committed(): boolean {
    return this.ended;
  }

  /**
   * One statement: locks the counter row, numbers the events after it, stamps each with its own
   * time or the last event's, whichever is later, inserts them, and queues the wake-up of the other
   * replicas (NOTIFY is delivered at commit, in commit order). The counter row stays locked until
   * this transaction ends, so no other transaction numbers its events before this one is committed
   * and visible: a reader by sequence number never sees a later event before an earlier one, and a
   * rollback gives its numbers back (no gap).
   *
   * In a write the store lets it commit, the COMMIT travels in the same message as the statement,
   * so that the server commits as soon as the events are in: the counter row, which every writer
   * of every replica takes in turn, is held for the statement and the commit only, never for a
   * round trip to the replica and back (which on a busy machine is where most of its time went).
   * Nothing may be written after it (the store's connection refuses it).
   */
  override async appendEvents(events: readonly NewEvent[]): Promise<AppendedEvent[]> {
    if (this.ended) throw new Error('internal: events appended after the transaction committed');
    // Chunks keep each statement under the protocol's parameter limit (with room for the few the
    // statement binds besides the events); the counter row, locked by
    // the first, keeps the numbering gap-free across them. The last one commits.
    const parts = chunks(events, Math.floor((POSTGRES_MAX_PARAMS - 16) / EVENT_PARAMS));
    const out: AppendedEvent[] = [];
    for (const [i, chunk] of parts.entries())
      out.push(...(await this.appendChunk(chunk, this.commitWithEvents && i === parts.length - 1)));
    return out;
  }

  private async appendChunk(events: readonly NewEvent[], commit: boolean): Promise<AppendedEvent[]> {
    const n = events.length;
    if (n === 0) return [];
    // Committing, the statement goes by the simple protocol, which takes several statements but no
    // parameters: the values are written into the text as literals. Else they are parameters.
    const v = commit ? literal : (x: string | null) => sql`${x}`;
    const latest = events.reduce((m, e) => (e.time > m ? e.time : m), '');
    const rows = sql.join(
      events.map(
        (e, i) =>
          sql`(${sql.lit(i + 1)}, ${v(e.time)}::text, ${v(e.type)}::text, ${v(e.subscription ?? null)}::text, ${v(e.resource)}::text, ${v(e.reason)}::text, ${v(e.old ?? null)}::text, ${v(e.new ?? null)}::text, ${v(e.changes ?? null)}::text)`,
      ),
    );
    const origin = v(this.origin);
    const r = await sql<{ seq: number; time: string }>`
      with prev as (select seq, "time" from event_counter where id = 1 for update),
      bump as (
        update event_counter set seq = prev.seq + ${sql.lit(n)}, "time" = greatest(prev."time", ${v(latest)}::text)
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
        select ${origin}::text || ' ' || json_agg(
          json_build_array(i.seq, i."time", i."type", i.subscription, i.resource, i.reason, i."old", i."new", i.changes)
          order by i.seq)::text as j
        from ins i
      ),
      note as (
        select pg_notify(${v(EVENTS_CHANNEL)}::text, case when octet_length(body.j) <= ${sql.lit(MAX_NOTIFY_BYTES)} then body.j
          else ${origin}::text || ' ' || (prev.seq + ${sql.lit(n)}) end)
        from prev, body
      )
      select ins.seq, ins."time" from ins, note order by ins.seq${sql.raw(commit ? COMMIT_WITH_EVENTS : '')}`.execute(
      this.db,
    );
    if (commit) this.ended = true;
    if (r.rows.length !== n) throw new Error('the event counter row is missing');
    return r.rows.map((x) => ({ seq: Number(x.seq), time: x.time }));
  }

  /**
   * A statement of the hot path (hot-statements.ts) as it stands: no query built or compiled, the
   * connection prepares it once under its name as it does every data statement.
   */
  private run<R>(text: string, params: readonly unknown[]): Promise<QueryResult<R>> {
    return this.db.executeQuery<R>(CompiledQuery.raw(numbered(text), [...params]));
  }

  /** See `Repo.vmContext`: in a write, the VM and its service are locked first, then read. */
  override async vmContext(
    serviceName: string,
    vmName: string,
    opts: { service?: 'share' | 'update' } = {},
  ): Promise<VmContextRow | undefined> {
    let r: Unflagged<VmContextRow> | undefined;
    if (this.lock) {
      const lock = opts.service === 'share' ? LOCK_VM_SHARE_SERVICE : LOCK_VM_AND_SERVICE;
      const locked = (await this.run<{ id: number }>(lock, [serviceName, vmName])).rows[0];
      if (locked === undefined) return undefined;
      r = (await this.run<Unflagged<VmContextRow>>(VM_CONTEXT_BY_ID, [locked.id])).rows[0];
    } else {
      r = (await this.run<Unflagged<VmContextRow>>(VM_CONTEXT_BY_NAMES, [serviceName, vmName])).rows[0];
    }
    return r === undefined ? undefined : vmFromStore(r);
  }

  override async updateVm(id: number, patch: VmPatch): Promise<void> {
    const u = updateVmStatement(id, patch);
    if (u !== undefined) await this.run(u.text, u.params);
  }

  override async allocatedVmCount(serviceId: number): Promise<number> {
    return Number((await this.run<{ n: number }>(ALLOCATED_VM_COUNT, [serviceId])).rows[0]!.n);
  }

  override async hosts(): Promise<HostRow[]> {
    return (await this.run<HostRow>(HOSTS, [])).rows;
  }

  override async bind(b: BindingRow): Promise<boolean> {
    const r = await this.run(BIND, [b.scope, b.address, b.owner, b.kind]);
    return Number(r.numAffectedRows ?? 0n) === 1;
  }

  override async unbind(scope: string, address: number): Promise<void> {
    await this.run(UNBIND, [scope, address]);
  }

  override async unbindOwned(scope: string, address: number, owner: string): Promise<boolean> {
    return Number((await this.run(UNBIND_OWNED, [scope, address, owner])).numAffectedRows ?? 0n) === 1;
  }

  override async lockPools(): Promise<void> {
    await sql`select pg_advisory_xact_lock(${sql.lit(POOLS_LOCK_KEY)})`.execute(this.db);
  }

  override async lockImages(): Promise<void> {
    await sql`select pg_advisory_xact_lock(${sql.lit(IMAGES_LOCK_KEY)})`.execute(this.db);
  }
}
