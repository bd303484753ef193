/**
 * What happens to a new flow, decided without sockets: the ACL first (before any backend is chosen),
 * then the flow limits, then the picker; and the source address the backend will see. The TCP and
 * UDP proxies call `admit()` once per new flow and `release()` when it ends; the control path
 * replaces the whole `EndpointPolicy` at once, so a flow never sees half of a change.
 */
import type { AclCheck } from './acl.ts';
import { backendKey, type PassiveHealth } from './passive.ts';
import type { PickedBackend, PickerSnapshot } from './picker.ts';

/** Why a flow was refused: small integers, so the per-flow path allocates nothing to say it. */
export const REFUSE_ACL = 1;
export const REFUSE_NO_BACKEND = 2;
export const REFUSE_ENDPOINT_LIMIT = 3;
export const REFUSE_CLIENT_LIMIT = 4;
export type Refusal = 1 | 2 | 3 | 4;

export const REFUSAL_NAMES: Readonly<Record<Refusal, string>> = {
  1: 'denied by the ACL',
  2: 'no healthy backend',
  3: 'endpoint flow limit reached',
  4: 'client flow limit reached',
};

export interface EndpointPolicy {
  readonly picker: PickerSnapshot;
  readonly acl: AclCheck;
  /**
   * Source NAT for VM → VIP traffic (R6): a caller's DIP (as a number) → the address its flows leave
   * from, its service's VIP or its own ILPIP, as dotted-quad text for bind().
   */
  readonly snat: ReadonlyMap<number, string>;
  /** Bind the upstream side to the client's own address, so the backend sees it. */
  readonly preserveClient: boolean;
  /** The source address the kernel gives an unbound upstream socket (no bind needed for it), if any. */
  readonly implicitSource?: string;
  /** Flows open at once on this endpoint, and per client address; beyond them new ones are refused. */
  readonly maxFlows: number;
  readonly maxFlowsPerClient: number;
  /**
   * What real connections said of the backends (shared by every listener of a driver, and mutable:
   * it changes between snapshots). New flows avoid a tripped backend while another healthy one is left.
   */
  readonly passive?: PassiveHealth;
}

export interface AdmissionCounters {
  /** Flows admitted since the listener opened. */
  accepted: number;
  /** Flows refused, by reason. */
  deniedAcl: number;
  noBackend: number;
  overLimit: number;
  /** Flows open now. */
  active: number;
}

export class Admission {
  readonly counters: AdmissionCounters = { accepted: 0, deniedAcl: 0, noBackend: 0, overLimit: 0, active: 0 };
  private readonly perClient = new Map<number, number>();

  constructor(
    /** The listener's own address and port, numbers, which the flow hash includes. */
    readonly address: number,
    /** Set once the listener is bound (a listener asked for port 0 learns its port then). */
    public port: number,
    readonly protocolNumber: number,
    public policy: EndpointPolicy,
  ) {}

  /**
   * The backend for a new flow from `srcIp:srcPort`, or the reason it is refused. An admitted flow
   * counts against the limits until `release(srcIp)`.
   */
  admit(srcIp: number, srcPort: number): PickedBackend | Refusal {
    const p = this.policy;
    if (!p.acl(srcIp)) {
      this.counters.deniedAcl++;
      return REFUSE_ACL;
    }
    if (this.counters.active >= p.maxFlows) {
      this.counters.overLimit++;
      return REFUSE_ENDPOINT_LIMIT;
    }
    const mine = this.perClient.get(srcIp) ?? 0;
    if (mine >= p.maxFlowsPerClient) {
      this.counters.overLimit++;
      return REFUSE_CLIENT_LIMIT;
    }
    let b = p.picker.pickTuple(srcIp, srcPort, this.address, this.port, this.protocolNumber);
    const passive = p.passive;
    if (b !== undefined && passive !== undefined && passive.isOut(backendKey(b.address, b.port))) {
      // Tripped since the snapshot was built: another healthy backend if one is left, else try it anyway.
      b =
        p.picker.pickTupleAvoiding(srcIp, srcPort, this.address, this.port, this.protocolNumber, (x) =>
          passive.isOut(backendKey(x.address, x.port)),
        ) ?? b;
    }
    if (b === undefined) {
      this.counters.noBackend++;
      return REFUSE_NO_BACKEND;
    }
    this.perClient.set(srcIp, mine + 1);
    this.counters.active++;
    this.counters.accepted++;
    return b;
  }

  /**
   * Where an admitted flow goes when its connect to every backend of `tried` failed: another healthy
   * backend, preferring those passive health has not tripped; undefined when none is left. The flow
   * stays admitted (no new limit check: it is the same flow).
   */
  redispatch(srcIp: number, srcPort: number, tried: readonly PickedBackend[]): PickedBackend | undefined {
    const p = this.policy;
    const passive = p.passive;
    const triedIt = (x: PickedBackend) => tried.some((t) => t.address === x.address && t.port === x.port);
    const args = [srcIp, srcPort, this.address, this.port, this.protocolNumber] as const;
    return (
      (passive === undefined
        ? undefined
        : p.picker.pickTupleAvoiding(
            ...args,
            (x) => triedIt(x) || passive.isOut(backendKey(x.address, x.port)),
          )) ?? p.picker.pickTupleAvoiding(...args, triedIt)
    );
  }

  release(srcIp: number): void {
    const mine = this.perClient.get(srcIp);
    if (mine === undefined) return;
    if (mine <= 1) this.perClient.delete(srcIp);
    else this.perClient.set(srcIp, mine - 1);
    this.counters.active--;
  }

  /**
   * The address the upstream side binds to: the caller's VIP for a known DIP, else the client's own;
   * undefined when no bind is needed. A client at the kernel's own source for the backend
   * (`implicitSource`: 127.0.0.1 on loopback) needs none, and a bind there would cost dearly: bind()
   * must find a port no socket on that address holds, the client's own TIME_WAIT ports included,
   * where connect() alone only needs a unique 4-tuple.
   */
  sourceFor(srcIp: number, srcText: string): string | undefined {
    const p = this.policy;
    const nat = p.snat.get(srcIp);
    if (nat !== undefined) return nat;
    return p.preserveClient && srcText !== p.implicitSource ? srcText : undefined;
  }
}

/**
 * Dotted-quad text as the kernel writes it (no leading zeros, no spaces) to an unsigned 32-bit number,
 * or -1. Faster than the strict parser of core/ip.ts, which is for text from people.
 */
export function ipv4FromSocket(text: string): number {
  let n = 0;
  let octet = 0;
  let digits = 0;
  let dots = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) {
      if (digits === 0 || octet > 255) return -1;
      n = n * 256 + octet;
      octet = 0;
      digits = 0;
      dots++;
    } else if (c >= 48 && c <= 57 && digits < 3) {
      octet = octet * 10 + (c - 48);
      digits++;
    } else if (c === 58 && i < 7) {
      // An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) from a dual-stack socket: read its tail.
      const tail = text.lastIndexOf(':');
      return text.slice(0, tail + 1).toLowerCase() === '::ffff:' ? ipv4FromSocket(text.slice(tail + 1)) : -1;
    } else return -1;
  }
  if (dots !== 3 || digits === 0 || octet > 255) return -1;
  return n * 256 + octet;
}
