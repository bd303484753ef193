/**
 * A cache of API reads keyed by path. Pages read through useApi(path); the live stream tells the
 * cache what each event touches (lib/refresh.ts), and only those paths are fetched again, the ones
 * on screen at once and the others when next shown. A burst of events (a deallocation emits four)
 * is gathered for a moment and refetches each path once.
 */
import { useCallback, useSyncExternalStore } from 'react';
import { mergeRefresh, touches, type Refresh } from '../lib/refresh.ts';
import type { ApiClient, ApiProblem } from './api.ts';

/** How long a burst of events is gathered before the refetch. */
const REFRESH_BATCH_MS = 25;

export interface Snapshot<T> {
  data: T | undefined;
  error: ApiProblem | undefined;
  loading: boolean;
}

interface Entry {
  snap: Snapshot<unknown>;
  listeners: Set<() => void>;
  /** Only the newest fetch of an entry may write it. */
  gen: number;
  /** Fetched since the last change it was told of. */
  fresh: boolean;
}

const IDLE: Snapshot<never> = { data: undefined, error: undefined, loading: false };

export class ApiCache {
  private readonly entries = new Map<string, Entry>();
  private pending: Refresh[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly client: ApiClient) {}

  private entry(key: string): Entry {
    let e = this.entries.get(key);
    if (e === undefined) {
      e = {
        snap: { data: undefined, error: undefined, loading: true },
        listeners: new Set(),
        gen: 0,
        fresh: false,
      };
      this.entries.set(key, e);
    }
    return e;
  }

  subscribe(key: string, listener: () => void): () => void {
    const e = this.entry(key);
    e.listeners.add(listener);
    if (!e.fresh) void this.load(key, e);
    return () => {
      e.listeners.delete(listener);
    };
  }

  snapshot(key: string): Snapshot<unknown> {
    return this.entry(key).snap;
  }

  /** Refetches what a change touched, a moment from now, together with what else arrives. */
  refreshSoon(r: Refresh): void {
    this.pending.push(r);
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      const all = mergeRefresh(...this.pending.splice(0));
      this.refreshNow(all);
    }, REFRESH_BATCH_MS);
  }

  refreshNow(r: Refresh): void {
    for (const [key, e] of this.entries) {
      if (!touches(r, key)) continue;
      e.fresh = false;
      if (e.listeners.size > 0) void this.load(key, e);
    }
  }

  /** Fetches one path again (a page's retry button). */
  reload(key: string): void {
    const e = this.entries.get(key);
    if (e !== undefined) void this.load(key, e);
  }

  dispose(): void {
    clearTimeout(this.timer);
  }

  private set(e: Entry, snap: Snapshot<unknown>): void {
    e.snap = snap;
    for (const l of [...e.listeners]) l();
  }

  private async load(key: string, e: Entry): Promise<void> {
    const gen = ++e.gen;
    e.fresh = true;
    if (!e.snap.loading) this.set(e, { ...e.snap, loading: true });
    try {
      const data = await this.client.get<unknown>(key);
      if (gen === e.gen) this.set(e, { data, error: undefined, loading: false });
    } catch (err) {
      if (gen !== e.gen) return;
      e.fresh = false;
      this.set(e, { data: undefined, error: err as ApiProblem, loading: false });
    }
  }
}

/** Reads a path through the cache; null reads nothing (a page waiting for what it depends on). */
export function useApi<T>(cache: ApiCache, key: string | null): Snapshot<T> {
  const subscribe = useCallback(
    (l: () => void) => (key === null ? () => undefined : cache.subscribe(key, l)),
    [cache, key],
  );
  const get = useCallback(() => (key === null ? IDLE : cache.snapshot(key)), [cache, key]);
  return useSyncExternalStore(subscribe, get) as Snapshot<T>;
}
