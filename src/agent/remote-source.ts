/**
 * The control plane over HTTP, for a standalone agent (`vipdip agent --control URL`): snapshots from
 * GET /v1/services and /v1/vms (and /v1/images and /v1/vnets, read again only after an event changed
 * one or the stream reconnected), changes from the event stream (GET /v1/events/stream, resumed with
 * Last-Event-ID after any disconnect, so no change is missed), reports by PUT /v1/agents/:name/report.
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
import { affectsDataPlane, type ControlSource } from './source.ts';

/** The server sends a comment every 15 s; three missed ones mean the connection is dead. */
const STREAM_STALL_MS = 45_000;
const RECONNECT_FIRST_MS = 250;
const RECONNECT_MAX_MS = 5000;
const REQUEST_TIMEOUT_MS = 30_000;
const EVENTS_PAGE = 1000;

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
  /**
   * Images and VNets change seldom and a VM's change needs neither: they are read whole, but only
   * when an event of theirs came or the stream (re)connected (a change may have been missed), so
   * an event costs no listing of them.
   */
  private images: readonly ImageView[] = [];
  private vnets: readonly VnetView[] = [];
  private imagesDirty = true;
  private vnetsDirty = true;
  /** Listings of /v1/vnets made, for tests. */
  vnetReads = 0;

  constructor(private readonly opts: RemoteSourceOptions) {
    this.url = opts.url.replace(/\/+$/, '');
  }

  async snapshot(): Promise<ControlSnapshot> {
    // Cleared before the read: an event that lands during it marks them again, to be read next time.
    const readImages = this.imagesDirty;
    const readVnets = this.vnetsDirty;
    this.imagesDirty = false;
    this.vnetsDirty = false;
    try {
      const [services, vms, images, vnets] = await Promise.all([
        this.get<ServiceView[]>('/v1/services'),
        this.get<VmView[]>('/v1/vms'),
        readImages ? this.get<ImageView[]>('/v1/images') : this.images,
        readVnets ? this.get<VnetView[]>('/v1/vnets') : this.vnets,
      ]);
      if (readVnets) this.vnetReads++;
      this.images = images;
      this.vnets = vnets;
      return { services, vms, images, vnets };
    } catch (e) {
      this.imagesDirty ||= readImages;
      this.vnetsDirty ||= readVnets;
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
        this.imagesDirty = true;
        this.vnetsDirty = true;
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
            this.lastSeq = e.seq;
            const kind = eventKind(e.type);
            if (kind === 'image') this.imagesDirty = true;
            if (kind === 'vnet') this.vnetsDirty = true;
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
      throw new Error(`${method} ${path} answered HTTP ${res.status}: ${detail}`);
    }
    return (text === '' ? undefined : JSON.parse(text)) as T;
  }
}

function describe(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const cause = e.cause as { code?: string; message?: string } | undefined;
  return cause?.code ?? cause?.message ?? e.message;
}
