/**
 * `vipdip chaos probe`: what a client saw during the weather. Requests go out at a fixed rate, each on
 * a new connection (a new flow, as a fresh client would open), to an address that is
 *
 * - `vip`: fixed at start (a VIP, or a name resolved once): what a client configured with the VIP does;
 * - `dns`: resolved through vipdip's DNS server for every connection, or once per TTL with `ttl`;
 * - `dip`: fixed at start, like `vip`, but meant for a DIP: the anti-pattern the weather punishes.
 *
 * Traffic goes to loopback only: the local driver's VIPs and DIPs are in 127.0.0.0/8, and any other
 * address (given, or answered by DNS) is refused and never connected to. Every run is bounded in
 * count and time.
 */
import { promises as dnsPromises } from 'node:dns';
import { request } from 'node:http';
import { isIP, connect as tcpConnect } from 'node:net';
import { VipdipError } from '../core/errors.ts';

export const PROBE_VIAS = ['vip', 'dns', 'dip'] as const;
export type ProbeVia = (typeof PROBE_VIAS)[number];

export const MAX_PROBE_RATE_PER_S = 200;
export const MAX_PROBE_DURATION_MS = 3600_000;
export const DEFAULT_PROBE_TIMEOUT_MS = 1000;
/** Requests outstanding at once; one more is counted as a failure rather than sent. */
export const MAX_IN_FLIGHT = 256;
/** Address changes listed in the report (all are counted). */
const CHANGES_LISTED = 100;

export interface ProbeOptions {
  via: ProbeVia;
  /** HOST:PORT, HOST an IPv4 address or a DNS name. */
  target: string;
  ratePerSec: number;
  durationMs: number;
  protocol: 'http' | 'tcp';
  /** The HTTP path (http only). */
  path: string;
  timeoutMs: number;
  /** vipdip's DNS server, HOST:PORT (loopback). */
  dnsServer: string;
  /** `dns` only: resolve on every connection (`always`), or keep an answer for its TTL (`ttl`). */
  dnsCache: 'always' | 'ttl';
  /** Stops early (Ctrl-C). */
  signal?: AbortSignal;
  /** Called with every request's outcome, in the order they end (tests and benchmarks). */
  onResult?: (r: ProbeResult) => void;
}

export interface ProbeResult {
  /** When the request started, ms after the probe did. */
  atMs: number;
  ok: boolean;
  /** Where it went (null when DNS failed first). */
  address: string | null;
  /** Why it failed. */
  error: string | null;
}

export interface ProbeMinute {
  minute: number;
  requests: number;
  failures: number;
  availability: number;
}

export interface ProbeReport {
  via: ProbeVia;
  target: string;
  protocol: 'http' | 'tcp';
  /** The address used first. */
  address: string | null;
  startedAt: string;
  durationMs: number;
  requests: number;
  failures: number;
  /** Successful requests over all, 0–1 (1 when no request was sent). */
  availability: number;
  /** From the first failed request of a run of failures to the next success (or the end). */
  longestOutageMs: number;
  outages: number;
  addressChanges: number;
  changes: { atMs: number; from: string | null; to: string }[];
  /** Distinct DIPs that answered (whoami names its DIP). */
  backends: string[];
  /** Why requests failed, with counts. */
  errors: Record<string, number>;
  perMinute: ProbeMinute[];
}

/** 127.0.0.0/8 or ::1: the only places a probe may send to. */
export function isLoopbackAddress(a: string): boolean {
  return (isIP(a) === 4 && a.startsWith('127.')) || a === '::1';
}

/** HOST:PORT → its parts, or a one-line error naming what is wrong. */
export function parseHostPort(text: string, what: string): { host: string; port: number } {
  const m = /^([A-Za-z0-9.-]{1,253}):(\d{1,5})$/.exec(text);
  if (m === null || Number(m[2]) < 1 || Number(m[2]) > 65535) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `${what} ${text}: expected HOST:PORT, such as 127.100.0.4:8080`,
    );
  }
  return { host: m[1]!, port: Number(m[2]) };
}

/** Checks what can be checked before any traffic: bounds, and that fixed addresses are loopback. */
export function checkProbeOptions(o: ProbeOptions): void {
  if (!(o.ratePerSec > 0 && o.ratePerSec <= MAX_PROBE_RATE_PER_S)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `--rate: must be above 0 and at most ${MAX_PROBE_RATE_PER_S}/s`,
    );
  }
  if (!(o.durationMs > 0 && o.durationMs <= MAX_PROBE_DURATION_MS)) {
    throw new VipdipError('INVALID_ARGUMENT', '--duration: must be above 0 and at most 1h');
  }
  if (!(o.timeoutMs >= 10 && o.timeoutMs <= 60_000)) {
    throw new VipdipError('INVALID_ARGUMENT', '--timeout: must be from 10ms to 60s');
  }
  const { host } = parseHostPort(o.target, 'target');
  if (isIP(host) !== 0 && !isLoopbackAddress(host)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `target ${o.target}: ${host} is not a loopback address; a probe sends only to 127.0.0.0/8 (the local driver's VIPs and DIPs)`,
    );
  }
  const dns = parseHostPort(o.dnsServer, '--dns-server');
  if (!isLoopbackAddress(dns.host)) {
    throw new VipdipError('INVALID_ARGUMENT', `--dns-server ${o.dnsServer}: must be a loopback address`);
  }
}

class Resolution {
  private readonly resolver: dnsPromises.Resolver;
  private cached: { address: string; until: number } | undefined;

  constructor(
    private readonly name: string,
    server: string,
    timeoutMs: number,
    private readonly cache: boolean,
  ) {
    this.resolver = new dnsPromises.Resolver({ timeout: timeoutMs, tries: 1 });
    this.resolver.setServers([server]);
  }

  async address(): Promise<string> {
    if (this.cache && this.cached !== undefined && Date.now() < this.cached.until) return this.cached.address;
    const answers = await this.resolver.resolve4(this.name, { ttl: true });
    const first = answers[0];
    if (first === undefined) throw Object.assign(new Error('no address'), { code: 'ENODATA' });
    this.cached = { address: first.address, until: Date.now() + first.ttl * 1000 };
    return first.address;
  }

  cancel(): void {
    this.resolver.cancel();
  }
}

/** Sends one request; resolves with the answering DIP (if it says) or rejects with a short reason. */
function once(o: ProbeOptions, host: string, port: number): Promise<string | null> {
  return new Promise((resolve, reject) => {
    if (o.protocol === 'tcp') {
      const s = tcpConnect({ host, port, timeout: o.timeoutMs });
      s.once('connect', () => {
        s.destroy();
        resolve(null);
      });
      s.once('timeout', () => {
        s.destroy();
        reject(new Error('timeout'));
      });
      s.once('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
      return;
    }
    const req = request(
      {
        host,
        port,
        path: o.path,
        agent: false,
        timeout: o.timeoutMs,
        headers: { 'user-agent': 'vipdip-chaos-probe' },
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          if (body.length < 4096) body += d;
        });
        res.on('end', () => {
          if ((res.statusCode ?? 500) >= 500) return reject(new Error(`HTTP ${res.statusCode}`));
          try {
            const dip = (JSON.parse(body) as { dip?: unknown }).dip;
            resolve(typeof dip === 'string' ? dip : null);
          } catch {
            resolve(null);
          }
        });
        res.on('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
      },
    );
    req.once('timeout', () => req.destroy(new Error('timeout')));
    req.once('error', (e: NodeJS.ErrnoException) => reject(new Error(e.code ?? e.message)));
    req.end();
  });
}

/** Runs the probe to its end (or its signal) and reports. */
export async function runProbe(o: ProbeOptions): Promise<ProbeReport> {
  checkProbeOptions(o);
  const { host, port } = parseHostPort(o.target, 'target');
  const name = isIP(host) === 0 ? host : null;
  const dns =
    name === null
      ? undefined
      : new Resolution(name, o.dnsServer, o.timeoutMs, o.via === 'dns' && o.dnsCache === 'ttl');
  let fixed: string | null = name === null ? host : null;
  if (o.via !== 'dns' && dns !== undefined) {
    // vip and dip: the address is looked up once, as a client that keeps it.
    try {
      fixed = await dns.address();
    } catch (e) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `target ${o.target}: ${name} does not resolve (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
    if (!isLoopbackAddress(fixed)) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `target ${o.target}: resolves to ${fixed}, not a loopback address`,
      );
    }
  }

  const start = Date.now();
  const intervalMs = 1000 / o.ratePerSec;
  const total = Math.max(1, Math.floor((o.durationMs / 1000) * o.ratePerSec));
  type Outcome = { atMs: number; ok: boolean };
  const outcomes: Outcome[] = [];
  const errors: Record<string, number> = {};
  const backends = new Set<string>();
  const changes: ProbeReport['changes'] = [];
  let changeCount = 0;
  let lastAddress: string | null = fixed;
  let first: string | null = fixed;
  let inFlight = 0;
  const pending = new Set<Promise<void>>();

  const fail = (atMs: number, why: string, address: string | null = null) => {
    outcomes.push({ atMs, ok: false });
    errors[why] = (errors[why] ?? 0) + 1;
    o.onResult?.({ atMs, ok: false, address, error: why });
  };

  const one = async (atMs: number): Promise<void> => {
    let address = fixed;
    if (address === null) {
      try {
        address = await dns!.address();
      } catch (e) {
        return fail(atMs, `dns ${(e as NodeJS.ErrnoException).code ?? 'failure'}`);
      }
      if (!isLoopbackAddress(address)) return fail(atMs, `dns answered ${address}: not loopback, not sent`);
      first ??= address;
      if (lastAddress !== address) {
        if (lastAddress !== null) {
          changeCount++;
          if (changes.length < CHANGES_LISTED) changes.push({ atMs, from: lastAddress, to: address });
        }
        lastAddress = address;
      }
    }
    try {
      const dip = await once(o, address, port);
      if (dip !== null) backends.add(dip);
      outcomes.push({ atMs, ok: true });
      o.onResult?.({ atMs, ok: true, address, error: null });
    } catch (e) {
      fail(atMs, (e as Error).message, address);
    }
  };

  const aborted = () => o.signal?.aborted === true;
  for (let i = 0; i < total && !aborted(); i++) {
    const due = start + i * intervalMs;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    if (aborted()) break;
    const atMs = Date.now() - start;
    if (inFlight >= MAX_IN_FLIGHT) {
      fail(atMs, 'too many requests in flight');
      continue;
    }
    inFlight++;
    const p = one(atMs).finally(() => {
      inFlight--;
      pending.delete(p);
    });
    pending.add(p);
  }
  await Promise.all([...pending]);
  dns?.cancel();
  const durationMs = Date.now() - start;
  return summarize(o, first, start, durationMs, outcomes, errors, backends, changeCount, changes);
}

function summarize(
  o: ProbeOptions,
  address: string | null,
  start: number,
  durationMs: number,
  outcomes: { atMs: number; ok: boolean }[],
  errors: Record<string, number>,
  backends: Set<string>,
  addressChanges: number,
  changes: ProbeReport['changes'],
): ProbeReport {
  const sorted = [...outcomes].sort((a, b) => a.atMs - b.atMs);
  let longest = 0;
  let outages = 0;
  let downSince: number | undefined;
  for (const r of sorted) {
    if (!r.ok && downSince === undefined) {
      downSince = r.atMs;
      outages++;
    } else if (r.ok && downSince !== undefined) {
      longest = Math.max(longest, r.atMs - downSince);
      downSince = undefined;
    }
  }
  if (downSince !== undefined) longest = Math.max(longest, durationMs - downSince);
  const minutes = new Map<number, ProbeMinute>();
  for (const r of sorted) {
    const m = Math.floor(r.atMs / 60_000);
    const b = minutes.get(m) ?? { minute: m, requests: 0, failures: 0, availability: 1 };
    b.requests++;
    if (!r.ok) b.failures++;
    minutes.set(m, b);
  }
  for (const b of minutes.values()) b.availability = (b.requests - b.failures) / b.requests;
  const failures = sorted.filter((r) => !r.ok).length;
  return {
    via: o.via,
    target: o.target,
    protocol: o.protocol,
    address,
    startedAt: new Date(start).toISOString(),
    durationMs,
    requests: sorted.length,
    failures,
    availability: sorted.length === 0 ? 1 : (sorted.length - failures) / sorted.length,
    longestOutageMs: Math.round(longest),
    outages,
    addressChanges,
    changes,
    backends: [...backends].sort(),
    errors,
    perMinute: [...minutes.values()].sort((a, b) => a.minute - b.minute),
  };
}
