/**
 * The TCP side of the balancer: one listener per VIP:port. The per-connection path is kept short on
 * purpose (this is where new connections per second are won or lost): read the client's address,
 * `admit()` on the current policy (ACL, limits, Maglev pick; no allocation), connect upstream at once
 * (Node buffers what the client sends until the upstream connect completes, so no bytes wait on an
 * extra event), and relay with explicit backpressure. A refused flow is reset (RST), never left
 * hanging. Half-closes pass through in both directions; an error on one side resets the other.
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
import { proxyV2Header } from './proxy-protocol.ts';
import type { TimeSource } from './time.ts';

/**
 * Socket buffers of 256 KiB on both sides: measured on this machine, the default 64 KiB halves the
 * throughput of a single stream (see BENCHMARKS.md, dataplane).
 */
export const SOCKET_HIGH_WATER_MARK_BYTES = 256 * 1024;

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
}

export interface TcpListenerUpdate {
  policy: EndpointPolicy;
  idleMs: number;
  proxyProtocol: boolean;
}

export class TcpListener {
  readonly admission: Admission;
  private readonly server: Server;
  /** Open flows, client socket → upstream socket. */
  private readonly flows = new Map<Socket, Socket>();
  private idleWallMs: number;
  private proxyProtocol: boolean;
  /** Flows closed for idling, since the listener opened. */
  idleClosed = 0;
  /** Flows whose upstream failed (refused, reset, unreachable). */
  upstreamErrors = 0;

  private constructor(private readonly opts: TcpListenerOptions) {
    this.admission = new Admission(opts.address, opts.port, PROTOCOL_NUMBER.tcp, opts.policy);
    this.idleWallMs = opts.time.wallMs(opts.idleMs);
    this.proxyProtocol = opts.proxyProtocol;
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
      for (const [client, upstream] of this.flows) {
        client.destroy();
        upstream.destroy();
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
    const local = admission.sourceFor(srcIp, srcText);
    const upstream = connect(connectOptions(picked.host, picked.port, local));
    if (this.proxyProtocol) {
      const from = local === undefined ? srcIp : ipv4FromSocket(local);
      upstream.write(proxyV2Header('tcp', from, srcPort, this.opts.address, admission.port));
    }
    this.flows.set(client, upstream);
    client.setTimeout(this.idleWallMs);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.flows.delete(client);
      admission.release(srcIp);
    };

    client.on('data', (d: Buffer) => {
      if (!upstream.write(d)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (d: Buffer) => {
      if (!client.write(d)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    // A FIN passes on as a half-close; when it is the second FIN of the flow and nothing waits to be
    // written, a plain close says the same with one syscall less (no shutdown first).
    client.on('end', () => {
      if (upstream.readableEnded && upstream.writableLength === 0) upstream.destroy();
      else upstream.end();
    });
    upstream.on('end', () => {
      if (client.readableEnded && client.writableLength === 0) client.destroy();
      else client.end();
    });
    client.on('timeout', () => {
      this.idleClosed++;
      client.destroy();
      upstream.destroy();
    });
    client.on('error', () => {
      if (!upstream.destroyed) upstream.resetAndDestroy();
    });
    upstream.on('error', () => {
      this.upstreamErrors++;
      if (!client.destroyed) client.resetAndDestroy();
    });
    client.on('close', () => {
      release();
      // After a clean close of both directions the upstream only has its last writes to flush.
      if (!(upstream.readableEnded && upstream.writableEnded)) upstream.destroy();
    });
  }
}

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
