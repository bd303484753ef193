/**
 * The UDP side of the balancer: one socket per VIP:port, and a flow table keyed by the client's
 * address and port (the listener fixes the rest of the 5-tuple). The first datagram of a flow is
 * admitted (ACL, limits, Maglev pick) and opens an upstream socket bound to the source the backend
 * should see; later datagrams of the flow follow it to the same backend whatever the set does, and
 * the backend's answers go back to the client from the VIP. A flow idle for the endpoint's idle
 * timeout is forgotten. Denied or unplaceable datagrams are dropped (UDP has no reset) and counted.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { Admission, ipv4FromSocket, type EndpointPolicy, type Refusal } from './admission.ts';
import { PROTOCOL_NUMBER } from './hash.ts';
import type { PickedBackend } from './picker.ts';
import { proxyV2Header } from './proxy-protocol.ts';
import type { TimeSource, Timer } from './time.ts';

export interface UdpListenerOptions {
  host: string;
  address: number;
  port: number;
  policy: EndpointPolicy;
  /** Idle timeout of a flow, in model milliseconds. */
  idleMs: number;
  proxyProtocol: boolean;
  time: TimeSource;
  onRefused?: (reason: Refusal, srcIp: number) => void;
}

export interface UdpListenerUpdate {
  policy: EndpointPolicy;
  idleMs: number;
  proxyProtocol: boolean;
}

interface UdpFlow {
  readonly srcIp: number;
  readonly clientAddress: string;
  readonly clientPort: number;
  readonly backend: PickedBackend;
  readonly upstream: Socket;
  /** Model time of the last datagram either way. */
  last: number;
  /** The PROXY v2 header this flow's datagrams carry, or null. */
  readonly header: Buffer | null;
}

export class UdpListener {
  readonly admission: Admission;
  private readonly socket: Socket;
  private readonly flows = new Map<number, UdpFlow>();
  private idleMs: number;
  private proxyProtocol: boolean;
  private sweeper: Timer | undefined;
  private closed = false;
  datagramsIn = 0;
  datagramsOut = 0;
  /** Datagrams dropped: refused flows, and answers from anyone but the flow's backend. */
  dropped = 0;
  expired = 0;

  private constructor(private readonly opts: UdpListenerOptions) {
    this.admission = new Admission(opts.address, opts.port, PROTOCOL_NUMBER.udp, opts.policy);
    this.idleMs = opts.idleMs;
    this.proxyProtocol = opts.proxyProtocol;
    this.socket = createSocket({ type: 'udp4', reuseAddr: false });
    this.socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
  }

  static open(opts: UdpListenerOptions): Promise<UdpListener> {
    const l = new UdpListener(opts);
    return new Promise((resolve, reject) => {
      const onError = (e: Error) => {
        l.socket.close();
        reject(e);
      };
      l.socket.once('error', onError);
      l.socket.bind({ address: opts.host, port: opts.port, exclusive: true }, () => {
        l.socket.off('error', onError);
        // Later socket errors (a send to a vanished client) concern one datagram, not the listener.
        l.socket.on('error', () => {});
        l.admission.port = l.port;
        l.scheduleSweep();
        resolve(l);
      });
    });
  }

  get port(): number {
    return this.socket.address().port;
  }

  get activeFlows(): number {
    return this.flows.size;
  }

  update(u: UdpListenerUpdate): void {
    this.admission.policy = u.policy;
    this.idleMs = u.idleMs;
    this.proxyProtocol = u.proxyProtocol;
  }

  close(): Promise<void> {
    this.closed = true;
    this.sweeper?.cancel();
    for (const f of this.flows.values()) this.forget(f);
    return new Promise((resolve) => this.socket.close(() => resolve()));
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    this.datagramsIn++;
    const srcIp = ipv4FromSocket(rinfo.address);
    const key = srcIp * 65536 + rinfo.port;
    let flow = this.flows.get(key);
    if (flow === undefined) {
      const picked = this.admission.admit(srcIp, rinfo.port);
      if (typeof picked === 'number') {
        this.dropped++;
        this.opts.onRefused?.(picked, srcIp);
        return;
      }
      flow = this.openFlow(key, srcIp, rinfo, picked);
    }
    flow.last = this.opts.time.now();
    const { backend, header, upstream } = flow;
    upstream.send(header === null ? msg : Buffer.concat([header, msg]), backend.port, backend.host);
  }

  private openFlow(key: number, srcIp: number, rinfo: RemoteInfo, backend: PickedBackend): UdpFlow {
    const local = this.admission.sourceFor(srcIp, rinfo.address);
    const upstream = createSocket('udp4');
    const from = local === undefined ? srcIp : ipv4FromSocket(local);
    const flow: UdpFlow = {
      srcIp,
      clientAddress: rinfo.address,
      clientPort: rinfo.port,
      backend,
      upstream,
      last: this.opts.time.now(),
      header: this.proxyProtocol
        ? proxyV2Header('udp', from, rinfo.port, this.opts.address, this.admission.port)
        : null,
    };
    // Datagrams sent before the bind completes wait in the socket's queue, in order.
    upstream.bind({ port: 0, ...(local === undefined ? {} : { address: local }) });
    upstream.on('error', () => this.forget(flow));
    upstream.on('message', (reply, from) => {
      if (from.port !== backend.port || from.address !== backend.host) {
        this.dropped++;
        return;
      }
      flow.last = this.opts.time.now();
      this.datagramsOut++;
      this.socket.send(reply, flow.clientPort, flow.clientAddress);
    });
    this.flows.set(key, flow);
    return flow;
  }

  private forget(flow: UdpFlow): void {
    const key = flow.srcIp * 65536 + flow.clientPort;
    if (this.flows.get(key) !== flow) return;
    this.flows.delete(key);
    this.admission.release(flow.srcIp);
    try {
      flow.upstream.close();
    } catch {
      // already closed
    }
  }

  /** Idle flows are swept a few times per idle timeout: a flow lives at most 1.25 × the timeout. */
  private scheduleSweep(): void {
    if (this.closed) return;
    this.sweeper = this.opts.time.after(Math.max(1, this.idleMs / 4), () => {
      const now = this.opts.time.now();
      for (const f of [...this.flows.values()]) {
        if (now - f.last >= this.idleMs) {
          this.expired++;
          this.forget(f);
        }
      }
      this.scheduleSweep();
    });
  }
}
