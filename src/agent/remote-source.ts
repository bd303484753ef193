/**
 * The control plane over HTTP, for a standalone agent (`vipdip agent --control URL`): changes from
 * the event stream (GET /v1/events/stream, resumed with Last-Event-ID after any disconnect, so no
 * change is missed), reports by PUT /v1/agents/:name/report. The snapshot is kept per change as the
 * in-process source keeps it (source.ts): a full read (GET /v1/services, /v1/vms, /v1/images,
 * /v1/vnets) at start, after every (re)connect of the stream, on a gap in the event sequence and
 * every FULL_RESYNC_INTERVAL_MS; in between, an event reads again only the VMs and services it names
 * (GET /v1/services/:service[/vms/:vm]), and the images or VNets only when it is one of theirs. So a
 * change costs the same few requests however large the cloud.
 * It needs the operator token: an agent serves every subscription's VMs on its hosts, and the
 * operator's GET /v1/vnets lists every subscription's VNets with their subnets' CIDRs, which the
 * netns driver builds bridges and VM namespaces from: the snapshot is the in-process source's.
 */
import { SseParser } from '../core/index.ts';
import {
  eventKind,
  type EventView,
  type ImageView,
  type ServiceView,
  type VmView,
  type VnetView,
} from '../lifecycle/index.ts';
import type { ControlSnapshot } from './desired.ts';
import type { AgentReport } from './report.ts';
import { affectsDataPlane, touchedBy, type ControlSource } from './source.ts';

/** The server sends a comment every 15 s; three missed ones mean the connection is dead. */
const STREAM_STALL_MS = 45_000;
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 30_000;
const EVENTS_PAGE = 1000;
/** However well the stream is followed, the whole state is read again this often (as in-process). */
const FULL_RESYNC_INTERVAL_MS = 60_000;
/**
 * More resources to read again than this (a large apply just committed), and one full read costs less
 * than a request per resource.
 */
const CHANGED_READS_MAX = 64;
/** Requests in flight while reading changed resources again. */
const CHANGED_READS_PARALLEL = 8;

export interface RemoteSourceOptions {
  url: string;
  token: string;
  agent: string;
  log?: (line: string) => void;
}

export class RemoteSource implements ControlSource {
  private readonly url: string;
  private stream: AbortController | undefined;
  private closed = false;
  /** The last event sequence number seen: where a reconnect resumes. */
  lastSeq = 0;
  /** Connections made to the event stream, for tests and status. */
  connections = 0;
  /** The snapshot, kept per change: VMs by `service/vm`, services by name. */
  private services = new Map<string, ServiceView>();
  private vms = new Map<string, VmView>();
  private dirtyServices = new Set<string>();
  private dirtyVms = new Set<string>();
  /**
   * Images and VNets change seldom and a VM's change needs neither: they are read whole, but only
   * when an event of theirs came or on a full read.
   */
  private images: readonly ImageView[] = [];
  private vnets: readonly VnetView[] = [];
  private imagesDirty = true;
  private vnetsDirty = true;
  private full = true;
  private lastFullMs = 0;
  /** Resources (services, VMs, images, VNets) received for snapshots, and listings of /v1/vnets: for tests. */
  resourcesRead = 0;
  vnetReads = 0;

  constructor(
    private readonly opts: RemoteSourceOptions,
    private readonly nowMs: () => number = () => performance.now(),
  ) {
    this.url = opts.url.replace(/\/+$/, '');
  }

  async snapshot(): Promise<ControlSnapshot> {
    try {
      const dirty = this.dirtyServices.size + this.dirtyVms.size;
      if (this.full || dirty > CHANGED_READS_MAX || this.nowMs() - this.lastFullMs >= FULL_RESYNC_INTERVAL_MS)
        await this.readAll();
      else await this.readChanged();
      // Cleared before the read: an event that lands during it marks them again, to be read next time.
      if (this.imagesDirty) {
        this.imagesDirty = false;
        this.images = await this.read<ImageView[]>('/v1/images');
      }
      if (this.vnetsDirty) {
        this.vnetsDirty = false;
        this.vnets = await this.read<VnetView[]>('/v1/vnets');
        this.vnetReads++;
      }
    } catch (e) {
      // Whatever was half read is read again whole.
      this.full = true;
      throw e;
    }
    return {
      services: [...this.services.values()],
      vms: [...this.vms.values()],
      images: this.images,
      vnets: this.vnets,
    };
  }

  private async readAll(): Promise<void> {
    this.full = false;
    this.imagesDirty = true;
    this.vnetsDirty = true;
    this.dirtyServices = new Set();
    this.dirtyVms = new Set();
    this.lastFullMs = this.nowMs();
    const [services, vms] = await Promise.all([
      this.read<ServiceView[]>('/v1/services'),
      this.read<VmView[]>('/v1/vms'),
    ]);
    this.services = new Map(services.map((s) => [s.name, s]));
    this.vms = new Map(vms.map((v) => [`${v.service}/${v.name}`, v]));
  }

  private async readChanged(): Promise<void> {
    const jobs: (() => Promise<void>)[] = [];
    for (const name of this.dirtyServices) {
      jobs.push(async () => {
        const s = await this.readOrGone<ServiceView>(`/v1/services/${encodeURIComponent(name)}`);
        if (s === undefined) this.services.delete(name);
        else this.services.set(name, s);
      });
    }
    for (const key of this.dirtyVms) {
      const [service, vm] = key.split('/') as [string, string];
      jobs.push(async () => {
        const v = await this.readOrGone<VmView>(
          `/v1/services/${encodeURIComponent(service)}/vms/${encodeURIComponent(vm)}`,
        );
        if (v === undefined) this.vms.delete(key);
        else this.vms.set(key, v);
      });
    }
    this.dirtyServices = new Set();
    this.dirtyVms = new Set();
    const worker = async () => {
      for (let job = jobs.shift(); job !== undefined; job = jobs.shift()) await job();
    };
    await Promise.all(Array.from({ length: CHANGED_READS_PARALLEL }, worker));
  }

  private async read<T>(path: string): Promise<T> {
    const r = await this.get<T>(path);
    this.resourcesRead += Array.isArray(r) ? r.length : 1;
    return r;
  }

  /** A resource deleted since its event: gone from the snapshot. */
  private async readOrGone<T>(path: string): Promise<T | undefined> {
    try {
      return await this.read<T>(path);
    } catch (e) {
      if (e instanceof HttpStatusError && e.status === 404) return undefined;
      throw e;
    }
  }

  /**
   * Follows the event stream from the log's current end. `onChange` runs for every event that
   * concerns the data plane, and once after every (re)connect, since the state may have moved while
   * the stream was down.
   */
  subscribe(onChange: () => void): () => void {
    void this.follow(onChange);
    return () => this.stream?.abort();
  }

  async report(r: AgentReport): Promise<void> {
    await this.request('PUT', `/v1/agents/${encodeURIComponent(this.opts.agent)}/report`, r);
  }

  close(): Promise<void> {
    this.closed = true;
    this.stream?.abort();
    return Promise.resolve();
  }

  /** The sequence number of the last event in the log (paged through once, at start). */
  private async logEnd(): Promise<number> {
    let since = 0;
    for (;;) {
      const page = await this.get<{ events: EventView[]; next: number }>(
        `/v1/events?since=${since}&limit=${EVENTS_PAGE}`,
      );
      if (page.events.length < EVENTS_PAGE) return page.next;
      since = page.next;
    }
  }

  private async follow(onChange: () => void): Promise<void> {
    let retryMs = RECONNECT_FIRST_MS;
    let started = false;
    while (!this.closed) {
      const ac = new AbortController();
      this.stream = ac;
      let stall: NodeJS.Timeout | undefined;
      const watchdog = () => {
        clearTimeout(stall);
        stall = setTimeout(() => ac.abort(), STREAM_STALL_MS);
        stall.unref();
      };
      try {
        if (!started) {
          this.lastSeq = await this.logEnd();
          started = true;
        }
        watchdog();
        const res = await fetch(`${this.url}/v1/events/stream`, {
          headers: {
            accept: 'text/event-stream',
            authorization: `Bearer ${this.opts.token}`,
            'last-event-id': String(this.lastSeq),
          },
          signal: ac.signal,
        });
        if (!res.ok || res.body === null) throw new Error(`the event stream answered HTTP ${res.status}`);
        this.connections++;
        retryMs = RECONNECT_FIRST_MS;
        // The state may have moved while the stream was down: everything is read again.
        this.full = true;
        onChange();
        const parser = new SseParser();
        const decoder = new TextDecoder();
        for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
          watchdog();
          let changed = false;
          for (const m of parser.push(decoder.decode(chunk, { stream: true }))) {
            if (m.event === 'health' || m.id === undefined) continue;
            const e = JSON.parse(m.data) as EventView;
            if (typeof e.seq !== 'number' || e.seq <= this.lastSeq) continue;
            if (e.seq !== this.lastSeq + 1) this.full = true; // a change may have been missed
            this.lastSeq = e.seq;
            const kind = eventKind(e.type);
            if (kind === 'image') this.imagesDirty = true;
            if (kind === 'vnet') this.vnetsDirty = true;
            const t = touchedBy(e);
            for (const v of t.vms) this.dirtyVms.add(v);
            for (const sv of t.services) this.dirtyServices.add(sv);
            changed ||= affectsDataPlane(e.type);
          }
          if (changed) onChange();
        }
      } catch (e) {
        if (this.closed) break;
        this.opts.log?.(`event stream from ${this.url}: ${describe(e)}; reconnecting in ${retryMs} ms`);
      } finally {
        clearTimeout(stall);
      }
      if (this.closed) break;
      await new Promise((r) => setTimeout(r, retryMs).unref());
      retryMs = Math.min(RECONNECT_MAX_MS, retryMs * 2);
    }
  }

  private get<T>(path: string): Promise<T> {
    return this.request<T>('GET', path);
  }

  private async request<T>(method: string, path: string, body?: unknown): Promise<T> {
    let res: Response;
    try {
      res = await fetch(`${this.url}${path}`, {
        method,
        headers: {
          accept: 'application/json',
          authorization: `Bearer ${this.opts.token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (e) {
      throw new Error(`cannot reach ${this.url}: ${describe(e)}`);
    }
    const text = await res.text();
    if (!res.ok) {
      let detail = text.slice(0, 200);
      try {
        detail = (JSON.parse(text) as { detail?: string }).detail ?? detail;
      } catch {
        // not a problem document
      }
      throw new HttpStatusError(res.status, `${method} ${path} answered HTTP ${res.status}: ${detail}`);
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }
}

class HttpStatusError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? e.message;
}
