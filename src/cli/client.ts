/**
 * How the client verbs reach a server: where (VIPDIP_URL), with which token (VIPDIP_TOKEN, else the
 * operator token of the local state directory), and how answers and failures come back. Every
 * failure becomes a one-line CliError; nothing here prints.
 *
 * This module stays light on purpose (no store, no server code): every client verb loads it, and a
 * CLI call should cost a process start, not the whole control plane.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest, type IncomingMessage, type RequestOptions } from 'node:http';
import type { Command } from 'commander';
import { join, resolve } from 'node:path';
import { OPERATOR_TOKEN_FILE } from '../core/state-files.ts';
import { ApiProblemError, CliError, UnreachableError, UsageError, type ProblemBody } from './errors.ts';
import { isVipdipRunning, readUpLock } from './up-lock.ts';

export const DEFAULT_URL = 'http://127.0.0.1:7480';
/** The state directory `vipdip up` uses by default (SPEC.md §7); its token file is the fallback. */
export const DEFAULT_STATE_DIR = '.vipdip';
/** Generous: an apply of a large topology is one transaction, but a hung server is still an error. */
export const REQUEST_TIMEOUT_MS = 120_000;

export interface Connection {
  /** The base URL without a trailing slash. */
  url: string;
  token: string;
  /** Where the token came from, to say so when the server refuses it. */
  tokenSource: string;
}

export interface ConnectionOptions {
  /** A state directory given with --state: its operator.token is the fallback token. */
  state?: string;
}

/**
 * Resolves the URL and the token. The URL: VIPDIP_URL, else the API of the `vipdip up` running on the
 * state directory (its lock says where it listens, so `up --listen 127.0.0.1:0` needs no
 * VIPDIP_URL), else DEFAULT_URL. The token: VIPDIP_TOKEN, else `<state dir>/operator.token`.
 */
export function resolveConnection(
  opts: ConnectionOptions = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Connection {
  const stateDir = resolve(cwd, opts.state ?? DEFAULT_STATE_DIR);
  const url = (env.VIPDIP_URL?.trim() || runningApi(stateDir) || DEFAULT_URL).replace(/\/+$/, '');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`VIPDIP_URL ${JSON.stringify(url)} is not a URL, such as ${DEFAULT_URL}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new UsageError(`VIPDIP_URL ${url} must be an http:// or https:// URL`);
  }
  const fromEnv = env.VIPDIP_TOKEN?.trim();
  if (fromEnv) return { url, token: fromEnv, tokenSource: 'VIPDIP_TOKEN' };

  const file = join(stateDir, OPERATOR_TOKEN_FILE);
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CliError(
      code === 'ENOENT'
        ? `no token: set VIPDIP_TOKEN, or run where ${DEFAULT_STATE_DIR}/${OPERATOR_TOKEN_FILE} is (or give --state DIR); ${file} does not exist`
        : `cannot read the token file ${file}: ${code ?? (e as Error).message}`,
    );
  }
  if (token === '') throw new CliError(`the token file ${file} is empty`);
  return { url, token, tokenSource: file };
}

/** The API address of the `vipdip up` holding the lock of `stateDir`, if one runs and listens. */
function runningApi(stateDir: string): string | undefined {
  const lock = readUpLock(stateDir);
  return lock?.api !== undefined && isVipdipRunning(lock.pid) ? lock.api : undefined;
}

/** A path with each interpolated value percent-encoded as one path segment. */
export function path(strings: TemplateStringsArray, ...values: (string | number)[]): string {
  return strings.reduce(
    (out, s, i) => out + s + (i < values.length ? encodeURIComponent(String(values[i])) : ''),
    '',
  );
}

export interface RequestInit {
  /** A JSON body. */
  json?: unknown;
  /** A text body, sent as is with `contentType`. */
  text?: string;
  contentType?: string;
  query?: Record<string, string | undefined>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export class Client {
  constructor(readonly conn: Connection) {}

  /** Sends one request; returns the parsed JSON answer (undefined for 204), or throws a CliError. */
  async request<T>(method: string, p: string, init: RequestInit = {}): Promise<T> {
    const res = await this.send(method, p, init, init.signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS));
    if (res.status < 200 || res.status > 299) throw this.failure(res.status, res.statusText, res.text);
    if (res.status === 204) return undefined as T;
    try {
      return (res.text === '' ? undefined : JSON.parse(res.text)) as T;
    } catch {
      throw new CliError(
        `${method} ${this.conn.url}${p} answered ${res.status} with a body that is not JSON`,
      );
    }
  }

  get<T>(p: string, query?: Record<string, string | undefined>): Promise<T> {
    return this.request<T>('GET', p, query === undefined ? {} : { query });
  }

  post<T>(p: string, json?: unknown): Promise<T> {
    return this.request<T>('POST', p, json === undefined ? {} : { json });
  }

  delete(p: string): Promise<void> {
    return this.request<void>('DELETE', p);
  }

  /**
   * Opens a long-lived response (the event stream); the caller reads its body. An error status
   * throws as any other request would.
   */
  async open(p: string, init: RequestInit & { signal: AbortSignal }): Promise<Response> {
    const { url, headers, body } = this.prepare(p, init);
    let res: Response;
    try {
      res = await fetch(url, {
        method: 'GET',
        headers,
        signal: init.signal,
        ...(body === undefined ? {} : { body }),
      });
    } catch (e) {
      throw unreachable(this.conn.url, e);
    }
    if (!res.ok) throw this.failure(res.status, res.statusText, await res.text().catch(() => ''));
    return res;
  }

  private prepare(
    p: string,
    init: RequestInit,
  ): { url: string; headers: Record<string, string>; body?: string } {
    const qs = Object.entries(init.query ?? {}).filter((e): e is [string, string] => e[1] !== undefined);
    const url = `${this.conn.url}${p}${qs.length > 0 ? `?${new URLSearchParams(qs).toString()}` : ''}`;
    const headers: Record<string, string> = {
      accept: 'application/json',
      authorization: `Bearer ${this.conn.token}`,
      ...init.headers,
    };
    if (init.json !== undefined) {
      headers['content-type'] = 'application/json';
      return { url, headers, body: JSON.stringify(init.json) };
    }
    if (init.text !== undefined) {
      headers['content-type'] = init.contentType ?? 'text/plain';
      return { url, headers, body: init.text };
    }
    return { url, headers };
  }

  /**
   * One request through node:http(s), not fetch: a CLI call is one or two requests, and fetch costs
   * each process loading undici (tens of ms) and then keeps the process alive for its idle
   * keep-alive socket (about 80 ms more, measured). No agent: the connection closes with the answer.
   */
  private async send(
    method: string,
    p: string,
    init: RequestInit,
    signal: AbortSignal,
  ): Promise<{ status: number; statusText: string; text: string }> {
    const { url, headers, body } = this.prepare(p, init);
    const request = url.startsWith('https:') ? (await import('node:https')).request : httpRequest;
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const opts: RequestOptions = { method, headers, signal, agent: false };
    try {
      return await new Promise((resolve, reject) => {
        const req = request(url, opts, (res: IncomingMessage) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () =>
            resolve({
              status: res.statusCode ?? 0,
              statusText: res.statusMessage ?? '',
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        });
        req.on('error', reject);
        req.end(body);
      });
    } catch (e) {
      // Made here, after the await, so that a --debug stack runs through the verb that asked.
      throw unreachable(this.conn.url, signal.aborted ? (signal.reason as unknown) : e);
    }
  }

  private failure(status: number, statusText: string, text: string): CliError {
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      body = undefined;
    }
    if (!isProblem(body)) {
      return new CliError(`${this.conn.url} answered HTTP ${status} ${statusText}`.trim());
    }
    if (status === 401) {
      return new ApiProblemError({ ...body, detail: `${body.detail} (token from ${this.conn.tokenSource})` });
    }
    return new ApiProblemError(body);
  }
}

function isProblem(b: unknown): b is ProblemBody {
  const o = b as Partial<ProblemBody> | null;
  return typeof o === 'object' && o !== null && typeof o.title === 'string' && typeof o.detail === 'string';
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  ETIMEDOUT: 'connection timed out',
  EHOSTUNREACH: 'host unreachable',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
};

/** Turns a failed request (node:http's error, or fetch's "fetch failed" with the reason in its cause) into one line naming the URL. */
export function unreachable(url: string, e: unknown): CliError {
  if (e instanceof Error && (e.name === 'TimeoutError' || e.name === 'AbortError')) {
    return new UnreachableError(
      e.name === 'TimeoutError'
        ? `${url} did not answer within ${REQUEST_TIMEOUT_MS / 1000} s`
        : `the request to ${url} was aborted`,
    );
  }
  const code = errorCode(e);
  const reason =
    (code !== undefined ? REASONS[code] : undefined) ??
    code ??
    (e instanceof Error ? ((e.cause as Error | undefined)?.message ?? e.message) : String(e));
  const hint = code === 'ECONNREFUSED' ? '; is `vipdip up` running there? (VIPDIP_URL sets the address)' : '';
  return new UnreachableError(`cannot connect to ${url}: ${reason}${hint}`);
}

function errorCode(e: unknown): string | undefined {
  // fetch failed → cause: a system error, or an AggregateError when several addresses were tried.
  for (let x: unknown = e, depth = 0; x !== undefined && x !== null && depth < 4; depth++) {
    const o = x as { code?: unknown; cause?: unknown; errors?: unknown[] };
    if (typeof o.code === 'string') return o.code;
    x = o.cause ?? o.errors?.[0];
  }
  return undefined;
}

/** The client a verb uses, from its --state option (if it has one) and the environment. */
export function connect(opts: ConnectionOptions = {}): Client {
  return new Client(resolveConnection(opts));
}

/** The option every client verb has for finding the token file of a state directory. */
export function stateOption(cmd: Command): Command {
  return cmd.option(
    '--state <dir>',
    `state directory whose ${OPERATOR_TOKEN_FILE} to use without VIPDIP_TOKEN`,
  );
}
