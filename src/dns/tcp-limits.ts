/**
 * Who may hold DNS-over-TCP connections, decided without sockets. RFC 7766 §6.2.2 asks a server to
 * bound the connections of one client and in total, and to close idle ones first; this is that:
 *
 * * one client address holds at most `perClient` connections: its next one is refused (closed at
 *   once), so no single address can take the server's capacity;
 * * past `total` connections, the one idle the longest is evicted to make room, so clients spread over
 *   many addresses still cannot keep a newcomer from an answer: the newcomer is the least idle of all;
 * * a connection idle for the idle timeout is closed by the server (not here: a socket timer).
 *
 * Generic over the connection handle so that tests drive it with plain objects and a number clock.
 */

export interface TcpLimits {
  /** Connections one client address may hold at once. */
  perClient: number;
  /** Connections in all; beyond it the idlest is evicted. */
  total: number;
}

export type TcpAdmission<T> =
  { admitted: true; evict: T | undefined } | { admitted: false; reason: 'per-client limit' };

interface Held {
  client: string;
  last: number;
}

export class TcpConnectionLimiter<T> {
  private readonly held = new Map<T, Held>();
  private readonly perClient = new Map<string, number>();

  constructor(private readonly limits: TcpLimits) {
    for (const [k, v] of Object.entries(limits)) {
      if (!Number.isInteger(v) || v < 1)
        throw new RangeError(`DNS TCP limit ${k} must be a positive integer`);
    }
  }

  /**
   * A new connection from `client` at time `now`: refused when its address already holds its share;
   * else admitted, with the connection to close first when the total is reached (already forgotten
   * here).
   */
  admit(conn: T, client: string, now: number): TcpAdmission<T> {
    const mine = this.perClient.get(client) ?? 0;
    if (mine >= this.limits.perClient) return { admitted: false, reason: 'per-client limit' };
    let evict: T | undefined;
    if (this.held.size >= this.limits.total) {
      let idlest = Infinity;
      for (const [c, h] of this.held) {
        if (h.last < idlest) {
          idlest = h.last;
          evict = c;
        }
      }
      if (evict !== undefined) this.remove(evict);
    }
    this.held.set(conn, { client, last: now });
    this.perClient.set(client, mine + 1);
    return { admitted: true, evict };
  }

  /** The connection did something (a query in, an answer out). */
  touch(conn: T, now: number): void {
    const h = this.held.get(conn);
    if (h !== undefined) h.last = now;
  }

  /** The connection closed (idempotent). */
  remove(conn: T): void {
    const h = this.held.get(conn);
    if (h === undefined) return;
    this.held.delete(conn);
    const n = this.perClient.get(h.client) ?? 1;
    if (n <= 1) this.perClient.delete(h.client);
    else this.perClient.set(h.client, n - 1);
  }

  get size(): number {
    return this.held.size;
  }

  heldBy(client: string): number {
    return this.perClient.get(client) ?? 0;
  }
}
