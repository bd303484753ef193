/** The signed-in session every page reads: who the token is, and the shared client, cache and stores. */
import { createContext, useContext } from 'react';
import type { Whoami } from '../../core/api-shapes.ts';
import type { Refresh } from '../lib/refresh.ts';
import { localProblem, ApiProblem, type ApiClient } from './api.ts';
import type { ApiCache } from './cache.ts';
import type { LiveStatus } from './live.ts';
import type { EventBus, Problems, Watched } from './store.ts';

/** sessionStorage: the token lives as long as the tab, and no other tab or site sees it. */
export const TOKEN_KEY = 'vipdip.token';

export interface Session {
  whoami: Whoami;
  operator: boolean;
  client: ApiClient;
  cache: ApiCache;
  bus: EventBus;
  problems: Problems;
  live: Watched<LiveStatus>;
  signOut(): void;
  /**
   * Runs an action; a failure is shown to the user with the problem's title and detail. When the
   * live stream is down, what the action touched is fetched again at once.
   */
  act(label: string, run: () => Promise<unknown>, touched?: Refresh): Promise<boolean>;
}

export const SessionContext = createContext<Session | null>(null);

export function useSession(): Session {
  const s = useContext(SessionContext);
  if (s === null) throw new Error('useSession outside a signed-in session');
  return s;
}

export function asProblem(e: unknown): ApiProblem {
  if (e instanceof ApiProblem) return e;
  return localProblem('unexpected error', e instanceof Error ? e.message : String(e));
}
