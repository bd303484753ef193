/**
 * The lifecycle's write transaction: the repo it works through, the events it emits and the index
 * changes it makes. Both are kept here and written in one statement just before commit (the index
 * changes ride on the first event), which is also where the store numbers the events; they are
 * published after commit.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { Clock } from '../core/clock.ts';
import type { EventRow, Repo, Store } from '../store/index.ts';
import { encodeChanges, type BookChange, type BookTx } from './address-book.ts';
import type { CloudEvent } from './events.ts';
import { countMove, type TxLoads } from './host-loads.ts';

export class Tx implements BookTx {
  readonly events: EventRow[] = [];
  readonly changes: BookChange[] = [];
  /** This transaction's own VM placements, counted before they commit (see host-loads.ts). */
  readonly hostMoves: TxLoads = new Map();
  constructor(
    /** Whose transaction this is: the ambient transaction is one per async context. */
    readonly owner: object,
    readonly repo: Repo,
    private readonly clock: Clock,
  ) {}

  /** Appends an event of the catalog (events.ts) to this transaction. */
  emit(e: CloudEvent): void {
    if (e.type === 'vm.host') countMove(this.hostMoves, { old: e.old.host, new: e.new.host });
    this.events.push({
      seq: 0,
      time: this.clock.now().toISOString(),
      type: e.type,
      subscription: e.subscription,
      resource: e.resource,
      reason: e.reason,
      old: e.old === null ? null : JSON.stringify(e.old),
      new: e.new === null ? null : JSON.stringify(e.new),
      changes: null,
    });
  }

  record(change: BookChange): void {
    this.changes.push(change);
  }

  async flush(): Promise<void> {
    if (this.events.length === 0) {
      // Every change of an address is an event (I6); the index changes travel with them.
      if (this.changes.length > 0) throw new Error('internal: address changes without an event');
      return;
    }
    this.events[0]!.changes = this.changes.length > 0 ? encodeChanges(this.changes) : null;
    const stored = await this.repo.appendEvents(this.events.map(({ seq: _seq, ...e }) => e));
    stored.forEach((a, i) => {
      this.events[i]!.seq = a.seq;
      this.events[i]!.time = a.time;
    });
  }
}

/**
 * The ambient write transaction, one for the whole module rather than one per Cloud: every enabled
 * AsyncLocalStorage costs each promise of the process a little, so one per Cloud made a process
 * that had opened many (tests, benchmarks) slower with each (2.6× on VM cycles after 12 opens).
 */
const AMBIENT = new AsyncLocalStorage<Tx>();

/**
 * How one Cloud runs its reads and writes: an operation called inside another's transaction (a
 * batch) joins it, reads included, so a batch sees its own writes and never waits for itself.
 */
export class Transactions {
  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    /** Told of every committed transaction that emitted events (the log follower). */
    private readonly committed: (tx: Tx) => void,
  ) {}

  /** The transaction of this Cloud that the caller runs inside, if any (a batch, or an operation). */
  ambient(): Tx | undefined {
    const t = AMBIENT.getStore();
    return t !== undefined && t.owner === this ? t : undefined;
  }

  /** Reads see the batch's uncommitted writes, and never wait for the connection it holds. */
  read<T>(fn: (repo: Repo) => Promise<T>): Promise<T> {
    const outer = this.ambient();
    return outer !== undefined ? fn(outer.repo) : this.store.read(fn);
  }

  async write<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    const outer = this.ambient();
    if (outer !== undefined) return fn(outer);
    let tx: Tx | undefined;
    const result = await this.store.write(async (repo) => {
      const t = new Tx(this, repo, this.clock);
      tx = t;
      const r = await AMBIENT.run(t, () => fn(t));
      await t.flush();
      return r;
    });
    if (tx !== undefined && tx.events.length > 0) this.committed(tx);
    return result;
  }
}
