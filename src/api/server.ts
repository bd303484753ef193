/**
 * The HTTP API: Fastify with TypeBox schemas, so one schema per route validates the request, types
 * the handler and documents the route in the OpenAPI 3.1 document at /v1/openapi.json.
 */
import swagger from '@fastify/swagger';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import Fastify, { type FastifyError, type FastifyReply } from 'fastify';
import { isVipdipError } from '../core/errors.ts';
import { ChaosRuns } from '../chaos/index.ts';
import { systemClock } from '../core/index.ts';
import type { Cloud } from '../lifecycle/index.ts';
import type { Tokens } from './auth.ts';
import { DEFAULT_ADMISSION, guardServer, type AdmissionLimits } from './admission.ts';
import { authorize, routeScope, type Api, type ApiContext, type DataPlaneStatus } from './context.ts';
import {
  NESTING_DEPTH_MAX,
  charsetOf,
  checkStructure,
  isUtf8,
  jsonDepthExceeds,
  yamlDepthExceeds,
  type SchemaShape,
} from './limits.ts';
import { registerDashboard, type DashboardOptions } from './dashboard.ts';
import { Metrics } from './metrics.ts';
import { ApiError, API_TITLES, PROBLEM_ERRORS_MAX, problem, writeProblem, type Problem } from './problem.ts';
import { registerApplyRoutes } from './routes/apply.ts';
import { registerChaosRoutes } from './routes/chaos.ts';
import { registerDataPlaneRoutes } from './routes/dataplane.ts';
import { registerEventRoutes } from './routes/events.ts';
import { registerFabricRoutes } from './routes/fabric.ts';
import { registerImageRoutes } from './routes/images.ts';
import { registerNetworkRoutes } from './routes/networks.ts';
import { registerServiceRoutes } from './routes/services.ts';
import * as S from './schemas.ts';

export interface ServerOptions {
  cloud: Cloud;
  tokens: Tokens;
  /** Where data-plane agents' reports go (health, workloads): agent/StatusRegistry, from the caller. */
  registry: DataPlaneStatus;
  /** Called for 5xx failures, which users see only as a generic problem. */
  onInternalError?: (e: unknown) => void;
  version?: string;
  /** Serve HTTPS with this certificate and key. */
  https?: { cert: Buffer; key: Buffer };
  /** Serve the web dashboard's built files from this directory (dist/web). */
  dashboard?: DashboardOptions;
  /** Where chaos runs live (`up` gives one that can crash workloads); a fresh one when not given. */
  chaos?: ChaosRuns;
  /** How many writes run or wait before more are refused with 503 (admission.ts). */
  admission?: AdmissionLimits;
  /** How long a request's body may take to arrive after its headers (REQUEST_TIMEOUT_MS by default). */
  requestTimeoutMs?: number;
}

/**
 * A request whose body has not all arrived this long after its headers is answered 408 and its
 * connection closed: a body dripped a byte at a time no longer holds a connection for ever. An
 * apply's 2 MiB at 100 KB/s takes 20 s.
 */
export const REQUEST_TIMEOUT_MS = 60_000;

/** The default body limit: far above any single resource a client creates or changes. */
export const BODY_LIMIT_BYTES = 1 << 20;
/** The limit of a route that declares no body. */
export const NO_BODY_LIMIT_BYTES = 4096;

/** A text body the server refuses to parse: another charset than UTF-8, or nesting too deep. */
function refuseText(
  contentType: string | undefined,
  body: string,
  tooDeep: (text: string, max: number) => boolean,
): ApiError | undefined {
  const charset = charsetOf(contentType);
  if (!isUtf8(charset)) {
    return new ApiError('UNSUPPORTED_MEDIA_TYPE', `bodies are read as UTF-8 only, not ${charset ?? ''}`);
  }
  if (tooDeep(body, NESTING_DEPTH_MAX)) {
    return new ApiError('BAD_REQUEST', `the body nests deeper than ${NESTING_DEPTH_MAX} levels`);
  }
  return undefined;
}

/**
 * The only /v1 route that may be public: the API's own description. Every other route a client
 * reaches without a token declares `config: { scope: 'public' }` where it is registered (liveness,
 * the dashboard's files), and none of them may be under /v1: the check below refuses to start a
 * server that declares one. Every other route declares its scope too (RouteScope in context.ts).
 */
const PUBLIC_V1_ROUTES: ReadonlySet<string> = new Set(['/v1/openapi.json']);

const isV1 = (url: string) => url === '/v1' || url.startsWith('/v1/');

/**
 * Fastify's own validator and serializer compilers (ajv, fast-json-stringify), loaded through Fastify
 * so their versions are the ones it was built with, each wrapped so that a route's code is generated
 * on its first request instead of at start: compiling every route's schemas took about 0.6 s of the
 * server's start (a CPU profile of `up --demo`), for routes most runs never call. The schemas are
 * static and every route is exercised by the tests, so a schema error still cannot reach a user.
 */
type Compiled = ((data: unknown) => unknown) & { errors?: unknown };
type CompilerFactory = (...args: unknown[]) => (route: unknown) => Compiled;
const fastifyRequire = createRequire(createRequire(import.meta.url).resolve('fastify'));

function lazily(factory: CompilerFactory): CompilerFactory {
  return (...args) => {
    const compile = factory(...args);
    return (route) => {
      let fn: Compiled | undefined;
      // Fastify reads `errors` from the function it holds, after a failed validation.
      const lazy: Compiled = (data) => {
        fn ??= compile(route);
        const r = fn(data);
        lazy.errors = fn.errors;
        return r;
      };
      return lazy;
    };
  };
}

const lazyCompilers = () => ({
  buildValidator: lazily((fastifyRequire('@fastify/ajv-compiler') as () => CompilerFactory)()),
  buildSerializer: lazily(
    (fastifyRequire('@fastify/fast-json-stringify-compiler') as () => CompilerFactory)(),
  ),
});

export async function buildServer(opts: ServerOptions): Promise<Api> {
  const app = Fastify({
    // Fastify types these with ajv's own function types; the wrappers keep their call shape.
    schemaController: { compilersFactory: lazyCompilers() as never },
    ...(opts.https ? { https: opts.https } : {}),
    logger: false,
    bodyLimit: BODY_LIMIT_BYTES,
    // Failures Fastify meets before any route (a badly encoded path, an over-long segment) and those
    // Node's HTTP parser meets before Fastify (a bad request line, oversized headers) are problems too.
    frameworkErrors: (err, req, reply) => {
      void sendProblem(reply, toProblem(err, req.url));
    },
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || socket.destroyed) return;
      const [status, detail] =
        err.code === 'HPE_HEADER_OVERFLOW'
          ? [431, 'the request headers exceed the size limit']
          : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
            ? [408, 'the request did not arrive in time']
            : [400, 'the request is not valid HTTP/1.1'];
      const body = JSON.stringify(transportProblem(status, detail));
      if (socket.writable) {
        socket.write(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: application/problem+json\r\n` +
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
        );
      }
      socket.destroy(err);
    },
    // Strict validation: no type coercion of bodies, unknown fields refused rather than dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: true } },
  }).withTypeProvider<TypeBoxTypeProvider>();
  // In front of Fastify: above capacity a write is refused before anything else is spent on it.
  const admission = guardServer(app.server, opts.admission ?? DEFAULT_ADMISSION, undefined, (req) =>
    opts.tokens.senderKey(req.headers.authorization),
  );
  limitBodies(app.server, opts.requestTimeoutMs ?? REQUEST_TIMEOUT_MS);

  const registry = opts.registry;
  const ctx: ApiContext = { cloud: opts.cloud, tokens: opts.tokens, registry };
  const unwatch = opts.cloud.onEvents((events) => {
    for (const e of events) {
      if (e.type === 'subscription.deleted' && e.subscription !== null)
        opts.tokens.forgetSubscription(e.subscription);
    }
  });
  app.addHook('onClose', (_app, done) => {
    unwatch();
    done();
  });
  const metrics = new Metrics(opts.cloud, registry, admission);

  // Bodies are read as UTF-8 or refused (415), and JSON nesting is bounded before JSON.parse
  // recurses into it; Fastify's own parser then guards against prototype poisoning as before.
  const parseJson = app.getDefaultJsonParser('error', 'ignore');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    const refused = refuseText(req.headers['content-type'], body as string, jsonDepthExceeds);
    if (refused !== undefined) return done(refused, undefined);
    void parseJson(req, body as string, done);
  });
  app.addContentTypeParser(
    ['application/yaml', 'text/yaml', 'application/x-yaml', 'text/plain'],
    { parseAs: 'string' },
    (req, body, done) => {
      const refused = refuseText(req.headers['content-type'], body as string, yamlDepthExceeds);
      if (refused !== undefined) return done(refused, undefined);
      done(null, body);
    },
  );

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'vipdip API',
        version: opts.version ?? '0.1.0',
        description: 'The cloud VIP/DIP address model',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
    },
    // Each operation says who may call it (RouteScope), so clients and tests read it from the document.
    transform: ({ schema, url, route }) => {
      const scope = routeScope(route.config ?? {});
      return {
        schema: { ...schema, 'x-vipdip-scope': scope, ...(scope === 'public' ? { security: [] } : {}) },
        url,
      };
    },
  });
  for (const s of [
    S.Problem,
    S.Vm,
    S.Service,
    S.Vnet,
    S.ReservedIp,
    S.Pool,
    S.Host,
    S.Subscription,
    S.Event,
    S.ServiceHealth,
    S.WorkloadLogs,
  ])
    app.addSchema(s);

  app.addHook('onRoute', (route) => {
    const scope = routeScope(route.config ?? {});
    const name = `${route.method.toString()} ${route.url}`;
    // Fail closed at start: a route that does not say who may call it is a bug, not an open door.
    if (scope === undefined) throw new Error(`route ${name} declares no config.scope`);
    if (scope === 'public' && isV1(route.url) && !PUBLIC_V1_ROUTES.has(route.url)) {
      throw new Error(`route ${name} is under /v1 and must not be public`);
    }
    // A route that declares no body reads none: a few bytes (`{}` from a generic client) pass, a
    // megabyte is refused before it is parsed.
    const schema = route.schema as { body?: unknown } | undefined;
    if (route.bodyLimit === undefined && schema?.body === undefined) route.bodyLimit = NO_BODY_LIMIT_BYTES;
  });

  app.decorateRequest('principal', null as never);
  app.addHook('onRequest', async (req) => {
    // Decided by the route matched, not by the raw URL: `/%761/vms` and the absolute form
    // `http://host/v1/vms` reach the same routes as `/v1/vms` and must meet the same check.
    const route = req.routeOptions.url;
    if (route === undefined) return;
    const scope = routeScope(req.routeOptions.config);
    if (scope === 'public') return;
    const auth = req.headers.authorization;
    const m = auth === undefined ? null : /^Bearer ([A-Za-z0-9_\-.~+/]{1,256}=*)$/.exec(auth);
    if (m === null) throw new ApiError('UNAUTHORIZED', 'send a bearer token: Authorization: Bearer <token>');
    const p = await ctx.tokens.resolve(m[1]!);
    if (p === undefined) throw new ApiError('UNAUTHORIZED', 'the token is not valid');
    req.principal = p;
    // Decided here, before the body is read: a caller who may not use the route never gets it parsed.
    const refused = authorize(scope, p, req.params as Record<string, unknown>);
    if (refused !== undefined) throw refused;
  });

  // Cheap structural bounds (array and string lengths, depth) before ajv, which with allErrors walks
  // every item of an over-long array; a body that passes is at most what its schema allows.
  app.addHook('preValidation', (req, _reply, done) => {
    const schema = (req.routeOptions.schema as { body?: SchemaShape } | undefined)?.body;
    const p =
      req.body === undefined || req.body === null || typeof req.body === 'string'
        ? undefined
        : checkStructure(req.body, schema);
    done(
      p === undefined ? undefined : new ApiError('BAD_REQUEST', `${p.path} ${p.message}`, { errors: [p] }),
    );
  });

  const started = new WeakMap<object, bigint>();
  app.addHook('onRequest', (req, _reply, done) => {
    started.set(req, process.hrtime.bigint());
    done();
  });
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    metrics.requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    const t0 = started.get(req);
    if (t0 !== undefined)
      metrics.latency.observe({ method: req.method, route }, Number(process.hrtime.bigint() - t0) / 1e9);
  });

  app.setErrorHandler((err: unknown, req, reply) => {
    const body = toProblem(err, req.url, req.routeOptions.bodyLimit);
    // Fastify closes the connection after a 413: kept open, the rest of the body is read (limitBodies).
    if (!req.raw.complete) void reply.removeHeader('connection');
    // An unreachable store (503) is the outage itself, reported to the caller: not a bug to log.
    if (body.status === 500) opts.onInternalError?.(err);
    return sendProblem(reply, body);
  });
  app.setNotFoundHandler((req, reply) => {
    const body = problem(
      'NOT_FOUND',
      'not found',
      `no route ${req.method} ${req.url.split('?')[0]}`,
      req.url,
    );
    return reply.code(404).type('application/problem+json').send(body);
  });

  const open = { schema: { hide: true }, config: { scope: 'public' } } as const;
  app.get('/healthz', open, (_req, reply) => reply.send({ status: 'ok' }));
  // Metrics name every tenant's resources (pools, listeners, flows): the operator's only.
  app.get('/metrics', { schema: { hide: true }, config: { scope: 'operator' } }, async (_req, reply) =>
    reply.type(metrics.registry.contentType).send(await metrics.registry.metrics()),
  );
  app.get('/v1/openapi.json', open, (_req, reply) => reply.send(app.swagger()));
  if (opts.dashboard !== undefined) await registerDashboard(app, opts.dashboard);

  registerFabricRoutes(app, ctx);
  registerNetworkRoutes(app, ctx);
  registerServiceRoutes(app, ctx);
  registerImageRoutes(app, ctx);
  registerEventRoutes(app, ctx);
  registerApplyRoutes(app, ctx);
  registerDataPlaneRoutes(app, ctx);
  const chaos = opts.chaos ?? new ChaosRuns({ cloud: opts.cloud, clock: systemClock });
  // A closing server ends its chaos runs, giving back what they took, before the store closes.
  app.addHook('onClose', () => chaos.close());
  registerChaosRoutes(app, chaos);
  return app;
}

/** How long a refused body may keep arriving after its answer, to be read and thrown away. */
const LINGER_MS = 5000;

/**
 * Bodies that do not end: a request whose body is still arriving `requestTimeout` after its headers
 * is answered 408 and closed (Node's own requestTimeout stops counting once the request reaches its
 * handler, measured on Node 20). A request answered before its body was read (413 from its
 * Content-Length; 401 or 403 from the hook that authorizes before bodies; an unsupported media type;
 * a 503 of admission control) usually has its body still on the way. For a 413 Fastify answers and
 * closes the connection, and a socket closed with the body still arriving answers with a reset,
 * which can reach the client before it has read the answer (undici then reports EPIPE: CI failures
 * of the 413 tests; 12 of 300 refused posts on a loaded machine). So the connection stays open
 * while Node reads the rest of the body and throws it away, and a client still sending LINGER_MS
 * after the answer is cut off (before, the rest of such a body was read with no limit in time).
 */
function limitBodies(server: Api['server'], requestTimeout: number): void {
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!req.complete) unlessBodyEnds(req, requestTimeout, () => timeOut(req, res));
    res.once('finish', () => {
      if (!req.complete) unlessBodyEnds(req, LINGER_MS, () => req.socket.destroy());
    });
  });
}

/** Runs `expire` unless `req`'s body ends (or the request closes) within `ms`. */
function unlessBodyEnds(req: IncomingMessage, ms: number, expire: () => void): void {
  const timer = setTimeout(expire, ms);
  timer.unref();
  const done = () => clearTimeout(timer);
  req.once('end', done);
  req.once('close', done);
}

/** Answers 408 to a request whose body has not all arrived in time (unless answered already), and closes. */
function timeOut(req: IncomingMessage, res: ServerResponse): void {
  if (req.complete) return;
  if (res.headersSent) {
    req.socket.destroy();
    return;
  }
  writeProblem(
    res,
    transportProblem(408, 'the request did not arrive in time', req.url),
    { connection: 'close' },
    () => req.socket.destroy(),
  );
}

/** The problem text of a request refused for how it arrived, not for what it asks (400, 408, 431). */
function transportProblem(status: number, detail: string, instance?: string): Problem {
  return { ...problem('BAD_REQUEST', API_TITLES.BAD_REQUEST, detail, instance), status };
}

function sendProblem(reply: FastifyReply, body: Problem): FastifyReply {
  if (body.status === 401) void reply.header('www-authenticate', 'Bearer realm="vipdip"');
  return reply.code(body.status).type('application/problem+json').send(body);
}

/** Every failure as problem+json: coded domain errors keep their code; the rest are classified. */
export function toProblem(err: unknown, instance: string, bodyLimit = BODY_LIMIT_BYTES): Problem {
  if (isVipdipError(err))
    return problem(
      err.code,
      err.title,
      err.detail,
      instance,
      err.data.errors ? { errors: err.data.errors } : {},
    );
  if (err instanceof ApiError)
    return problem(err.code, API_TITLES[err.code], err.detail, instance, err.extra);
  const fe = err as Partial<FastifyError> & {
    validation?: { instancePath?: string; message?: string; params?: Record<string, unknown> }[];
    validationContext?: string;
  };
  if (Array.isArray(fe.validation)) {
    const all = fe.validation;
    const errors = all.slice(0, PROBLEM_ERRORS_MAX).map((v) => ({
      path: `${fe.validationContext ?? 'body'}${v.instancePath ?? ''}`,
      message:
        (v.message ?? 'is invalid') +
        (v.params && 'additionalProperty' in v.params ? `: ${String(v.params.additionalProperty)}` : ''),
    }));
    const detail = errors
      .slice(0, 10)
      .map((e) => `${e.path} ${e.message}`)
      .join('; ');
    return problem('BAD_REQUEST', API_TITLES.BAD_REQUEST, detail, instance, {
      errors,
      ...(all.length > errors.length ? { errorsTotal: all.length } : {}),
    });
  }
  const code = typeof fe.code === 'string' ? fe.code : '';
  if (code === 'FST_ERR_CTP_BODY_TOO_LARGE')
    return problem(
      'PAYLOAD_TOO_LARGE',
      API_TITLES.PAYLOAD_TOO_LARGE,
      `the body exceeds ${bodyLimit} bytes, the limit of this route`,
      instance,
    );
  if (code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE')
    return problem(
      'UNSUPPORTED_MEDIA_TYPE',
      API_TITLES.UNSUPPORTED_MEDIA_TYPE,
      'send application/json (or YAML to /v1/apply)',
      instance,
    );
  if (typeof fe.statusCode === 'number' && fe.statusCode >= 400 && fe.statusCode < 500) {
    return problem(
      'BAD_REQUEST',
      API_TITLES.BAD_REQUEST,
      (fe.message ?? 'bad request').split('\n')[0]!,
      instance,
    );
  }
  return problem(
    'INTERNAL',
    API_TITLES.INTERNAL,
    'the server failed to handle the request; it has been logged',
    instance,
  );
}
