/**
 * `/v1/chaos`: address weather on demand (SPEC §9). A tenant runs chaos over its own subscription
 * only (another one answers 404, as everywhere) and without host maintenance, which moves every
 * tenant's VMs and so is the operator's; a run over the whole fabric is the operator's too.
 */
import { Type, type Static } from 'typebox';
import { randomSeed } from '../../core/random.ts';
import {
  CHAOS_KINDS,
  DEFAULT_PAUSE_MS,
  MAX_DURATION_MS,
  MAX_PAUSE_MS,
  MAX_RATE_PER_MIN,
  type ChaosRates,
  type ChaosRuns,
} from '../../chaos/index.ts';
import { scope, visible, type Api } from '../context.ts';
import { ApiError } from '../problem.ts';
import * as S from '../schemas.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;
const Name = Type.String({ minLength: 1, maxLength: 64 });
const Rate = Type.Number({ minimum: 0, maximum: MAX_RATE_PER_MIN });
const Rates = Type.Object(
  Object.fromEntries(CHAOS_KINDS.map((k) => [k, Type.Optional(Rate)])) as Record<
    (typeof CHAOS_KINDS)[number],
    Type.TOptional<typeof Rate>
  >,
  { additionalProperties: false, description: 'operations per minute of each kind' },
);

export const StartChaos = Type.Object(
  {
    subscription: Type.Optional(Name),
    services: Type.Optional(Type.Array(Name, { minItems: 1, maxItems: 64 })),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 0xffffffff })),
    rates: Rates,
    pauseMs: Type.Optional(Type.Integer({ minimum: 0, maximum: MAX_PAUSE_MS })),
    durationMs: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1, maximum: MAX_DURATION_MS }), Type.Null()]),
    ),
  },
  { additionalProperties: false },
);
type StartChaosBody = Static<typeof StartChaos>;

/** 4 KiB: a start names a few services and five rates. */
const START_BODY_LIMIT_BYTES = 4096;
const IdParam = Type.Object({ id: Type.String({ minLength: 1, maxLength: 32, pattern: '^[A-Za-z0-9-]+$' }) });

export function registerChaosRoutes(app: Api, runs: ChaosRuns): void {
  app.post(
    '/v1/chaos',
    {
      config: { scope: 'tenant' },
      bodyLimit: START_BODY_LIMIT_BYTES,
      schema: {
        tags: ['chaos'],
        description:
          'starts a chaos run: maintenance, redeploys, deallocations, VIP loss and workload crashes at the given rates',
        body: StartChaos,
        response: { 201: S.ChaosRun, ...errors },
      },
    },
    async (req, reply) => {
      const b: StartChaosBody = req.body;
      const p = req.principal;
      if (b.subscription === undefined && p.kind !== 'operator') {
        throw new ApiError(
          'FORBIDDEN',
          'a chaos run over the whole fabric needs the operator token: give the subscription',
        );
      }
      const subscription = b.subscription === undefined ? null : scope(req, b.subscription);
      if (b.services !== undefined && subscription === null) {
        throw new ApiError('BAD_REQUEST', 'services: name the subscription they belong to');
      }
      if ((b.rates.maintenance ?? 0) > 0 && p.kind !== 'operator') {
        throw new ApiError(
          'FORBIDDEN',
          'maintenance: only the operator can take hosts into maintenance (it moves every tenant’s VMs)',
        );
      }
      const rates: ChaosRates = {};
      for (const k of CHAOS_KINDS) if (b.rates[k] !== undefined) rates[k] = b.rates[k];
      const run = await runs.start({
        subscription,
        services: b.services ?? null,
        seed: b.seed ?? randomSeed(),
        rates,
        pauseMs: b.pauseMs ?? DEFAULT_PAUSE_MS,
        durationMs: b.durationMs ?? null,
      });
      return reply.code(201).send(run);
    },
  );
  app.get(
    '/v1/chaos',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['chaos'], response: { 200: Type.Array(S.ChaosRun), ...errors } },
    },
    (req) => runs.list(visible(req)),
  );
  app.get(
    '/v1/chaos/:id',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['chaos'], params: IdParam, response: { 200: S.ChaosRun, ...errors } },
    },
    (req) => runs.get(req.params.id, visible(req)),
  );
  app.post(
    '/v1/chaos/:id/stop',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['chaos'],
        description: 'stops a run; what it took away (deallocated VMs, released VIPs) is given back first',
        params: IdParam,
        response: { 200: S.ChaosRun, ...errors },
      },
    },
    (req) => runs.stop(req.params.id, visible(req)),
  );
}
