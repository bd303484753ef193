/**
 * The live event stream, read with fetch() because EventSource cannot send the Authorization header
 * (and the token must never go in a URL). After any disconnect, a server restart included, it
 * reconnects with Last-Event-ID set to the last `id:` it saw, so the server replays exactly what
 * was missed. `event: health` messages carry no id and leave that position alone.
 */
import type { Event as ApiEvent, HealthChange } from '../../core/api-shapes.ts';
import { paths } from '../lib/paths.ts';
import { SseParser, type SseMessage } from '../lib/sse.ts';

export type LiveStatus = 'connecting' | 'live' | 'reconnecting' | 'stopped';

/** Reconnect delays: quick at first (a restart takes a second or two), then every few seconds. */
const BACKOFF_MS = [250, 500, 1000, 2000, 3000] as const;
/** The server sends a comment every 15 s; this long without a byte means the connection is dead. */
const SILENCE_LIMIT_MS = 45_000;

export interface LiveHandlers {
  onEvent(e: ApiEvent): void;
  onHealth(h: HealthChange): void;
  onStatus(s: LiveStatus): void;
  /** The token was refused: signing in again is the only way on. */
  onUnauthorized(): void;
}

export class LiveStream {
  status: LiveStatus = 'connecting';
  /** The last event id received: where a reconnect resumes. */
  lastEventId: string;
  private stopped = false;
  private abort: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly token: string,
    startAfter: number,
    private readonly handlers: LiveHandlers,
  ) {
    this.lastEventId = String(startAfter);
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
    this.setStatus('stopped');
  }

  private setStatus(s: LiveStatus): void {
    if (this.status === s) return;
    this.status = s;
    this.handlers.onStatus(s);
  }

  private async run(): Promise<void> {
    let attempt = 0;
    while (!this.stopped) {
      const delivered = await this.connectOnce();
      if (this.stopped) return;
      if (delivered) attempt = 0;
      this.setStatus('reconnecting');
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)]!;
      attempt++;
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, delay);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** One connection, until it ends; true when the server answered with a stream. */
  private async connectOnce(): Promise<boolean> {
    const ctrl = new AbortController();
    this.abort = ctrl;
    let silence: ReturnType<typeof setTimeout> | undefined;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(() => ctrl.abort(), SILENCE_LIMIT_MS);
    };
    try {
      heard();
      const res = await fetch(paths.stream, {
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'text/event-stream',
          'last-event-id': this.lastEventId,
        },
        cache: 'no-store',
        signal: ctrl.signal,
      });
      if (res.status === 401) {
        this.stop();
        this.handlers.onUnauthorized();
        return false;
      }
      if (!res.ok || res.body === null) return false;
      this.setStatus('live');
      const parser = new SseParser();
      parser.lastEventId = this.lastEventId;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        heard();
        for (const m of parser.push(value)) this.handle(m);
      }
      return true;
    } catch {
      // A refused connection, a reset, or the silence limit: reconnect.
      return false;
    } finally {
      clearTimeout(silence);
    }
  }

  private handle(m: SseMessage): void {
    let data: unknown;
    try {
      data = JSON.parse(m.data);
    } catch {
      return;
    }
    if (m.event === 'health') {
      this.handlers.onHealth(data as HealthChange);
      return;
    }
    this.handlers.onEvent(data as ApiEvent);
    // Moved only once the event is handled: a reconnect replays anything not yet handled.
    if (m.hasId) this.lastEventId = m.lastEventId;
  }
}
