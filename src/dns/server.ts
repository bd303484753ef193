/**
 * The authoritative DNS server: UDP and TCP on one port, answering from an immutable zone table.
 *
 * Control path: every committed change (the cloud's event stream) starts a rebuild of the table
 * from the cloud. Hot path: a query is answered from the current table, except while a rebuild
 * asked for by an earlier change is still reading; then it waits for that rebuild, so the first
 * query after a change is always answered from a table that includes it (no polling interval,
 * never a stale address).
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import { streamEncode } from 'dns-packet';
import { systemClock, type Clock } from '../core/clock.ts';
import { affectsDns, type EventView } from '../lifecycle/index.ts';
import { RCODE, answerMessage, encodeForUdp, failureReply, type Reply } from './answer.ts';
import { TcpConnectionLimiter } from './tcp-limits.ts';
import {
  DEFAULT_INTERNAL_ZONE,
  DEFAULT_PUBLIC_ZONE,
  DEFAULT_TTL_SECONDS,
  buildZoneTable,
  checkZoneConfig,
  type ServiceInput,
  type VmInput,
  type ZoneConfig,
  type ZoneTable,
} from './zones.ts';

export const DEFAULT_DNS_HOST = '127.0.0.1';
export const DEFAULT_DNS_PORT = 5353;
/** RFC 7766 §6.2.3 asks for idle timeouts of seconds, not minutes, on a server's TCP connections. */
export const DEFAULT_TCP_IDLE_MS = 10_000;
export const DEFAULT_MAX_TCP_CLIENTS = 128;
/** A dozen stub resolvers behind one NAT still fit; one abusive address gets a sixteenth of the total. */
export const DEFAULT_MAX_TCP_PER_CLIENT = 8;
/** Queries held while a rebuild runs: beyond these a UDP query is dropped, a TCP one gets SERVFAIL. */
const MAX_PENDING_QUERIES = 4096;
const MAX_PENDING_BYTES = 4 * 1024 * 1024;
/** A TCP client that does not read its answers stops being read once this much waits for it. */
const MAX_TCP_UNSENT_BYTES = 256 * 1024;
/**
 * Encoded UDP answers kept per table, by the bytes of the query after its ID: the same question in
 * the same table has the same answer. The cache is dropped with its table, and emptied when full.
 */
const MAX_CACHED_ANSWERS = 10_000;
/** Larger queries (EDNS options, say) are answered without the cache. */
const MAX_CACHED_QUERY_BYTES = 512;
/** After a failed rebuild the next attempt waits this long, doubling while it keeps failing. */
const REBUILD_RETRY_MS = 250;
const MAX_REBUILD_RETRY_MS = 5000;
/** With port 0, UDP picks a free port; TCP may find it taken and the pair is drawn again. */
const BIND_ATTEMPTS = 10;

/** What the server needs of the control plane; `Cloud` is one. */
export interface DnsSource {
  listServices(): Promise<ServiceInput[]>;
  listVms(): Promise<VmInput[]>;
  /** Called after every committed change, in commit order; returns the unsubscribe function. */
  onEvents(fn: (events: readonly EventView[]) => void): () => void;
}

export interface DnsServerOptions {
  cloud: DnsSource;
  host?: string;
  /** 0 picks a free port (the same one for UDP and TCP); `port` of the result tells which. */
  port?: number;
  publicZone?: string;
  internalZone?: string;
  /** TTL of every record, and the negative-caching TTL of the SOA. */
  ttlSeconds?: number;
  /*
   * DNS over TCP limits (RFC 7766 §6.2.2), so that no client can starve the others of answers:
   * one address holds at most `maxTcpPerClient` connections (its next one is closed at once); past
   * `maxTcpClients` in all, the connection idle the longest is closed to make room for the new one
   * (a client holding 128 connections, even from 128 addresses, cannot keep a newcomer out); and a
   * connection idle for `tcpIdleMs` is closed. UDP has none of this: it holds no state.
   */
  /** A TCP connection with nothing to read or write for this long, or a message not received whole within it, is closed. Default 10 s. */
  tcpIdleMs?: number;
  /** TCP connections in all (default 128); a new one beyond them evicts the idlest. */
  maxTcpClients?: number;
  /** TCP connections one client address may hold at once (default 8). */
  maxTcpPerClient?: number;
  /** The zone serials follow this clock (at least the Unix time in seconds). */
  clock?: Clock;
  /** Where failures that no client sees go (a failed rebuild); stderr by default. */
  onError?: (e: unknown) => void;
}

export interface DnsServerStats {
  /** TCP connections open right now. */
  tcpClients: number;
  /** TCP connections closed at accept because their address held its share, and idle ones evicted for a newcomer. */
  tcpRefused: number;
  tcpEvicted: number;
  /** Queries waiting for a rebuild to finish. */
  pendingQueries: number;
  /** Messages received, over both transports. */
  messages: number;
  /** Messages that got no reply (not DNS queries, or held queries beyond the bound). */
  dropped: number;
  /** Tables built, the first included. */
  rebuilds: number;
  /** How long the last table took to read and build, in milliseconds. */
  lastRebuildMs: number;
}

export interface DnsServer {
  readonly address: string;
  readonly port: number;
  /** The zone table queries are answered from right now. */
  table(): ZoneTable;
  stats(): DnsServerStats;
  /** Stops listening, closes every connection and leaves the event stream. */
  close(): Promise<void>;
}

type Waiter = { generation: number; bytes: number; run: (table: ZoneTable | null) => void };

/**
 * The table and what keeps it current. Each event batch asks for a new generation; one rebuild
 * runs at a time, and a rebuild answers every request made before it began reading.
 */
class ZoneFeed {
  private current: ZoneTable;
  private wanted = 0;
  private built = 0;
  private building = false;
  private retry: NodeJS.Timeout | undefined;
  private retryMs = REBUILD_RETRY_MS;
  private closed = false;
  private waiters: Waiter[] = [];
  private pendingBytes = 0;
  rebuilds = 1;
  lastRebuildMs = 0;

  constructor(
    private readonly source: DnsSource,
    private readonly config: ZoneConfig,
    private readonly clock: Clock,
    private readonly onError: (e: unknown) => void,
    first: ZoneTable,
  ) {
    this.current = first;
  }

  table(): ZoneTable {
    return this.current;
  }

  get pending(): number {
    return this.waiters.length;
  }

  /** A change was committed: the tables built from now on must include it. */
  changed(): void {
    this.wanted++;
    this.kick();
  }

  /**
   * Runs `fn` with a table that includes every change committed so far: at once, or when the
   * rebuild under way ends (with null if it failed). False when too many queries already wait.
   */
  withCurrent(bytes: number, fn: (table: ZoneTable | null) => void): boolean {
    if (this.built >= this.wanted) {
      fn(this.current);
      return true;
    }
    if (this.waiters.length >= MAX_PENDING_QUERIES || this.pendingBytes + bytes > MAX_PENDING_BYTES)
      return false;
    this.waiters.push({ generation: this.wanted, bytes, run: fn });
    this.pendingBytes += bytes;
    return true;
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    this.waiters = [];
    this.pendingBytes = 0;
  }

  private kick(): void {
    if (this.building || this.closed || this.retry !== undefined || this.built >= this.wanted) return;
    this.building = true;
    void this.rebuild(this.wanted);
  }

  private async rebuild(generation: number): Promise<void> {
    const t0 = performance.now();
    try {
      const services = await this.source.listServices();
      const vms = await this.source.listVms();
      if (this.closed) return;
      this.current = buildZoneTable({ services, vms }, this.config, this.current, this.clock.now().getTime());
      this.built = generation;
      this.rebuilds++;
      this.lastRebuildMs = performance.now() - t0;
      this.retryMs = REBUILD_RETRY_MS;
      this.release((w) => w.generation <= generation, this.current);
    } catch (e) {
      if (this.closed) return;
      this.onError(e);
      // Every query waiting now gets SERVFAIL rather than an answer that may be stale.
      this.release(() => true, null);
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.kick();
      }, this.retryMs);
      this.retryMs = Math.min(this.retryMs * 2, MAX_REBUILD_RETRY_MS);
      this.retry.unref();
    } finally {
      this.building = false;
      this.kick();
    }
  }

  private release(due: (w: Waiter) => boolean, table: ZoneTable | null): void {
    const ready = this.waiters.filter(due);
    if (ready.length === 0) return;
    this.waiters = this.waiters.filter((w) => !due(w));
    for (const w of ready) {
      this.pendingBytes -= w.bytes;
      w.run(table);
    }
  }
}

/**
 * TCP framing (RFC 1035 §4.2.2): a two-byte length, then the message. A message is copied once
 * into a buffer of its announced size, so a client that sends it a byte at a time costs no more.
 */
class Framer {
  private readonly head = Buffer.alloc(2);
  private headFill = 0;
  private body: Buffer | null = null;
  private bodyFill = 0;

  /** True when part of a message has arrived and the rest has not. */
  get partial(): boolean {
    return this.headFill > 0 || this.body !== null;
  }

  push(chunk: Buffer, onMessage: (msg: Buffer) => void): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.body === null) {
        if (this.headFill === 0 && chunk.length - off >= 2) {
          const len = chunk.readUInt16BE(off);
          if (chunk.length - off - 2 >= len) {
            // The common case: a whole message in the chunk, taken without a copy.
            onMessage(chunk.subarray(off + 2, off + 2 + len));
            off += 2 + len;
            continue;
          }
        }
        this.head[this.headFill++] = chunk[off++]!;
        if (this.headFill < 2) continue;
        this.headFill = 0;
        this.body = Buffer.allocUnsafe(this.head.readUInt16BE(0));
        this.bodyFill = 0;
      } else {
        const n = Math.min(this.body.length - this.bodyFill, chunk.length - off);
        chunk.copy(this.body, this.bodyFill, off, off + n);
        this.bodyFill += n;
        off += n;
      }
      if (this.body.length === this.bodyFill) {
        const msg = this.body;
        this.body = null;
        onMessage(msg);
      }
    }
  }
}

function listenUdp(socket: UdpSocket, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once('error', reject);
    socket.bind(port, host, () => {
      socket.off('error', reject);
      resolve();
    });
  });
}

function listenTcp(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function bindBoth(host: string, port: number): Promise<{ udp: UdpSocket; tcp: Server }> {
  for (let attempt = 1; ; attempt++) {
    const udp = createSocket({ type: isIPv6(host) ? 'udp6' : 'udp4' });
    try {
      await listenUdp(udp, host, port);
    } catch (e) {
      udp.close();
      throw new Error(`DNS cannot listen on ${host}:${port} (UDP): ${(e as Error).message}`, { cause: e });
    }
    const tcp = createServer();
    try {
      await listenTcp(tcp, host, udp.address().port);
      return { udp, tcp };
    } catch (e) {
      udp.close();
      const taken = (e as NodeJS.ErrnoException).code === 'EADDRINUSE';
      if (port !== 0 || !taken || attempt >= BIND_ATTEMPTS) {
        throw new Error(`DNS cannot listen on ${host}:${udp.address().port} (TCP): ${(e as Error).message}`, {
          cause: e,
        });
      }
    }
  }
}

/**
 * Starts the DNS server: reads the zones from the cloud, binds UDP and TCP on one port, and follows
 * the cloud's events. Rejects when either transport cannot listen.
 */
export async function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const host = options.host ?? DEFAULT_DNS_HOST;
  const tcpIdleMs = options.tcpIdleMs ?? DEFAULT_TCP_IDLE_MS;
  const clock = options.clock ?? systemClock;
  const onError =
    options.onError ??
    ((e: unknown) =>
      process.stderr.write(`vipdip dns: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`));
  let config = checkZoneConfig({
    publicZone: options.publicZone ?? DEFAULT_PUBLIC_ZONE,
    internalZone: options.internalZone ?? DEFAULT_INTERNAL_ZONE,
    ttlSeconds: options.ttlSeconds ?? DEFAULT_TTL_SECONDS,
    nsAddress: null,
  });
  const { udp, tcp } = await bindBoth(host, options.port ?? DEFAULT_DNS_PORT);
  const bound = udp.address();
  // The name server host's address is where we listen, when that is one IPv4 address.
  if (bound.family === 'IPv4' && bound.address !== '0.0.0.0')
    config = { ...config, nsAddress: bound.address };

  let feed: ZoneFeed | undefined;
  let early = 0;
  const unsubscribe = options.cloud.onEvents((events) => {
    // Runs inside the cloud's commit path: it must never throw there.
    try {
      // The zones hold names and addresses only: a VM's state or host, a pool, a network change
      // nothing in them (the event catalog says which types can), and cost no rebuild. A wake-up
      // that names no event is taken as a change.
      if (events.length > 0 && !events.some((e) => affectsDns(e.type))) return;
      if (feed === undefined) early++;
      else feed.changed();
    } catch (e) {
      onError(e);
    }
  });
  try {
    const first = buildZoneTable(
      { services: await options.cloud.listServices(), vms: await options.cloud.listVms() },
      config,
      undefined,
      clock.now().getTime(),
    );
    feed = new ZoneFeed(options.cloud, config, clock, onError, first);
    // A change committed while the first table was read may be in it or not: read again.
    if (early > 0) feed.changed();
  } catch (e) {
    unsubscribe();
    udp.close();
    tcp.close();
    throw e;
  }
  const zones = feed;
  const counters = { messages: 0, dropped: 0 };

  // ---------------------------------------------------------------- UDP

  const sent = (e: Error | null) => {
    if (e !== null) counters.dropped++;
  };
  let cache = { table: zones.table(), answers: new Map<string, Buffer>() };
  const replyUdp = (msg: Buffer, peer: RemoteInfo, table: ZoneTable | null) => {
    if (table === null) {
      const failure = failureReply(msg, RCODE.SERVFAIL);
      const out = failure === null ? null : encodeForUdp(failure);
      if (out === null) counters.dropped++;
      else udp.send(out, peer.port, peer.address, sent);
      return;
    }
    if (cache.table !== table) cache = { table, answers: new Map() };
    const key =
      msg.length >= 2 && msg.length <= MAX_CACHED_QUERY_BYTES ? msg.toString('latin1', 2) : undefined;
    const known = key === undefined ? undefined : cache.answers.get(key);
    if (known !== undefined) {
      const out = Buffer.allocUnsafe(known.length);
      known.copy(out);
      // The answer echoes the query's ID (RFC 1035 §4.1.1): the one field that differs.
      msg.copy(out, 0, 0, 2);
      udp.send(out, peer.port, peer.address, sent);
      return;
    }
    const reply = answerMessage(msg, table);
    const out = reply === null ? null : encodeForUdp(reply);
    if (out === null) {
      counters.dropped++;
      return;
    }
    if (key !== undefined) {
      if (cache.answers.size >= MAX_CACHED_ANSWERS) cache.answers.clear();
      cache.answers.set(key, out);
    }
    udp.send(out, peer.port, peer.address, sent);
  };
  udp.on('message', (msg, peer) => {
    counters.messages++;
    if (!zones.withCurrent(msg.length, (table) => replyUdp(msg, peer, table))) counters.dropped++;
  });
  // A failed send to one client must not stop the server; the error is counted, not thrown.
  udp.on('error', (e) => onError(e));

  // ---------------------------------------------------------------- TCP

  const sockets = new Set<Socket>();
  const limiter = new TcpConnectionLimiter<Socket>({
    total: options.maxTcpClients ?? DEFAULT_MAX_TCP_CLIENTS,
    perClient: options.maxTcpPerClient ?? DEFAULT_MAX_TCP_PER_CLIENT,
  });
  const tcpCounters = { refused: 0, evicted: 0 };
  tcp.on('error', (e) => onError(e));
  tcp.on('connection', (sock) => {
    sock.on('error', () => sock.destroy());
    const admission = limiter.admit(sock, sock.remoteAddress ?? '', performance.now());
    if (!admission.admitted) {
      tcpCounters.refused++;
      sock.destroy();
      return;
    }
    if (admission.evict !== undefined) {
      tcpCounters.evicted++;
      admission.evict.destroy();
    }
    sockets.add(sock);
    sock.on('close', () => {
      sockets.delete(sock);
      limiter.remove(sock);
    });
    sock.setNoDelay(true);
    // Idle: nothing read or written for tcpIdleMs.
    sock.setTimeout(tcpIdleMs, () => sock.destroy());
    // Slow: a message begun and not finished within tcpIdleMs, however steadily it trickles in.
    let deadline: NodeJS.Timeout | undefined;
    const framer = new Framer();
    const send = (reply: Reply | null) => {
      if (sock.destroyed) return;
      let out: Buffer | undefined;
      try {
        out = reply === null ? undefined : streamEncode(reply.packet);
      } catch {
        out = undefined;
      }
      // Without a reply to give, the stream cannot be trusted to be framed right: end it.
      if (out === undefined) {
        counters.dropped++;
        sock.destroy();
        return;
      }
      limiter.touch(sock, performance.now());
      if (!sock.write(out) && sock.writableLength > MAX_TCP_UNSENT_BYTES) {
        sock.pause();
        sock.once('drain', () => sock.resume());
      }
    };
    const onMessage = (msg: Buffer) => {
      counters.messages++;
      const queued = zones.withCurrent(msg.length, (table) =>
        send(table === null ? failureReply(msg, RCODE.SERVFAIL) : answerMessage(msg, table)),
      );
      if (!queued) send(failureReply(msg, RCODE.SERVFAIL));
    };
    sock.on('data', (chunk: Buffer) => {
      limiter.touch(sock, performance.now());
      framer.push(chunk, onMessage);
      if (!framer.partial) {
        clearTimeout(deadline);
        deadline = undefined;
      } else if (deadline === undefined) {
        deadline = setTimeout(() => sock.destroy(), tcpIdleMs);
      }
    });
    sock.on('close', () => clearTimeout(deadline));
  });

  let closing: Promise<void> | undefined;
  return {
    address: bound.address,
    port: bound.port,
    table: () => zones.table(),
    stats: () => ({
      tcpClients: sockets.size,
      tcpRefused: tcpCounters.refused,
      tcpEvicted: tcpCounters.evicted,
      pendingQueries: zones.pending,
      messages: counters.messages,
      dropped: counters.dropped,
      rebuilds: zones.rebuilds,
      lastRebuildMs: zones.lastRebuildMs,
    }),
    close: () =>
      (closing ??= (async () => {
        unsubscribe();
        zones.close();
        const tcpClosed = new Promise<void>((resolve) => tcp.close(() => resolve()));
        for (const s of sockets) s.destroy();
        await Promise.all([tcpClosed, new Promise<void>((resolve) => udp.close(() => resolve()))]);
      })()),
  };
}
