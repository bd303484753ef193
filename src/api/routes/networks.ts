import { VipdipError } from '../../core/errors.ts';
/** Virtual networks, their subnets, and reserved IPs: per subscription. */
import { Type } from 'typebox';
import { checkIfMatch, scope, sendResource, visible, type Api, type ApiContext } from '../context.ts';
import * as S from '../schemas.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;
const Str = Type.String({ maxLength: 64 });
const SubParam = Type.Object({ subscription: Str });
const VnetParam = Type.Object({ subscription: Str, vnet: Str });
const RipParam = Type.Object({ subscription: Str, name: Str });

export function registerNetworkRoutes(app: Api, { cloud }: ApiContext): void {
  app.get(
    '/v1/vnets',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['networks'], response: { 200: Type.Array(S.Vnet), ...errors } },
    },
    async (req) => cloud.listVnets(visible(req)),
  );
  app.get(
    '/v1/subscriptions/:subscription/vnets',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['networks'], params: SubParam, response: { 200: Type.Array(S.Vnet), ...errors } },
    },
    async (req) => cloud.listVnets(scope(req, req.params.subscription)),
  );
  app.post(
    '/v1/subscriptions/:subscription/vnets',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['networks'],
        params: SubParam,
        body: S.CreateVnet,
        response: { 201: S.Vnet, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const vnet = await cloud.createVnet(scope(req, req.params.subscription), {
        name: b.name,
        addressSpace: b.addressSpace,
        ...(b.subnets ? { subnets: b.subnets } : {}),
        ...(b.dipPolicy ? { dipPolicy: b.dipPolicy } : {}),
        ...(b.movePolicy ? { movePolicy: b.movePolicy } : {}),
      });
      return sendResource(req, reply, vnet, 201);
    },
  );
  app.get(
    '/v1/subscriptions/:subscription/vnets/:vnet',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['networks'], params: VnetParam, response: { 200: S.Vnet, ...errors } },
    },
    async (req, reply) =>
      sendResource(req, reply, await cloud.getVnet(scope(req, req.params.subscription), req.params.vnet)),
  );
  app.patch(
    '/v1/subscriptions/:subscription/vnets/:vnet',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['networks'],
        params: VnetParam,
        body: S.PatchVnet,
        response: { 200: S.Vnet, ...errors },
      },
    },
    async (req, reply) => {
      const sub = scope(req, req.params.subscription);
      checkIfMatch(req, await cloud.getVnet(sub, req.params.vnet));
      const b = req.body;
      const vnet = await cloud.setVnetPolicy(sub, req.params.vnet, {
        ...(b.dipPolicy ? { dipPolicy: b.dipPolicy } : {}),
        ...(b.movePolicy ? { movePolicy: b.movePolicy } : {}),
      });
      return sendResource(req, reply, vnet);
    },
  );
  app.delete(
    '/v1/subscriptions/:subscription/vnets/:vnet',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['networks'], params: VnetParam, response: { ...errors } },
    },
    async (req, reply) => {
      await cloud.deleteVnet(scope(req, req.params.subscription), req.params.vnet);
      return reply.code(204).send();
    },
  );
  app.post(
    '/v1/subscriptions/:subscription/vnets/:vnet/subnets',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['networks'],
        params: VnetParam,
        body: S.SubnetSpec,
        response: { 201: S.Vnet, ...errors },
      },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        await cloud.addSubnet(scope(req, req.params.subscription), req.params.vnet, req.body),
        201,
      ),
  );
  app.delete(
    '/v1/subscriptions/:subscription/vnets/:vnet/subnets/:subnet',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['networks'],
        params: Type.Object({ subscription: Str, vnet: Str, subnet: Str }),
        response: { ...errors },
      },
    },
    async (req, reply) => {
      await cloud.deleteSubnet(scope(req, req.params.subscription), req.params.vnet, req.params.subnet);
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/reserved-ips',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['reserved IPs'], response: { 200: Type.Array(S.ReservedIp), ...errors } },
    },
    async (req) => cloud.listReservedIps(visible(req)),
  );
  app.get(
    '/v1/subscriptions/:subscription/reserved-ips',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['reserved IPs'],
        params: SubParam,
        response: { 200: Type.Array(S.ReservedIp), ...errors },
      },
    },
    async (req) => cloud.listReservedIps(scope(req, req.params.subscription)),
  );
  app.post(
    '/v1/subscriptions/:subscription/reserved-ips',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['reserved IPs'],
        params: SubParam,
        body: S.CreateReservedIp,
        response: { 201: S.ReservedIp, ...errors },
      },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        await cloud.createReservedIp(scope(req, req.params.subscription), req.body.name),
        201,
      ),
  );
  app.get(
    '/v1/subscriptions/:subscription/reserved-ips/:name',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['reserved IPs'], params: RipParam, response: { 200: S.ReservedIp, ...errors } },
    },
    async (req, reply) => {
      const all = await cloud.listReservedIps(scope(req, req.params.subscription));
      const rip = all.find((r) => r.name === req.params.name);
      if (rip === undefined)
        throw new VipdipError('NOT_FOUND', `reserved IP ${req.params.name} does not exist`);
      return sendResource(req, reply, rip);
    },
  );
  app.delete(
    '/v1/subscriptions/:subscription/reserved-ips/:name',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['reserved IPs'], params: RipParam, response: { ...errors } },
    },
    async (req, reply) => {
      await cloud.deleteReservedIp(scope(req, req.params.subscription), req.params.name);
      return reply.code(204).send();
    },
  );
  app.post(
    '/v1/subscriptions/:subscription/reserved-ips/:name/associate',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['reserved IPs'],
        params: RipParam,
        body: S.Associate,
        response: { 200: S.Service, ...errors },
      },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        await cloud.associateReservedIp(
          scope(req, req.params.subscription),
          req.params.name,
          req.body.service,
        ),
      ),
  );
  app.post(
    '/v1/subscriptions/:subscription/reserved-ips/:name/disassociate',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['reserved IPs'], params: RipParam, response: { 200: S.ReservedIp, ...errors } },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        await cloud.disassociateReservedIp(scope(req, req.params.subscription), req.params.name),
      ),
  );
}
