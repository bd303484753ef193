import { createHash } from 'node:crypto';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { VipdipError } from '../core/errors.ts';
import type { StatusRegistry } from '../agent/index.ts';
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

export interface ApiContext {
  cloud: Cloud;
  tokens: Tokens;
  /** The data plane's reports: backend health and workloads. */
  registry: StatusRegistry;
}

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal;
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
