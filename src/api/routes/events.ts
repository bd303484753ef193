/**
 * The event log: pages by sequence number, and a Server-Sent Events stream that resumes from
 * `Last-Event-ID` (or `?since=`) with nothing lost: it subscribes before reading the backlog, then
 * sends only what is newer than the last sequence number sent.
 */
import { Type } from 'typebox';
import type { EventView } from '../../lifecycle/index.ts';
import { visible, type Api, type ApiContext } from '../context.ts';
import { ApiError } from '../problem.ts';
import * as S from '../schemas.ts';

const PAGE_MAX = 1000;
const HEARTBEAT_MS = 15_000;

function parseSeq(v: string | undefined, what: string): number {
  if (v === undefined || v === '') return 0;
  if (!/^[0-9]{1,15}$/.test(v)) throw new ApiError('BAD_REQUEST', `${what} must be a sequence number`);
  return Number(v);
}

export function registerEventRoutes(app: Api, { cloud, registry }: ApiContext): void {
  // Open streams never finish by themselves; the server ends them when it closes, so that a
  // shutdown lets in-flight requests finish without waiting for every watcher to hang up.
  const streams = new Set<() => void>();
  app.addHook('preClose', (done) => {
    for (const end of [...streams]) end();
    done();
  });

  app.get(
    '/v1/events',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['events'],
        querystring: S.EventsQuery,
        response: {
          200: S.EventPage,
          '4xx': { $ref: 'Problem#' },
        },
      },
    },
    async (req) => {
      const q = req.query;
      const since = parseSeq(q.since, 'since');
      const before = q.before === undefined ? undefined : parseSeq(q.before, 'before');
      const desc = q.order === 'desc';
      if (!desc && before !== undefined) throw new ApiError('BAD_REQUEST', 'before goes with order=desc');
      if (desc && q.since !== undefined) throw new ApiError('BAD_REQUEST', 'since goes with order=asc');
      const resources = q.resource === undefined ? undefined : [...new Set(q.resource.split(','))];
      if (resources !== undefined && resources.length > S.EVENT_RESOURCES_MAX) {
        throw new ApiError('BAD_REQUEST', `resource names at most ${S.EVENT_RESOURCES_MAX} resources`);
      }
      const limit = Math.min(PAGE_MAX, Math.max(1, q.limit === undefined ? 100 : Number(q.limit)));
      const sub = visible(req);
      const events = await cloud.events({
        limit,
        ...(desc ? { order: 'desc' as const, ...(before !== undefined ? { before } : {}) } : { since }),
        ...(sub === undefined ? {} : { subscription: sub }),
        ...(resources === undefined ? {} : { resources }),
      });
      // The cursor of the following page: the last seq given (asc, pass it as since) or the
      // smallest (desc, pass it as before). An empty page keeps the cursor where it was.
      const last = events.at(-1)?.seq;
      return { events, next: last ?? (desc ? (before ?? 0) : since) };
    },
  );

  app.get(
    '/v1/events/stream',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['events'],
        querystring: Type.Object({
          since: Type.Optional(Type.String({ maxLength: 15, pattern: '^[0-9]{1,15}$' })),
        }),
      },
    },
    async (req, reply) => {
      const header = req.headers['last-event-id'];
      let last = parseSeq(typeof header === 'string' ? header : req.query.since, 'Last-Event-ID');
      const sub = visible(req);
      const mine = (e: EventView) => sub === undefined || e.subscription === sub;

      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        'x-accel-buffering': 'no',
      });
      let closed = false;
      let backlogDone = false;
      const queued: EventView[] = [];
      const send = (e: EventView) => {
        if (e.seq <= last) return;
        last = e.seq;
        if (mine(e)) res.write(`id: ${e.seq}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`);
      };
      const off = cloud.onEvents((events) => {
        if (closed) return;
        if (!backlogDone) queued.push(...events);
        else for (const e of events) send(e);
      });
      // Live backend health rides the same stream as `event: health` with no id: it is not part of the
      // durable log, so Last-Event-ID resumption means exactly what it meant before.
      const offHealth = registry.onHealth((h, subscription) => {
        if (!closed && (sub === undefined || subscription === sub)) {
          res.write(`event: health\ndata: ${JSON.stringify(h)}\n\n`);
        }
      });
      const heartbeat = setInterval(() => res.write(': keep-alive\n\n'), HEARTBEAT_MS);
      const close = () => {
        closed = true;
        streams.delete(end);
        off();
        offHealth();
        clearInterval(heartbeat);
      };
      const end = () => {
        close();
        res.end();
      };
      streams.add(end);
      req.raw.on('close', close);
      res.on('error', close);
      res.write(': vipdip event stream\n\n');
      try {
        for (;;) {
          const page = await cloud.events({ since: last, limit: PAGE_MAX });
          for (const e of page) send(e);
          if (page.length < PAGE_MAX || closed) break;
        }
      } catch {
        end();
        return;
      }
      backlogDone = true;
      for (const e of queued.splice(0)) send(e);
    },
  );
}
