/** Subscriptions, tokens, public pools and hosts: mostly the operator's side. */
import { Type } from 'typebox';
import { VipdipError } from '../../core/errors.ts';
import { requireOperator, scope, sendResource, visible, type Api, type ApiContext } from '../context.ts';
import * as S from '../schemas.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;
const SubParam = Type.Object({ subscription: Type.String({ maxLength: 64 }) });

export function registerFabricRoutes(app: Api, { cloud, tokens }: ApiContext): void {
  app.get(
    '/v1/subscriptions',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['subscriptions'], response: { 200: Type.Array(S.Subscription), ...errors } },
    },
    async (req) => {
      const only = visible(req);
      return (await cloud.listSubscriptions()).filter((s) => only === undefined || s.name === only);
    },
  );
  app.post(
    '/v1/subscriptions',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['subscriptions'],
        body: S.CreateSubscription,
        response: { 201: S.Subscription, ...errors },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      return sendResource(req, reply, await cloud.createSubscription(req.body.name), 201);
    },
  );
  app.get(
    '/v1/subscriptions/:subscription',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['subscriptions'], params: SubParam, response: { 200: S.Subscription, ...errors } },
    },
    async (req, reply) => {
      const name = scope(req, req.params.subscription);
      const sub = (await cloud.listSubscriptions()).find((s) => s.name === name);
      if (sub === undefined) throw new VipdipError('NOT_FOUND', `subscription ${name} does not exist`);
      return sendResource(req, reply, sub);
    },
  );
  app.delete(
    '/v1/subscriptions/:subscription',
    {
      config: { scope: 'operator' },
      schema: { tags: ['subscriptions'], params: SubParam, response: { ...errors } },
    },
    async (req, reply) => {
      requireOperator(req);
      await cloud.deleteSubscription(req.params.subscription);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/whoami',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['tokens'],
        description: 'who the token is: the operator, or a subscription (what a client may show)',
        response: { 200: S.Whoami, ...errors },
      },
    },
    (req) => {
      const p = req.principal;
      return p.kind === 'operator'
        ? { kind: p.kind, name: p.name, subscription: null }
        : { kind: p.kind, name: p.name, subscription: p.subscription };
    },
  );

  app.get('/v1/tokens', { config: { scope: 'operator' }, schema: { tags: ['tokens'] } }, async (req) => {
    requireOperator(req);
    return tokens.list();
  });
  app.post(
    '/v1/subscriptions/:subscription/tokens',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['tokens'],
        params: SubParam,
        body: S.CreateToken,
        response: {
          201: Type.Object({ name: Type.String(), subscription: Type.String(), token: Type.String() }),
          ...errors,
        },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      const token = await tokens.create(req.body.name, req.params.subscription);
      return reply.code(201).send({ name: req.body.name, subscription: req.params.subscription, token });
    },
  );
  app.delete(
    '/v1/subscriptions/:subscription/tokens/:name',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['tokens'],
        params: Type.Object({
          subscription: Type.String({ maxLength: 64 }),
          name: Type.String({ maxLength: 64 }),
        }),
      },
    },
    async (req, reply) => {
      requireOperator(req);
      if (!(await tokens.revoke(req.params.name, req.params.subscription))) {
        throw new VipdipError(
          'NOT_FOUND',
          `token ${req.params.name} of subscription ${req.params.subscription} does not exist`,
        );
      }
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/pools',
    {
      config: { scope: 'operator' },
      schema: { tags: ['fabric'], response: { 200: Type.Array(S.Pool), ...errors } },
    },
    // The fabric's usage is the operator's: a tenant reading it would watch its neighbours' activity.
    async (req) => {
      requireOperator(req);
      return cloud.listPools();
    },
  );
  app.post(
    '/v1/pools',
    {
      config: { scope: 'operator' },
      schema: { tags: ['fabric'], body: S.CreatePool, response: { 201: S.Pool, ...errors } },
    },
    async (req, reply) => {
      requireOperator(req);
      return sendResource(req, reply, await cloud.addPublicPool(req.body.cidr), 201);
    },
  );
  app.delete(
    '/v1/pools/:base/:prefix',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['fabric'],
        params: Type.Object({ base: Type.String({ maxLength: 15 }), prefix: Type.String({ maxLength: 2 }) }),
      },
    },
    async (req, reply) => {
      requireOperator(req);
      await cloud.deletePublicPool(`${req.params.base}/${req.params.prefix}`);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/hosts',
    {
      config: { scope: 'operator' },
      schema: { tags: ['fabric'], response: { 200: Type.Array(S.Host), ...errors } },
    },
    async (req) => {
      requireOperator(req);
      return cloud.listHosts();
    },
  );
  app.post(
    '/v1/hosts',
    {
      config: { scope: 'operator' },
      schema: { tags: ['fabric'], body: S.CreateHost, response: { 201: S.Host, ...errors } },
    },
    async (req, reply) => {
      requireOperator(req);
      return sendResource(req, reply, await cloud.addHost(req.body.name, req.body.rack), 201);
    },
  );
  app.post(
    '/v1/hosts/:host/maintenance',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['fabric'],
        params: Type.Object({ host: Type.String({ maxLength: 64 }) }),
        response: { 200: Type.Array(S.Vm), ...errors },
      },
    },
    async (req) => {
      requireOperator(req);
      return cloud.maintenance({ host: req.params.host });
    },
  );
  app.post(
    '/v1/racks/:rack/maintenance',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['fabric'],
        params: Type.Object({ rack: Type.String({ maxLength: 64 }) }),
        response: { 200: Type.Array(S.Vm), ...errors },
      },
    },
    async (req) => {
      requireOperator(req);
      return cloud.maintenance({ rack: req.params.rack });
    },
  );
}
