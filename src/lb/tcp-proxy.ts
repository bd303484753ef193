/**
 * The TCP side of the balancer: one listener per VIP:port. The per-connection path is kept short on
 * purpose (this is where new connections per second are won or lost): read the client's address,
 * `admit()` on the current policy (ACL, limits, Maglev pick; no allocation), connect upstream at once
 * (Node buffers what the client sends until the upstream connect completes, so no bytes wait on an
 * extra event), and relay with explicit backpressure. A refused flow is reset (RST), never left
 * hanging. Half-closes pass through in both directions; an error on one side resets the other.
 *
 * A connect that fails before the backend has said a byte (refused, reset, no accept in time) is
 * retried on another healthy backend, up to CONNECT_TRIES tries within CONNECT_BUDGET_MS, as
 * HAProxy's `retries` + `option redispatch` do: the client never sees it. Each failure counts in the
 * shared passive health, which takes a backend out at its third failure in a row.
 */
import {
  createServer,
  connect,
  type NetConnectOpts,
  type Server,
  type Socket,
  type TcpNetConnectOpts,
} from 'node:net';
import { Admission, REFUSE_ACL, ipv4FromSocket, type EndpointPolicy, type Refusal } from './admission.ts';
import { PROTOCOL_NUMBER } from './hash.ts';
import { backendKey, type PassiveHealth } from './passive.ts';
import type { PickedBackend } from './picker.ts';
import { proxyV2Header } from './proxy-protocol.ts';
import type { TimeSource } from './time.ts';

/**
 * Socket buffers of 256 KiB on both sides: measured on this machine, the default 64 KiB halves the
 * throughput of a single stream (see BENCHMARKS.md, dataplane).
 */
export const SOCKET_HIGH_WATER_MARK_BYTES = 256 * 1024;

/** Tries of one flow's connect: the first and up to two redispatches (HAProxy's `retries 3` + `redispatch`). */
export const CONNECT_TRIES = 3;
/** One try waits this long (wall ms) for the backend to accept. */
export const CONNECT_TIMEOUT_MS = 2000;
/** Every try of one flow fits in this (wall ms); a later try gets what is left of it. */
export const CONNECT_BUDGET_MS = 5000;
/**
 * Client bytes kept until the backend's first byte, to send again to the next backend of a retry:
 * a request's head fits (16 KiB is more than most servers accept for one). A client that sends more
 * before any answer (an upload) is not retried, and its flow fails as before; the bound also keeps
 * what thousands of waiting flows hold to a few tens of MB.
 */
export const REPLAY_MAX_BYTES = 16 * 1024;

interface TcpFlow {
  readonly client: Socket;
  readonly srcIp: number;
  readonly srcPort: number;
  /** The address the upstream side binds, if any. */
  readonly local: string | undefined;
  upstream: Socket;
  /** The backend of the current try: the one the flow finally uses once it is connected. */
  backend: PickedBackend;
  readonly tried: PickedBackend[];
  /** Wall ms of the accept. */
  readonly started: number;
  /** What the client sent while the backend has said nothing; null once it answered (or too much). */
  replay: Buffer[] | null;
  /** The backend of the current try has sent a byte: the flow is its for good. */
  answered: boolean;
  replayBytes: number;
  clientEnded: boolean;
}

export interface TcpListenerOptions {
  host: string;
  /** The listener's address as a number (the same as `host`), hashed into every flow's tuple. */
  address: number;
  port: number;
  policy: EndpointPolicy;
  /** Idle timeout in model milliseconds. */
  idleMs: number;
  proxyProtocol: boolean;
  time: TimeSource;
  /** Called once per refused flow, for logs and metrics outside the hot path. */
  onRefused?: (reason: Refusal, srcIp: number) => void;
  /** Counts failed connects per backend; the driver shares one among its listeners. */
  passive?: PassiveHealth;
  /** Called when a failed connect trips a backend (passive health), outside the per-flow path. */
  onTripped?: (backend: PickedBackend, detail: string) => void;
  connectTries?: number;
  connectTimeoutMs?: number;
  connectBudgetMs?: number;
}

export interface TcpListenerUpdate {
  policy: EndpointPolicy;
  idleMs: number;
  proxyProtocol: boolean;
}

export class TcpListener {
  readonly admission: Admission;
  private readonly server: Server;
  /** The flow table: client socket → its flow (the upstream and the backend it finally reached). */
  private readonly flows = new Map<Socket, TcpFlow>();
  private readonly connectTries: number;
  private readonly connectTimeoutMs: number;
  private readonly connectBudgetMs: number;
  private idleWallMs: number;
  private proxyProtocol: boolean;
  /** Flows closed for idling, since the listener opened. */
  idleClosed = 0;
  /** Flows whose upstream failed (refused, reset, unreachable) after every try, or after answering. */
  upstreamErrors = 0;
  /** Tries that failed before the backend said anything (or closed without a byte), and tries sent on to another backend. */
  connectFailures = 0;
  redispatched = 0;

  private constructor(private readonly opts: TcpListenerOptions) {
    this.admission = new Admission(opts.address, opts.port, PROTOCOL_NUMBER.tcp, opts.policy);
    this.idleWallMs = opts.time.wallMs(opts.idleMs);
    this.proxyProtocol = opts.proxyProtocol;
    this.connectTries = opts.connectTries ?? CONNECT_TRIES;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    this.connectBudgetMs = opts.connectBudgetMs ?? CONNECT_BUDGET_MS;
    this.server = createServer(
      { allowHalfOpen: true, noDelay: true, highWaterMark: SOCKET_HIGH_WATER_MARK_BYTES },
      (client) => this.accept(client),
    );
    // An accept() failure (EMFILE under a flood, say) must not take the process down.
    this.server.on('error', () => {});
  }

  /** Binds host:port; rejects with the bind error (EADDRINUSE, EADDRNOTAVAIL…) and leaves nothing open. */
  static open(opts: TcpListenerOptions): Promise<TcpListener> {
    const l = new TcpListener(opts);
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => reject(e);
      l.server.once('error', onError);
      l.server.listen({ host: opts.host, port: opts.port, backlog: 4096, exclusive: true }, () => {
        l.server.off('error', onError);
        l.admission.port = l.port;
        resolve(l);
      });
    });
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === 'object' && a !== null ? a.port : this.opts.port;
  }

  get activeFlows(): number {
    return this.flows.size;
  }

  /** Swaps the policy for new flows; flows already open keep their backend (connection tracking). */
  update(u: TcpListenerUpdate): void {
    this.admission.policy = u.policy;
    this.idleWallMs = this.opts.time.wallMs(u.idleMs);
    this.proxyProtocol = u.proxyProtocol;
  }

  /** Stops listening and closes every open flow. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      for (const [client, flow] of this.flows) {
        client.destroy();
        flow.upstream.destroy();
      }
    });
  }

  private accept(client: Socket): void {
    const srcText = client.remoteAddress;
    const srcPort = client.remotePort;
    if (srcText === undefined || srcPort === undefined) {
      client.destroy(); // gone before we looked
      return;
    }
    const srcIp = ipv4FromSocket(srcText);
    const admission = this.admission;
    const picked = admission.admit(srcIp, srcPort);
    if (typeof picked === 'number') {
      client.on('error', ignore);
      client.resetAndDestroy();
      if (picked !== REFUSE_ACL || this.opts.onRefused !== undefined) this.opts.onRefused?.(picked, srcIp);
      return;
    }
    const flow: TcpFlow = {
      client,
      srcIp,
      srcPort,
      local: admission.sourceFor(srcIp, srcText),
      upstream: undefined as unknown as Socket,
      backend: picked,
      tried: [],
      started: Date.now(),
      replay: [],
      answered: false,
      replayBytes: 0,
      clientEnded: false,
    };
    this.flows.set(client, flow);
    client.setTimeout(this.idleWallMs);
    this.dispatch(flow, picked);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.flows.delete(client);
      admission.release(srcIp);
    };

    client.on('data', (d: Buffer) => {
      if (flow.replay !== null) {
        // Kept until the backend answers, so that a retry elsewhere can send it again.
        if (flow.replayBytes + d.length > REPLAY_MAX_BYTES) flow.replay = null;
        else {
          flow.replay.push(d);
          flow.replayBytes += d.length;
        }
      }
      if (!flow.upstream.write(d)) client.pause();
    });
    client.on('drain', () => flow.upstream.resume());
    // A FIN passes on as a half-close; when it is the second FIN of the flow and nothing waits to be
    // written, a plain close says the same with one syscall less (no shutdown first).
    client.on('end', () => {
      flow.clientEnded = true;
      const upstream = flow.upstream;
      if (upstream.readableEnded && upstream.writableLength === 0) upstream.destroy();
      else upstream.end();
    });
    client.on('timeout', () => {
      this.idleClosed++;
      client.destroy();
      flow.upstream.destroy();
    });
    client.on('error', () => {
      if (!flow.upstream.destroyed) flow.upstream.resetAndDestroy();
    });
    client.on('close', () => {
      release();
      const upstream = flow.upstream;
      // After a clean close of both directions the upstream only has its last writes to flush.
      if (!(upstream.readableEnded && upstream.writableEnded)) upstream.destroy();
    });
  }

  /**
   * Connects the flow to `backend`: one try. A try that fails before the backend said anything
   * (refused, reset, no accept within the connect timeout) goes on to another backend while tries
   * and budget are left; the client sees nothing of it. The bytes the client sent meanwhile are sent
   * again to the next backend, and its FIN if it sent one.
   */
  private dispatch(flow: TcpFlow, backend: PickedBackend): void {
    const { client } = flow;
    const upstream = connect(connectOptions(backend.host, backend.port, flow.local));
    flow.upstream = upstream;
    flow.backend = backend;
    flow.tried.push(backend);
    if (this.proxyProtocol) {
      const from = flow.local === undefined ? flow.srcIp : ipv4FromSocket(flow.local);
      upstream.write(proxyV2Header('tcp', from, flow.srcPort, this.opts.address, this.admission.port));
    }
    if (flow.replay !== null) for (const b of flow.replay) upstream.write(b);
    if (flow.clientEnded) upstream.end();
    let connected = false;
    const budgetLeft = this.connectBudgetMs - (Date.now() - flow.started);
    const timer = setTimeout(
      () => {
        if (flow.upstream === upstream && !connected) this.tryFailed(flow, upstream, 'no answer in time');
      },
      Math.max(1, Math.min(this.connectTimeoutMs, budgetLeft)),
    );
    const current = () => flow.upstream === upstream;

    upstream.on('connect', () => {
      connected = true;
      clearTimeout(timer);
    });
    upstream.on('data', (d: Buffer) => {
      if (!current()) return;
      if (!flow.answered) {
        // The backend has taken the flow: only now does its run of failures end (a backend that
        // accepts and resets every connection must still add up to a fault).
        flow.answered = true;
        flow.replay = null;
        this.opts.passive?.success(backendKey(backend.address, backend.port));
      }
      if (!client.write(d)) upstream.pause();
    });
    upstream.on('drain', () => {
      if (current()) client.resume();
    });
    const passEnd = () => {
      if (client.readableEnded && client.writableLength === 0) client.destroy();
      else client.end();
    };
    upstream.on('end', () => {
      if (!current()) return;
      // Closed without a byte while the client still talks: a backend that died holding the request
      // (read, not answered) closes so. Another backend may answer; if none can, the FIN passes on.
      if (!flow.answered && !flow.clientEnded) {
        // Not counted against the backend: a server closing a connection left idle closes so too.
        return this.tryFailed(flow, upstream, 'closed without an answer', passEnd, false);
      }
      passEnd();
    });
    upstream.on('close', () => clearTimeout(timer));
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (!current()) return;
      // Refused, unreachable, or reset before the backend said a byte: it never took the flow.
      if (!connected || (!flow.answered && RESET_CODES.has(e.code ?? ''))) {
        return this.tryFailed(flow, upstream, errorReason(e));
      }
      this.upstreamErrors++;
      if (!client.destroyed) client.resetAndDestroy();
    });
  }

  /**
   * One try failed before the backend said anything: count it against the backend, and try another
   * backend if a try, time and the client's bytes are left; else reset the client.
   */
  private tryFailed(
    flow: TcpFlow,
    upstream: Socket,
    reason: string,
    giveUp?: () => void,
    count = true,
  ): void {
    upstream.on('error', ignore);
    const { backend, client } = flow;
    this.connectFailures++;
    const passive = this.opts.passive;
    if (count && passive?.failure(backendKey(backend.address, backend.port)) === true) {
      this.opts.onTripped?.(backend, `${passive.threshold} connects failed in a row (${reason})`);
    }
    if (client.destroyed) {
      upstream.destroy();
      return;
    }
    // Another try needs every byte the client sent (kept in `replay`), a try left and time left.
    const next =
      flow.replay !== null &&
      flow.tried.length < this.connectTries &&
      Date.now() - flow.started < this.connectBudgetMs
        ? this.admission.redispatch(flow.srcIp, flow.srcPort, flow.tried)
        : undefined;
    if (next === undefined) {
      if (giveUp !== undefined) return giveUp();
      upstream.destroy();
      this.upstreamErrors++;
      client.resetAndDestroy();
      return;
    }
    upstream.destroy();
    this.redispatched++;
    this.dispatch(flow, next);
    // A write to the failed try may have paused the client; the new try starts with an empty buffer.
    client.resume();
  }

  /** Each open flow with the backend it finally reached (for status and tests; not the hot path). */
  flowTable(): { client: string; backend: string; tries: number }[] {
    return [...this.flows.values()].map((f) => ({
      client: `${f.client.remoteAddress}:${f.client.remotePort}`,
      backend: `${f.backend.host}:${f.backend.port}`,
      tries: f.tried.length,
    }));
  }
}

/** Errors after a completed connect that still mean "this backend never took the flow". */
const RESET_CODES = new Set(['ECONNRESET', 'EPIPE']);

const errorReason = (e: NodeJS.ErrnoException): string =>
  e.code === 'ECONNREFUSED'
    ? 'connection refused'
    : e.code === 'ECONNRESET' || e.code === 'EPIPE'
      ? 'connection reset'
      : (e.code ?? e.message);

function ignore(): void {}

/**
 * Node's net.connect() takes `highWaterMark` (passed on to the stream), which @types/node 20 does not
 * declare (checked: the sockets report 256 KiB high-water marks, and the benchmark shows the effect).
 */
function connectOptions(host: string, port: number, localAddress: string | undefined): NetConnectOpts {
  const o: TcpNetConnectOpts & { highWaterMark: number } = {
    host,
    port,
    noDelay: true,
    allowHalfOpen: true,
    highWaterMark: SOCKET_HIGH_WATER_MARK_BYTES,
  };
  if (localAddress !== undefined) o.localAddress = localAddress;
  return o;
}
