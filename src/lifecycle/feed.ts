/**
 * The committed log, as this replica follows it: every transaction of every replica, applied to
 * the allocation indexes and published to the `onEvents` listeners strictly in sequence order,
 * each event exactly once, with no gap.
 *
 * This replica's own transactions arrive as they commit (`committed`): when nothing is missing
 * before them they are applied at once, otherwise they wait for the rows before them. The other
 * replicas' arrive by reading the events table after the last applied sequence number, whenever the
 * store wakes us (a NOTIFY, a reconnection, a timer). Sequence order is commit order (the store
 * guarantees it), so a read never finds a hole that a slower transaction fills later.
 */
import type { EventRow, Store } from '../store/index.ts';
import { decodeChanges, type AddressBook, type BookChange } from './address-book.ts';

/** Rows read per round trip while catching up. */
const PAGE = 500;
/**
 * How long a gap before a transaction that arrived may stay open before the table is read. A gap
 * is almost always a transaction already committed whose arrival is under way: this replica's own,
 * whose answer from the database it has not handled yet, or another replica's, whose notification
 * is on its way (notifications come in commit order). Reading at once costs a round trip for rows
 * that arrive a moment later anyway (measured: 0.7 reads per operation over three replicas).
 */
const GAP_WAIT_MS = 50;

export interface FeedBatch {
  /** The transaction's events, with their sequence numbers, in order. */
  events: EventRow[];
  changes: BookChange[];
}

export class EventFeed {
  private readonly pending = new Map<number, FeedBatch>();
  private fetching = false;
  private again = false;
  private stopped = false;
  private unwatch: (() => void) | undefined;
  private readonly waiters: { seq: number; resolve: () => void }[] = [];
  private gapTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly book: AddressBook,
    /** The last sequence number applied. */
    private applied: number,
    private readonly publish: (events: readonly EventRow[]) => void,
    private readonly onError: (e: unknown) => void = () => {},
  ) {}

  get position(): number {
    return this.applied;
  }

  /** Follows the other replicas' commits, where the store has other writers. */
  start(): void {
    this.unwatch = this.store.watch?.((events) => this.notified(events));
  }

  stop(): void {
    this.stopped = true;
    this.unwatch?.();
    this.unwatch = undefined;
    clearTimeout(this.gapTimer);
    for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** A transaction of this replica committed these events and index changes. */
  committed(batch: FeedBatch): void {
    const first = batch.events[0]?.seq;
    if (first === undefined || first <= this.applied) return; // read from the store already
    if (first === this.applied + 1) {
      this.applyBatch(batch);
      this.drain();
    } else {
      this.pending.set(first, batch);
      this.wakeSoon();
    }
  }

  /** Resolves once every event committed before the call has been applied here. */
  async sync(): Promise<void> {
    const last = await this.store.read((r) => r.lastSeq());
    if (last <= this.applied || this.stopped) return;
    const done = new Promise<void>((resolve) => this.waiters.push({ seq: last, resolve }));
    this.wake();
    await done;
  }

  /**
   * Another replica committed. When the wake-up carries its events and they are next in line they
   * are applied as they are; otherwise (a gap, a read in progress, no events) the table is read.
   */
  private notified(events: readonly EventRow[] | undefined): void {
    const first = events?.[0];
    if (events !== undefined && first !== undefined && !this.fetching && !this.stopped) {
      if (Number(events[events.length - 1]!.seq) <= this.applied) return; // read already
      if (Number(first.seq) === this.applied + 1) {
        this.applyRows(events);
        this.drain();
        return;
      }
      // Something before them is missing: this replica's own transactions whose answers it has
      // not handled yet (the others' notifications come in order). They wait with its own.
      this.pending.set(Number(first.seq), {
        events: events.map((e) => ({ ...e, seq: Number(e.seq) })),
        changes: events.flatMap((e) => (e.changes === null ? [] : decodeChanges(e.changes))),
      });
      this.wakeSoon();
      return;
    }
    this.wake();
  }

  /** Reads the table if a gap before a waiting transaction is still open after GAP_WAIT_MS. */
  private wakeSoon(): void {
    if (this.gapTimer !== undefined || this.stopped) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = undefined;
      if (this.pending.size > 0) this.wake();
    }, GAP_WAIT_MS);
    this.gapTimer.unref();
  }

  /** Applies rows that follow the last applied event, in order (other replicas' commits). */
  private applyRows(rows: readonly EventRow[]): void {
    for (const row of rows) {
      if (row.changes !== null) this.book.apply(decodeChanges(row.changes));
      this.applied = Number(row.seq);
    }
    this.emit(rows);
  }

  /** Reads and applies whatever was committed after the last applied event. */
  wake(): void {
    if (this.stopped) return;
    if (this.fetching) {
      this.again = true;
      return;
    }
    this.fetching = true;
    void this.catchUp().finally(() => {
      this.fetching = false;
    });
  }

  private async catchUp(): Promise<void> {
    try {
      do {
        this.again = false;
        for (;;) {
          const rows = await this.store.read((r) => r.eventsAfter(this.applied, PAGE));
          let run: EventRow[] = [];
          const flush = () => {
            if (run.length > 0) this.emit(run);
            run = [];
          };
          for (const row of rows) {
            const seq = Number(row.seq);
            if (seq <= this.applied) continue; // applied meanwhile, as this replica's own
            if (seq !== this.applied + 1) break; // cannot happen (commit order); read again later
            const own = this.pending.get(seq);
            if (own !== undefined) {
              flush();
              this.applyBatch(own);
              continue;
            }
            if (row.changes !== null) this.book.apply(decodeChanges(row.changes));
            this.applied = seq;
            run.push(row);
          }
          flush();
          this.drain();
          if (rows.length < PAGE || this.stopped) break;
        }
      } while (this.again && !this.stopped);
    } catch (e) {
      // The store is unreachable: the next wake-up (reconnection, timer) reads on from here.
      if (!this.stopped) this.onError(e);
    }
  }

  private applyBatch(batch: FeedBatch): void {
    this.pending.delete(batch.events[0]!.seq);
    this.book.apply(batch.changes);
    this.applied = batch.events[batch.events.length - 1]!.seq;
    this.emit(batch.events);
  }

  /** Applies the waiting own batches that are next in line, and forgets those already read. */
  private drain(): void {
    for (;;) {
      const next = this.pending.get(this.applied + 1);
      if (next === undefined) break;
      this.applyBatch(next);
    }
    for (const first of this.pending.keys()) if (first <= this.applied) this.pending.delete(first);
  }

  private emit(events: readonly EventRow[]): void {
    try {
      this.publish(events);
    } catch (e) {
      this.onError(e);
    }
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      if (this.waiters[i]!.seq <= this.applied) this.waiters.splice(i, 1)[0]!.resolve();
    }
  }
}
