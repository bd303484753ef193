/**
 * The UDP side of the balancer: one socket per VIP:port, and a flow table keyed by the client's
 * address and port (the listener fixes the rest of the 5-tuple). The first datagram of a flow is
 * admitted (ACL, limits, Maglev pick) and opens an upstream socket bound to the source the backend
 * should see; later datagrams of the flow follow it to the same backend whatever the set does, and
 * the backend's answers go back to the client from the VIP. A flow idle for the endpoint's idle
 * timeout is forgotten. Denied or unplaceable datagrams are dropped (UDP has no reset) and counted.
 * A backend whose port answers ICMP unreachable is treated as a refused connect: counted by passive
 * health, and a flow it never answered goes on to another backend.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { Admission, ipv4FromSocket, type EndpointPolicy, type Refusal } from './admission.ts';
import { PROTOCOL_NUMBER } from './hash.ts';
import { backendKey, type PassiveHealth } from './passive.ts';
import type { PickedBackend } from './picker.ts';
import { proxyV2Header } from './proxy-protocol.ts';
import { CONNECT_TRIES } from './tcp-proxy.ts';
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
  /** Counts ICMP-unreachable answers per backend as failed connects; shared by a driver's listeners. */
  passive?: PassiveHealth;
  onTripped?: (backend: PickedBackend, detail: string) => void;
}

export interface UdpListenerUpdate {
  policy: EndpointPolicy;
  idleMs: number;
  proxyProtocol: boolean;
}

/** Datagrams a flow keeps, until its backend first answers, to send again to the next backend. */
const HELD_DATAGRAMS_MAX = 8;

interface UdpFlow {
  readonly srcIp: number;
  readonly clientAddress: string;
  readonly clientPort: number;
  /** The backend it goes to now (the one it finally uses once it has answered). */
  backend: PickedBackend;
  upstream: Socket;
  readonly tried: PickedBackend[];
  /** The upstream socket is connected (only then are ICMP errors reported, and sends go out). */
  connected: boolean;
  /** Datagrams waiting for the connect. */
  pending: Buffer[];
  /** Datagrams sent while the backend has said nothing; null once it answered. */
  held: Buffer[] | null;
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
  /** Flows whose backend answered ICMP unreachable and that went on to another backend. */
  redispatched = 0;

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
    const data = flow.header === null ? msg : Buffer.concat([flow.header, msg]);
    if (flow.held !== null && flow.held.length < HELD_DATAGRAMS_MAX) flow.held.push(data);
    if (flow.connected) flow.upstream.send(data);
    else flow.pending.push(data);
  }

  private openFlow(key: number, srcIp: number, rinfo: RemoteInfo, backend: PickedBackend): UdpFlow {
    const from = this.admission.sourceFor(srcIp, rinfo.address);
    const flow: UdpFlow = {
      srcIp,
      clientAddress: rinfo.address,
      clientPort: rinfo.port,
      backend,
      upstream: undefined as unknown as Socket,
      tried: [],
      connected: false,
      pending: [],
      held: [],
      last: this.opts.time.now(),
      header: this.proxyProtocol
        ? proxyV2Header(
            'udp',
            from === undefined ? srcIp : ipv4FromSocket(from),
            rinfo.port,
            this.opts.address,
            this.admission.port,
          )
        : null,
    };
    this.flows.set(key, flow);
    this.connectFlow(flow, backend, from);
    return flow;
  }

  /**
   * Points the flow at `backend` through a connected upstream socket: a connected UDP socket is told
   * of the ICMP port-unreachable its datagrams meet (ECONNREFUSED), which a backend that does not
   * listen answers. That counts as a failed connect, and a flow that had no answer yet goes on to
   * another backend with the datagrams it sent.
   */
  private connectFlow(flow: UdpFlow, backend: PickedBackend, local: string | undefined): void {
    const upstream = createSocket('udp4');
    flow.upstream = upstream;
    flow.backend = backend;
    flow.connected = false;
    flow.tried.push(backend);
    const current = () => flow.upstream === upstream;
    upstream.on('error', (e: NodeJS.ErrnoException) => {
      if (!current()) return;
      if (e.code === 'ECONNREFUSED') return this.unreachable(flow, local);
      this.forget(flow);
    });
    upstream.on('message', (reply) => {
      if (!current()) return;
      if (flow.held !== null) {
        flow.held = null;
        this.opts.passive?.success(backendKey(backend.address, backend.port));
      }
      flow.last = this.opts.time.now();
      this.datagramsOut++;
      this.socket.send(reply, flow.clientPort, flow.clientAddress);
    });
    upstream.bind({ port: 0, ...(local === undefined ? {} : { address: local }) }, () => {
      if (!current()) return;
      // A connect that fails is reported by the 'error' event above.
      upstream.connect(backend.port, backend.host, () => {
        if (!current()) return;
        flow.connected = true;
        for (const d of flow.pending) upstream.send(d);
        flow.pending = [];
      });
    });
  }

  private unreachable(flow: UdpFlow, local: string | undefined): void {
    const { backend } = flow;
    const passive = this.opts.passive;
    if (passive?.failure(backendKey(backend.address, backend.port)) === true) {
      this.opts.onTripped?.(backend, `${passive.threshold} failures in a row (port unreachable)`);
    }
    const next =
      flow.held !== null && flow.tried.length < CONNECT_TRIES
        ? this.admission.redispatch(flow.srcIp, flow.clientPort, flow.tried)
        : undefined;
    if (next === undefined) return this.forget(flow);
    const old = flow.upstream;
    this.redispatched++;
    flow.pending = [...flow.held!];
    this.connectFlow(flow, next, local);
    closeQuietly(old);
  }

  private forget(flow: UdpFlow): void {
    const key = flow.srcIp * 65536 + flow.clientPort;
    if (this.flows.get(key) !== flow) return;
    this.flows.delete(key);
    this.admission.release(flow.srcIp);
    closeQuietly(flow.upstream);
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

function closeQuietly(socket: Socket): void {
  try {
    socket.close();
  } catch {
    // already closed
  }
}
