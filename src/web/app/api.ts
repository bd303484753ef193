/**
 * The dashboard's HTTP client: every call carries the bearer token in the Authorization header
 * (never in a URL), and every failure becomes an ApiProblem with the problem's title and detail,
 * so that no error is lost on the way to the screen.
 */
import type { Problem } from '../../core/api-shapes.ts';

export class ApiProblem extends Error {
  constructor(readonly problem: Problem) {
    super(`${problem.title}: ${problem.detail}`);
  }
  get status(): number {
    return this.problem.status;
  }
}

export interface ApiClient {
  get<T>(path: string, init?: { signal?: AbortSignal }): Promise<T>;
  send<T>(method: 'POST' | 'DELETE' | 'PATCH', path: string, body?: unknown): Promise<T>;
}

function isProblem(v: unknown): v is Problem {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Record<string, unknown>;
  return typeof p.title === 'string' && typeof p.detail === 'string' && typeof p.status === 'number';
}

/** A problem for a failure the server did not describe (no answer, or not problem+json). */
export function localProblem(title: string, detail: string, status = 0, code = 'CLIENT'): ApiProblem {
  return new ApiProblem({ type: 'about:blank', title, detail, status, code });
}

async function problemOf(res: Response): Promise<ApiProblem> {
  const text = await res.text().catch(() => '');
  try {
    const body: unknown = JSON.parse(text);
    if (isProblem(body)) return new ApiProblem(body);
  } catch {
    // not JSON: described below
  }
  return localProblem(
    `HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`,
    text.slice(0, 300) || 'the server sent no details',
    res.status,
    'HTTP',
  );
}

export function makeClient(token: string, onUnauthorized: (p: ApiProblem) => void): ApiClient {
  const request = async <T>(method: string, path: string, body?: unknown, signal?: AbortSignal) => {
    const headers: Record<string, string> = { authorization: `Bearer ${token}`, accept: 'application/json' };
    if (body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(path, {
        method,
        headers,
        cache: 'no-store',
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signal ? { signal } : {}),
      });
    } catch (e) {
      if (signal?.aborted) throw e;
      throw localProblem(
        'no answer from the server',
        `${method} ${path} failed: ${e instanceof Error ? e.message : String(e)}. Is vipdip up running?`,
        0,
        'NETWORK',
      );
    }
    if (!res.ok) {
      const p = await problemOf(res);
      if (res.status === 401) onUnauthorized(p);
      throw p;
    }
    if (res.status === 204) return undefined as T;
    return (await res.json()) as T;
  };
  return {
    get: (path, init) => request('GET', path, undefined, init?.signal),
    send: (method, path, body) => request(method, path, body),
  };
}
