/**
 * `vipdip events [--since SEQ] [--follow] [-o json]`: the event log, one event a line. Without
 * --follow it pages through GET /v1/events and ends; with it, it reads the SSE stream and, when the
 * connection drops, reconnects with Last-Event-ID set to the last sequence number it printed, so
 * nothing is lost and nothing printed twice.
 */
import type { Command } from 'commander';
import type { Event as ApiEvent } from '../core/api-shapes.ts';
import { connect, stateOption, type Client } from './client.ts';
import { CliError, UnreachableError, UsageError } from './errors.ts';
import { cell, outputOption, progress, type Progress } from './output.ts';
import { SseParser } from './sse.ts';

/** The API's page limit: a shorter page is the last one. */
const PAGE = 1000;
/** The server sends a heartbeat every 15 s; three missed ones mean a dead connection. */
const STALL_MS = 45_000;
const RETRY_FIRST_MS = 250;
const RETRY_MAX_MS = 5_000;

interface EventsOptions {
  since?: string;
  follow?: boolean;
  output: string;
  state?: string;
}

/** What changed, as `key old→new` pairs; a creation (no old) as `key=value`. */
export function describeChange(e: Pick<ApiEvent, 'old' | 'new'>): string {
  const text = (v: unknown) => cell(v);
  if (e.old === null && e.new === null) return '';
  if (e.old === null) {
    return Object.entries(e.new!)
      .map(([k, v]) => `${k}=${text(v)}`)
      .join(' ');
  }
  const keys = [...new Set([...Object.keys(e.old), ...Object.keys(e.new ?? {})])];
  return keys.map((k) => `${k} ${text(e.old![k])}→${text(e.new?.[k])}`).join(', ');
}

/** `seq time type resource reason: old→new`, the first columns padded so that lines line up. */
export function eventLine(e: ApiEvent): string {
  const change = describeChange(e);
  return `${String(e.seq).padStart(6)} ${e.time} ${e.type.padEnd(25)} ${e.resource.padEnd(28)} ${e.reason}${change === '' ? '' : `: ${change}`}`;
}

function parseSince(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^[0-9]{1,15}$/.test(text)) throw new UsageError(`--since ${text}: expected a sequence number`);
  return Number(text);
}

async function page(c: Client, since: number, print: (e: ApiEvent) => void, p: Progress): Promise<void> {
  let next = since;
  let count = 0;
  for (;;) {
    const body = await c.get<{ events: ApiEvent[]; next: number }>('/v1/events', {
      since: String(next),
      limit: String(PAGE),
    });
    for (const e of body.events) print(e);
    count += body.events.length;
    if (body.events.length < PAGE) return;
    next = body.next;
    p.update(`read ${count} events…`);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Follows the SSE stream for ever, reconnecting from the last event printed. */
async function follow(c: Client, since: number, print: (e: ApiEvent) => void, p: Progress): Promise<never> {
  let last = since;
  let connected = false;
  let retryMs = RETRY_FIRST_MS;
  for (;;) {
    const ac = new AbortController();
    let stall: NodeJS.Timeout | undefined;
    const watchdog = () => {
      clearTimeout(stall);
      stall = setTimeout(() => ac.abort(), STALL_MS);
    };
    try {
      watchdog();
      const res = await c.open('/v1/events/stream', {
        signal: ac.signal,
        headers: { accept: 'text/event-stream', 'last-event-id': String(last) },
      });
      connected = true;
      retryMs = RETRY_FIRST_MS;
      p.update(`following events from ${c.conn.url} (Ctrl-C stops)`);
      if (res.body === null) throw new CliError('the event stream has no body');
      const decoder = new TextDecoder();
      const parser = new SseParser();
      for await (const value of res.body as AsyncIterable<Uint8Array>) {
        watchdog();
        for (const m of parser.push(decoder.decode(value, { stream: true }))) {
          // Live messages (event: health) are not part of the log: they are for the dashboard.
          if (m.event === 'health') continue;
          let e: ApiEvent;
          try {
            e = JSON.parse(m.data) as ApiEvent;
          } catch {
            throw new CliError(`the event stream sent data that is not JSON (event id ${m.id ?? '?'})`);
          }
          if (typeof e.seq !== 'number' || e.seq <= last) continue;
          last = e.seq;
          p.done();
          print(e);
        }
      }
    } catch (e) {
      // A server never reached, or a refusal (a revoked token, say), ends the command; a dropped
      // connection, or a server away for a restart, does not.
      if (!connected || (e instanceof CliError && !(e instanceof UnreachableError))) throw e;
    } finally {
      clearTimeout(stall);
    }
    p.update(`event stream lost; reconnecting to ${c.conn.url} from seq ${last}…`);
    await sleep(retryMs);
    retryMs = Math.min(retryMs * 2, RETRY_MAX_MS);
  }
}

export function registerEvents(program: Command): void {
  stateOption(program.command('events'))
    .description('the event log: every state and address change, in order, with its reason')
    .option('--since <seq>', 'only events after this sequence number')
    .option('-f, --follow', 'keep printing new events as they happen (resumes after a disconnect)')
    .addOption(outputOption(['table', 'json']))
    .action(async (opts: EventsOptions) => {
      const since = parseSince(opts.since);
      const c = connect(opts);
      const print =
        opts.output === 'json'
          ? (e: ApiEvent) => process.stdout.write(`${JSON.stringify(e)}\n`)
          : (e: ApiEvent) => process.stdout.write(`${eventLine(e)}\n`);
      const p = progress();
      try {
        if (opts.follow === true) {
          process.once('SIGINT', () => {
            p.done();
            process.exit(130);
          });
          await follow(c, since, print, p);
        } else await page(c, since, print, p);
      } finally {
        p.done();
      }
    });
}
