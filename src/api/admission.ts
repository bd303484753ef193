/**
 * Admission control: above capacity the server refuses a mutating request at once (503 with
 * Retry-After) instead of letting it queue. Without it, an open-loop load above what the store can
 * commit queued every request behind the ones before it (p99 of 7–8 s at 2,000 req/s, and thousands
 * of client timeouts): each request was accepted, none was served in time. With it, a bounded number
 * of requests run, a short queue absorbs bursts, and the rest learn at once to come back later;
 * a refusal costs a few microseconds, so the accepted ones keep the CPU and a bounded latency.
 *
 * The decision is taken as the request arrives, before Fastify routes it, before authentication
 * and before the body is read. Reads are never refused: they take no write lock, and /healthz must
 * answer under any load.
 * How long a request waited is estimated from the turns of the event loop (see `turnStartMs`
 * below): with SQLite the queue is in the sockets, where the server cannot see it otherwise.
 *
 * `AdmissionQueue` and `StandingQueue` are the pure part (time is passed in); `guardServer` wires
 * them in front of the server's request handler.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { performance } from 'node:perf_hooks';
import { API_TITLES, problem, writeProblem } from './problem.ts';

export interface AdmissionLimits {
  /** Mutating requests whose handlers run at the same time. */
  inFlightMax: number;
  /** Requests that may wait for a slot; one more is refused at once. */
  queueMax: number;
  /**
   * A request that has waited this long since it arrived is refused rather than started: by the time
   * it ran, its client would already have seen most of its latency budget go by in the queue.
   */
  queueWaitMaxMs: number;
  /** What a refused client is told to wait before it tries again (Retry-After, whole seconds). */
  retryAfterSeconds: number;
}

/**
 * Sixteen writers at once: the store commits one transaction at a time (SQLite) or through a pool of
 * ten connections (PostgreSQL), so more in flight would only queue inside the store.
 *
 * A request that waited over 5 ms before its handler could start is refused, once such waits stand
 * (StandingQueue). With ~0.6 ms of CPU per operation this aims at a p99 near 10 ms for accepted
 * requests; the wait it sees is a lower bound (the turn of the loop, below), so time a request spent
 * in the kernel before that turn, or while the process was not scheduled, still adds to the tail
 * (docs/designs/2026-12-04-admission-and-sqlite-hot-path.md). It also means that sixteen clients in a closed loop, which by Little's law wait 16 × 0.6 ≈ 10 ms each at
 * this server's capacity, see part of their requests refused: the server's answer to "more work than
 * it can do within its latency budget", not a failure (`npm run bench -- api` counts them apart).
 */
export const DEFAULT_ADMISSION: AdmissionLimits = {
  inFlightMax: 16,
  queueMax: 64,
  queueWaitMaxMs: 5,
  retryAfterSeconds: 1,
};

/** Why a request was refused. */
export type Refusal = 'queue full' | 'waited too long';

export type Offer = 'admitted' | 'queued' | Refusal;

interface Waiting<T> {
  item: T;
  arrivedMs: number;
}

/**
 * Counts the requests in flight and keeps the ones waiting for a slot, oldest first. The caller
 * passes the current time to every method, so the decisions are reproducible in tests.
 */
export class AdmissionQueue<T> {
  private running = 0;
  private readonly waiting: Waiting<T>[] = [];
  /**
   * Light senders' waiters (SenderShares), in a lane of their own: served before the others and
   * never expired. With group commit (the SQLite store) writes are really in flight side by side
   * and a tenant's flood keeps the slots full; behind its waiters in one FIFO, an operator's write
   * would wait several groups and pass the wait limit. The lane holds at most `queueMax`.
   */
  private readonly lightWaiting: T[] = [];
  /** Requests started (at once or after waiting) since the queue was made. */
  admitted = 0;
  /** Requests refused since the queue was made, by reason. */
  readonly refused: Record<Refusal, number> = { 'queue full': 0, 'waited too long': 0 };

  constructor(readonly limits: AdmissionLimits) {}

  get inFlight(): number {
    return this.running;
  }
  get queued(): number {
    return this.waiting.length + this.lightWaiting.length;
  }

  /**
   * A request arrived at `arrivedMs` (it may have waited in the socket before `nowMs`): it starts at
   * once when a slot is free and nobody waits before it, waits when the queue has room, or is refused.
   */
  offer(item: T, arrivedMs: number, nowMs: number, light = false): Offer {
    if (light) {
      // A light sender (SenderShares) goes before the others' waiters, in its own lane.
      if (this.running < this.limits.inFlightMax && this.lightWaiting.length === 0) return this.admit();
      if (this.lightWaiting.length >= this.limits.queueMax) return this.refuse('queue full');
      this.lightWaiting.push(item);
      return 'queued';
    }
    if (nowMs - arrivedMs > this.limits.queueWaitMaxMs) return this.refuse('waited too long');
    if (this.running < this.limits.inFlightMax && this.queued === 0) return this.admit();
    if (this.waiting.length >= this.limits.queueMax) return this.refuse('queue full');
    this.waiting.push({ item, arrivedMs });
    return 'queued';
  }

  private admit(): 'admitted' {
    this.running++;
    this.admitted++;
    return 'admitted';
  }

  /**
   * A running request finished. Its slot goes to the oldest light waiter, else to the oldest waiter
   * still within its deadline; the waiters found past theirs on the way are refused. Returns both,
   * for the caller to act on.
   */
  release(nowMs: number): { admit: T[]; refuse: T[] } {
    if (this.running > 0) this.running--;
    const refuse = this.expire(nowMs);
    const admit: T[] = [];
    while (this.running < this.limits.inFlightMax && this.lightWaiting.length > 0) {
      admit.push(this.lightWaiting.shift()!);
      this.running++;
      this.admitted++;
    }
    while (this.running < this.limits.inFlightMax && this.waiting.length > 0) {
      admit.push(this.waiting.shift()!.item);
      this.running++;
      this.admitted++;
    }
    return { admit, refuse };
  }

  /** Removes and returns the waiters whose deadline has passed. */
  expire(nowMs: number): T[] {
    const out: T[] = [];
    // Oldest first: the first one still in time ends the scan.
    while (this.waiting.length > 0 && nowMs - this.waiting[0]!.arrivedMs > this.limits.queueWaitMaxMs) {
      out.push(this.waiting.shift()!.item);
      this.refused['waited too long']++;
    }
    return out;
  }

  /** A waiter whose client went away: it neither runs nor counts as refused. */
  cancel(item: T): boolean {
    const l = this.lightWaiting.indexOf(item);
    if (l >= 0) {
      this.lightWaiting.splice(l, 1);
      return true;
    }
    const i = this.waiting.findIndex((w) => w.item === item);
    if (i < 0) return false;
    this.waiting.splice(i, 1);
    return true;
  }

  /** When the oldest waiter's deadline passes, if anyone waits (light waiters have none). */
  nextDeadlineMs(): number | undefined {
    const w = this.waiting[0];
    return w === undefined ? undefined : w.arrivedMs + this.limits.queueWaitMaxMs;
  }

  private refuse(why: Refusal): Refusal {
    this.refused[why]++;
    return why;
  }
}

/**
 * How long waits must have stayed over the limit, turn after turn, before they count against a
 * request: CoDel's interval (Nichols and Jacobson, "Controlling Queue Delay", 2012).
 */
export const STANDING_INTERVAL_MS = 100;

/**
 * Tells a standing queue from a burst, as CoDel does: waits over the target in every turn of the
 * loop for a whole interval. One turn within the target ends it.
 */
export class StandingQueue {
  private since: number | undefined;

  constructor(
    private readonly targetMs: number,
    private readonly intervalMs: number,
  ) {}

  /**
   * A turn ended at `endMs`; the longest wait a request met in it. The interval is counted from the
   * end of the first turn over the target, so one long turn alone (an apply) never makes a queue.
   */
  turnEnded(endMs: number, longestWaitMs: number): void {
    if (longestWaitMs > this.targetMs) this.since ??= endMs;
    else this.since = undefined;
  }

  standing(nowMs: number): boolean {
    return this.since !== undefined && nowMs - this.since >= this.intervalMs;
  }
}

/**
 * Who has been asking lately, against what the server has been serving: writes per sender (a
 * token's principal) as they arrive, admitted or refused, and the writes admitted from everyone,
 * both decayed by half every window. Under a standing queue every sender's writes would be refused
 * alike, so a tenant flooding the server would get the operator's and the other tenants' writes
 * refused with its own (SPEC §8: a tenant reaches nothing past its subscription, not the server's
 * liveness either). A sender that asks for less than an equal share of what the server admits is
 * *light* (max-min fairness: a demand below its fair share is served in full): its writes are not
 * held to the wait limit and go in a lane of their own. A flood from one sender, or from many
 * unverified tokens (they share one key), stays heavy and is refused as before.
 *
 * Demand is held against service, each where it cannot be gamed:
 * - A sender's own demand counts its refused writes too. Counting only its admissions made a light
 *   sender heavy exactly when the server was slowest: the flood's writes were mostly refused, its
 *   admissions fell to a few dozen a second, and the operator's ten a second came to more than half
 *   of an equal share of them (the CI failure of test/integration/admission.test.ts).
 * - The measure is what the server admitted, which no one can raise past its capacity. Against the
 *   sum of all demands, a tenant could stay light at any rate by sending six times as many writes
 *   with no token (refused for microseconds each), and fill the light lane before the operator.
 * Pure: time is passed in.
 */
export class SenderShares {
  private readonly asked = new Map<string, number>();
  private served = 0;
  private windowStart: number | undefined;

  constructor(
    private readonly windowMs = 1000,
    private readonly maxSenders = 1024,
  ) {}

  private keyOf(key: string): string {
    return this.asked.has(key) || this.asked.size < this.maxSenders ? key : 'others';
  }

  /** A write of `key` arrived (whatever admission then decides). */
  arrived(key: string, nowMs: number): void {
    this.roll(nowMs);
    const k = this.keyOf(key);
    this.asked.set(k, (this.asked.get(k) ?? 0) + 1);
  }

  /** A write (of anyone) was admitted. */
  admitted(nowMs: number): void {
    this.roll(nowMs);
    this.served++;
  }

  /** Whether `key` asked for less than an equal share of the writes admitted lately. */
  light(key: string, nowMs: number): boolean {
    this.roll(nowMs);
    const k = this.keyOf(key);
    const mine = this.asked.get(k) ?? 0;
    const senders = this.asked.size + (this.asked.has(k) ? 0 : 1);
    return mine * senders < this.served;
  }

  private roll(nowMs: number): void {
    this.windowStart ??= nowMs;
    // Halve once per window gone by; after 30 windows everything has decayed to nothing.
    const windows = Math.min(30, Math.floor((nowMs - this.windowStart) / this.windowMs));
    if (windows === 0) return;
    this.windowStart += windows * this.windowMs;
    this.served = Math.floor(this.served / 2 ** windows);
    for (const [k, n] of this.asked) {
      const left = Math.floor(n / 2 ** windows);
      if (left === 0) this.asked.delete(k);
      else this.asked.set(k, left);
    }
  }
}

/** What the guard needs of an HTTP or HTTPS server: its request handlers. */
interface Server {
  listeners(event: 'request'): unknown[];
  removeListener(event: 'request', fn: RequestListener): unknown;
  on(event: 'request', fn: RequestListener): unknown;
}
type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Methods that change state; the others are never refused. */
const MUTATING: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/** What `/metrics` (or a test) can read of the admission control. */
export interface AdmissionStats {
  readonly inFlight: number;
  readonly queued: number;
  readonly admitted: number;
  readonly refused: number;
}

/**
 * Puts admission control in front of a server's request handler (Fastify's), on the server itself:
 * a refusal is written straight to the socket, before Fastify builds its request and reply, routes,
 * runs its hooks or counts it. Under a load far above capacity the refusals are most of the work,
 * and through Fastify's onRequest hook each one cost about as much as a lifecycle operation: the
 * server fell behind on refusing alone. Call it once, before the server listens. Returns counters.
 */
export function guardServer(
  server: Server,
  limits: AdmissionLimits = DEFAULT_ADMISSION,
  now: () => number = () => performance.now(),
  /** The request's sender, for fairness between senders (SenderShares); one sender by default. */
  senderOf: (req: IncomingMessage) => string = () => '',
): AdmissionStats {
  const handlers = server.listeners('request') as RequestListener[];
  if (handlers.length !== 1)
    throw new Error(`admission: expected one request handler, found ${handlers.length}`);
  const handle = handlers[0]!;
  server.removeListener('request', handle);
  interface Waiter {
    start: () => void;
    refuse: (why: Refusal) => void;
  }
  const queue = new AdmissionQueue<Waiter>(limits);
  let timer: NodeJS.Timeout | undefined;

  const settle = ({ admit, refuse }: { admit: Waiter[]; refuse: Waiter[] }) => {
    for (const w of refuse) w.refuse('waited too long');
    for (const w of admit) w.start();
    arm();
  };
  // One timer, at the oldest waiter's deadline, refuses whoever waited too long while no slot freed.
  const arm = () => {
    if (timer !== undefined) return;
    const due = queue.nextDeadlineMs();
    if (due === undefined) return;
    timer = setTimeout(
      () => {
        timer = undefined;
        settle({ admit: [], refuse: queue.expire(now()) });
      },
      Math.max(0, Math.ceil(due - now())) + 1,
    );
    timer.unref();
  };

  // When the current turn of the event loop met its first request (undefined between turns). With
  // a synchronous store (SQLite) a request runs to its answer within one callback, so no request is
  // ever "in flight" beside another: the queue is in the sockets, and the turns of the loop are the
  // only place the server can see it. Node reads every socket that poll reported ready in one turn;
  // a request met later in the turn arrived no later than the turn's first one, so it has waited at
  // least the time since then (a lower bound: it may have arrived during the turn before).
  let turnStartMs: number | undefined;
  let longestWaitMs = 0;
  const standing = new StandingQueue(limits.queueWaitMaxMs, STANDING_INTERVAL_MS);
  const shares = new SenderShares();
  const endTurn = () => {
    standing.turnEnded(now(), longestWaitMs);
    turnStartMs = undefined;
    longestWaitMs = 0;
  };

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const t = now();
    if (turnStartMs === undefined) {
      turnStartMs = t;
      // The check phase runs right after this poll phase: the next requests are a new turn's.
      setImmediate(endTurn);
    }
    longestWaitMs = Math.max(longestWaitMs, t - turnStartMs);
    if (!MUTATING.has(req.method ?? '')) return handle(req, res);
    // A wait is held against a request only while waits have stayed over the limit for a while: a
    // single slow turn (a route's first call compiling its schemas, a large apply) queues a few
    // requests once and is gone, and refusing them would help nobody.
    // A light sender's writes are not held to the wait: one tenant's flood must not refuse the others.
    const sender = senderOf(req);
    const light = shares.light(sender, t);
    shares.arrived(sender, t);
    const arrived = standing.standing(t) && !light ? turnStartMs : t;
    let state: 'waiting' | 'running' | 'done' = 'waiting';
    const finish = () => {
      if (state === 'running') settle(queue.release(now()));
      else if (state === 'waiting') queue.cancel(waiter);
      state = 'done';
    };
    const waiter: Waiter = {
      start: () => {
        if (state !== 'waiting') return;
        state = 'running';
        shares.admitted(now());
        handle(req, res);
      },
      refuse: (why) => {
        if (state !== 'waiting') return;
        state = 'done';
        writeProblem(
          res,
          problem(
            'OVERLOADED',
            API_TITLES.OVERLOADED,
            why === 'queue full'
              ? 'the server is at capacity; try again after Retry-After'
              : `the request waited over ${limits.queueWaitMaxMs} ms for its turn; try again after Retry-After`,
            req.url,
          ),
          { 'retry-after': String(limits.retryAfterSeconds) },
        );
      },
    };
    // 'close' comes after the response is sent, or when the client goes away first.
    res.once('close', finish);
    const offer = queue.offer(waiter, arrived, t, light);
    if (offer === 'admitted') {
      state = 'running';
      shares.admitted(t);
      return handle(req, res);
    }
    if (offer === 'queued') return arm();
    waiter.refuse(offer);
  });

  return {
    get inFlight() {
      return queue.inFlight;
    },
    get queued() {
      return queue.queued;
    },
    get admitted() {
      return queue.admitted;
    },
    get refused() {
      return queue.refused['queue full'] + queue.refused['waited too long'];
    },
  };
}
