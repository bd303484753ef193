import { createHash } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { VipdipError } from '../core/errors.ts';
import type {
  AgentReport,
  AgentSeen,
  BackendReport,
  HealthChange,
  ListenerReport,
  WorkloadReport,
} from '../core/api-shapes.ts';
import type { Cloud } from '../lifecycle/index.ts';
import type { Principal, Tokens } from './auth.ts';
import { ApiError } from './problem.ts';

/** The Fastify instance with the TypeBox type provider, as every route module registers on it. */
export type Api = FastifyInstance<
  Server,
  IncomingMessage,
  ServerResponse,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

/**
 * What the API needs of the data plane's reports: the agents' reports in, backend health, workloads,
 * listeners and agents out. The API declares it rather than import the agent's registry (agent/
 * StatusRegistry), which sits beside the API, not under it; the composition root (cli/control-plane.ts,
 * `up`) passes the real one.
 */
export interface DataPlaneStatus {
  /** Takes an agent's whole report, replacing its last one. */
  accept(report: AgentReport): void;
  /** Forgets an agent that stopped for good; false when it never reported. */
  forget(agent: string): boolean;
  /** Calls `fn` on each change of a backend's health; returns the unsubscribe. */
  onHealth(fn: (change: HealthChange, subscription: string) => void): () => void;
  /** The freshest report of each backend of `service`, keyed `vm/endpoint`. */
  backends(service: string): ReadonlyMap<string, BackendReport>;
  /** The freshest report of a VM's workload, with the agent that sent it and how fresh it is. */
  workload(
    service: string,
    vm: string,
  ): (WorkloadReport & { agent: string; reportedAt: string; stale: boolean }) | undefined;
  listenerStats(): readonly ListenerReport[];
  agentsSeen(): AgentSeen[];
}

export interface ApiContext {
  cloud: Cloud;
  tokens: Tokens;
  /** The data plane's reports: backend health and workloads. */
  registry: DataPlaneStatus;
}

/**
 * Who may call a route, decided in `onRequest` from the token and the path alone, before any byte of
 * the body is read:
 *
 * - `public`: anyone, without a token (never under /v1 but for the OpenAPI document);
 * - `operator`: the operator token only; any other token gets 403;
 * - `agent`: a data-plane agent, which today means the operator token (tenants get 403);
 * - `tenant`: any valid token, a subscription token only inside its own subscription: a
 *   `:subscription` path parameter naming another one answers 404, as if it did not exist.
 *
 * Every route declares one in its `config.scope`; the server refuses to register a route that does
 * not, and a request that reaches one anyway is refused (fail closed).
 */
export type RouteScope = 'public' | 'operator' | 'agent' | 'tenant';

export const ROUTE_SCOPES: readonly RouteScope[] = ['public', 'operator', 'agent', 'tenant'];

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
  }
  interface FastifyContextConfig {
    /** Who may call the route (see RouteScope). */
    scope?: RouteScope;
    /** The same as `scope: 'public'`. Never under /v1 but for the OpenAPI document. */
    public?: boolean;
  }
}

/** The scope a route declared, or undefined when it declared none (refused). */
export function routeScope(config: { scope?: RouteScope; public?: boolean }): RouteScope | undefined {
  if (config.public === true) return 'public';
  return config.scope !== undefined && ROUTE_SCOPES.includes(config.scope) ? config.scope : undefined;
}

/**
 * The decision of `onRequest` for a request with a principal: nothing (go on) or the error to answer.
 * Pure, so every scope and principal pair is tested without a server.
 */
export function authorize(
  scope: RouteScope | undefined,
  p: Principal,
  params: Readonly<Record<string, unknown>>,
): ApiError | VipdipError | undefined {
  switch (scope) {
    case 'public':
      return undefined;
    case 'operator':
      return p.kind === 'operator'
        ? undefined
        : new ApiError('FORBIDDEN', 'this operation needs the operator token');
    case 'agent':
      return p.kind === 'operator'
        ? undefined
        : new ApiError('FORBIDDEN', 'this operation needs an agent or the operator token');
    case 'tenant': {
      const sub = params.subscription;
      if (p.kind === 'subscription' && typeof sub === 'string' && sub !== p.subscription) {
        return new VipdipError('NOT_FOUND', `subscription ${sub} does not exist`);
      }
      return undefined;
    }
    default:
      return new ApiError('FORBIDDEN', 'this route declares no scope, so nobody may call it');
  }
}

/** Operator-only routes answer 403 to a subscription token. */
export function requireOperator(req: FastifyRequest): void {
  if (req.principal.kind !== 'operator') {
    throw new ApiError('FORBIDDEN', 'this operation needs the operator token');
  }
}

/**
 * The subscription a request may act in. Another subscription's resources answer 404, exactly as if
 * they did not exist, so a tenant learns nothing of its neighbours.
 */
export function scope(req: FastifyRequest, subscription: string): string {
  const p = req.principal;
  if (p.kind === 'subscription' && p.subscription !== subscription) {
    throw new VipdipError('NOT_FOUND', `subscription ${subscription} does not exist`);
  }
  return subscription;
}

/** The subscription filter for listings: a tenant sees only its own. */
export function visible(req: FastifyRequest): string | undefined {
  return req.principal.kind === 'subscription' ? req.principal.subscription : undefined;
}

export function etagOf(body: unknown): string {
  return `"${createHash('sha256').update(JSON.stringify(body)).digest('base64url').slice(0, 22)}"`;
}

/** Sends a resource with its ETag; answers 304 to a matching If-None-Match. */
export function sendResource(
  req: FastifyRequest,
  reply: FastifyReply,
  body: unknown,
  status = 200,
): FastifyReply {
  const tag = etagOf(body);
  void reply.header('etag', tag);
  if (status === 200 && req.headers['if-none-match'] === tag) return reply.code(304).send();
  return reply.code(status).send(body);
}

/** Refuses a change whose If-Match does not name the resource's current ETag (412). */
export function checkIfMatch(req: FastifyRequest, current: unknown): void {
  const want = req.headers['if-match'];
  if (want === undefined || want === '*') return;
  const tags = want.split(',').map((s) => s.trim());
  if (!tags.includes(etagOf(current))) {
    throw new ApiError('PRECONDITION_FAILED', 'the resource has changed since the ETag given in If-Match');
  }
}
