/**
 * The `local` driver: the data plane as userspace listeners on loopback. Linux routes all of
 * 127.0.0.0/8 to the loopback interface, so every VIP, ILPIP and DIP in it is an address this
 * process can bind without privileges or configuration, as the old Azure Compute Emulator did with
 * 127.255.0.x. Each endpoint gets a TCP or UDP listener (lb/); reconciling swaps each listener's
 * policy in place (connection tracking keeps open flows where they are), opens what is new and closes
 * what is gone. Listen sockets survive every change but a change of address, port or protocol.
 */
import { VipdipError, cidrContainsCidr, formatCidr, parseCidr, parseIpv4, type Cidr } from '../core/index.ts';
import {
  PassiveHealth,
  PickerSnapshot,
  TcpListener,
  backendKey,
  type PickedBackend,
  UdpListener,
  compileAcl,
  maglevTableSize,
  probe,
  scaledTime,
  type AclCheck,
  type EndpointPolicy,
  type TimeSource,
} from '../lb/index.ts';
import {
  DEFAULT_DRIVER_LIMITS,
  type BackendFault,
  type DataPlaneDriver,
  type DesiredDataPlane,
  type DesiredEndpoint,
  type DriverLimits,
  type DriverStatus,
  type ListenerStatus,
  type ReconcileResult,
  type WorkloadCommand,
} from './driver.ts';

export const LOOPBACK_BLOCK = '127.0.0.0/8';
const LOOPBACK = parseCidr(LOOPBACK_BLOCK);
/**
 * The source Linux gives a socket connecting to any 127/8 address without a bind (the `src` of the
 * `local 127.0.0.0/8 dev lo` route); test/integration/lb-tcp.test.ts checks it holds.
 */
export const LOOPBACK_SOURCE = '127.0.0.1';
/** A listener that could not bind (its address:port taken by something else) is tried again this often. */
export const LISTEN_RETRY_MS = 2000;

/** The local driver's address rule, usable before any driver exists (at `up`, on the stored plan). */
export function checkLoopbackPlan(cidr: Cidr, what: string): void {
  if (cidrContainsCidr(LOOPBACK, cidr)) return;
  throw new VipdipError(
    'DRIVER_UNSUPPORTED',
    `${what} uses ${formatCidr(cidr)}, outside ${LOOPBACK_BLOCK}: the local driver carries traffic on loopback only; ` +
      'use the netns driver (Linux, root) for other addresses, or --driver none for a control plane without traffic',
  );
}

interface Entry {
  desired: DesiredEndpoint;
  listener: TcpListener | UdpListener | undefined;
  error: string | null;
  /** What the current picker and ACL were built from, to rebuild them only when it changes. */
  pickerOf: string;
  picker: PickerSnapshot;
  aclOf: string;
  acl: AclCheck;
}

export interface LocalDriverOptions {
  time?: TimeSource;
  limits?: Partial<DriverLimits>;
  /** How long one connect try waits for a backend to accept (wall ms; CONNECT_TIMEOUT_MS by default). */
  connectTimeoutMs?: number;
}

export class LocalDriver implements DataPlaneDriver {
  readonly name = 'local' as const;
  readonly carriesTraffic = true;
  readonly prober = probe;
  private readonly time: TimeSource;
  private readonly limits: DriverLimits;
  private readonly connectTimeoutMs: number | undefined;
  private readonly entries = new Map<string, Entry>();
  private snat = new Map<number, string>();
  private snatOf = '';
  /** Reconciles run one after another, in the order asked. */
  private queue: Promise<unknown> = Promise.resolve();
  private last: DesiredDataPlane | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  /** What failed connects said of each DIP:port, shared by every listener. */
  readonly passive = new PassiveHealth();
  private readonly faultListeners = new Set<(f: BackendFault) => void>();

  constructor(opts: LocalDriverOptions = {}) {
    this.time = opts.time ?? scaledTime(1);
    this.limits = { ...DEFAULT_DRIVER_LIMITS, ...opts.limits };
    this.connectTimeoutMs = opts.connectTimeoutMs;
  }

  checkAddressPlan(cidr: Cidr, what: string): void {
    checkLoopbackPlan(cidr, what);
  }

  reconcile(desired: DesiredDataPlane): Promise<ReconcileResult> {
    const run = this.queue.then(() => this.apply(desired));
    this.queue = run.catch(() => {});
    return run;
  }

  status(): DriverStatus {
    const listeners: ListenerStatus[] = [];
    for (const e of this.entries.values()) {
      const l = e.listener;
      const c = l?.admission.counters;
      listeners.push({
        key: e.desired.key,
        address: e.desired.address,
        protocol: e.desired.protocol,
        port: e.desired.port,
        state: l === undefined ? 'failed' : 'listening',
        error: e.error,
        activeFlows: l?.activeFlows ?? 0,
        accepted: c?.accepted ?? 0,
        deniedAcl: c?.deniedAcl ?? 0,
        noBackend: c?.noBackend ?? 0,
        overLimit: c?.overLimit ?? 0,
      });
    }
    return { driver: 'local', listeners };
  }

  wrapWorkload(_vm: unknown, cmd: WorkloadCommand): WorkloadCommand {
    return cmd;
  }

  onBackendFault(listener: (f: BackendFault) => void): () => void {
    this.faultListeners.add(listener);
    return () => this.faultListeners.delete(listener);
  }

  /** Open TCP flows of one endpoint with the backend each finally reached (tests, diagnosis). */
  flowTable(key: string): { client: string; backend: string; tries: number }[] {
    const l = this.entries.get(key)?.listener;
    return l instanceof TcpListener ? l.flowTable() : [];
  }

  private tripped(b: PickedBackend, detail: string): void {
    const fault: BackendFault = { dip: b.host, port: b.port, detail };
    // Outside the flow's own stack: a listener must not run control-path work inside a socket callback.
    queueMicrotask(() => {
      for (const l of this.faultListeners) l(fault);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    await this.queue;
    await Promise.all([...this.entries.values()].map((e) => e.listener?.close() ?? Promise.resolve()));
    this.entries.clear();
  }

  private async apply(desired: DesiredDataPlane): Promise<ReconcileResult> {
    const result: ReconcileResult = { opened: 0, updated: 0, closed: 0, failed: [] };
    if (this.closed) return result;
    this.last = desired;
    clearTimeout(this.retry);
    this.retry = undefined;

    const snatOf = JSON.stringify(desired.snat);
    if (snatOf !== this.snatOf) {
      // Loopback cannot tell equal DIPs of two subscriptions apart: such a DIP gets no NAT rather
      // than a wrong one.
      const snat = new Map<number, string | null>();
      for (const s of desired.snat) {
        const k = parseIpv4(s.dip);
        snat.set(k, snat.has(k) ? null : s.source);
      }
      this.snat = new Map([...snat].filter((e): e is [number, string] => e[1] !== null));
      this.snatOf = snatOf;
    }
    // A backend the agent has taken out (or that left every set) needs no passive verdict any more.
    const present = new Set<number>();
    for (const e of desired.endpoints) {
      for (const b of e.backends) {
        const k = backendKey(parseIpv4(b.dip), b.port);
        if (b.healthy) present.add(k);
        else this.passive.clear(k);
      }
    }
    this.passive.retain(present);
    const wanted = new Set(desired.endpoints.map((e) => e.key));
    for (const [key, e] of this.entries) {
      if (wanted.has(key)) continue;
      this.entries.delete(key);
      await e.listener?.close();
      result.closed++;
    }
    for (const d of desired.endpoints) {
      let e = this.entries.get(d.key);
      if (e === undefined) {
        e = this.entry(d);
        this.entries.set(d.key, e);
      } else this.refresh(e, d);
      if (e.listener === undefined) {
        try {
          e.listener = await this.open(e);
          e.error = null;
          result.opened++;
        } catch (err) {
          e.error = `cannot listen on ${d.protocol} ${d.address}:${d.port}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`;
          result.failed.push({ key: d.key, error: e.error });
        }
      } else {
        e.listener.update({ policy: this.policy(e), idleMs: d.idleMs, proxyProtocol: d.proxyProtocol });
        result.updated++;
      }
    }
    if (result.failed.length > 0 && !this.closed) {
      this.retry = setTimeout(() => {
        if (this.last !== undefined) void this.reconcile(this.last);
      }, LISTEN_RETRY_MS);
      this.retry.unref();
    }
    return result;
  }

  private entry(d: DesiredEndpoint): Entry {
    const pickerOf = pickerKey(d);
    const aclOf = JSON.stringify(d.acl);
    return {
      desired: d,
      listener: undefined,
      error: null,
      pickerOf,
      picker: this.buildPicker(d),
      aclOf,
      acl: compileAcl(d.acl),
    };
  }

  /** Rebuilds only what changed: a Maglev table costs milliseconds, an ACL microseconds. */
  private refresh(e: Entry, d: DesiredEndpoint): void {
    e.desired = d;
    const pickerOf = pickerKey(d);
    if (pickerOf !== e.pickerOf) {
      e.picker = this.buildPicker(d);
      e.pickerOf = pickerOf;
    }
    const aclOf = JSON.stringify(d.acl);
    if (aclOf !== e.aclOf) {
      e.acl = compileAcl(d.acl);
      e.aclOf = aclOf;
    }
  }

  private buildPicker(d: DesiredEndpoint): PickerSnapshot {
    return PickerSnapshot.build({
      backends: d.backends.map((b) => ({
        id: b.id,
        address: parseIpv4(b.dip),
        port: b.port,
        healthy: b.healthy,
      })),
      mode: d.distribution,
      tableSize: maglevTableSize(d.backends.length, this.limits.tableSize),
    });
  }

  private policy(e: Entry): EndpointPolicy {
    return {
      picker: e.picker,
      acl: e.acl,
      snat: this.snat,
      preserveClient: true,
      implicitSource: LOOPBACK_SOURCE,
      maxFlows: this.limits.maxFlowsPerEndpoint,
      maxFlowsPerClient: this.limits.maxFlowsPerClient,
      passive: this.passive,
    };
  }

  private open(e: Entry): Promise<TcpListener | UdpListener> {
    const d = e.desired;
    const opts = {
      host: d.address,
      address: parseIpv4(d.address),
      port: d.port,
      policy: this.policy(e),
      idleMs: d.idleMs,
      proxyProtocol: d.proxyProtocol,
      time: this.time,
      passive: this.passive,
      onTripped: (b: PickedBackend, detail: string) => this.tripped(b, detail),
      ...(this.connectTimeoutMs === undefined ? {} : { connectTimeoutMs: this.connectTimeoutMs }),
    };
    return d.protocol === 'tcp' ? TcpListener.open(opts) : UdpListener.open(opts);
  }
}

const pickerKey = (d: DesiredEndpoint) =>
  `${d.distribution}|${d.backends.map((b) => `${b.id}=${b.dip}:${b.port}:${b.healthy ? 1 : 0}`).join(',')}`;
