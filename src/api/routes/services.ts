/**
 * Cloud services and their VMs. A service's name is its DNS label, unique across the system, so a VM
 * is addressed as /v1/services/SERVICE/vms/VM; a subscription token sees only its own services.
 */
import { Type } from 'typebox';
import { VipdipError } from '../../core/errors.ts';
import { VM_OPERATIONS, type VmOperation } from '../../lifecycle/index.ts';
import { checkIfMatch, scope, sendResource, visible, type Api, type ApiContext } from '../context.ts';
import { ApiError } from '../problem.ts';
import * as S from '../schemas.ts';
import { refuseTenantCommand } from './images.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;
const Str = Type.String({ maxLength: 64 });
const SvcParam = Type.Object({ service: Str });
const VmParam = Type.Object({ service: Str, vm: Str });
const OPS: readonly VmOperation[] = VM_OPERATIONS.filter((o) => o !== 'delete');

export function registerServiceRoutes(app: Api, { cloud }: ApiContext): void {
  const ifMatch = (req: Parameters<typeof checkIfMatch>[0]) => (current: unknown) =>
    checkIfMatch(req, current);

  app.get(
    '/v1/services',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['services'], response: { 200: Type.Array(S.Service), ...errors } },
    },
    async (req) => cloud.listServices(visible(req)),
  );
  app.get(
    '/v1/subscriptions/:subscription/services',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['services'],
        params: Type.Object({ subscription: Str }),
        response: { 200: Type.Array(S.Service), ...errors },
      },
    },
    async (req) => cloud.listServices(scope(req, req.params.subscription)),
  );
  app.post(
    '/v1/subscriptions/:subscription/services',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['services'],
        params: Type.Object({ subscription: Str }),
        body: S.CreateService,
        response: { 201: S.Service, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      const svc = await cloud.createService(scope(req, req.params.subscription), {
        name: b.name,
        ...(b.vnet !== undefined ? { vnet: b.vnet } : {}),
        ...(b.reservedIp !== undefined ? { reservedIp: b.reservedIp } : {}),
      });
      return sendResource(req, reply, svc, 201);
    },
  );
  app.get(
    '/v1/services/:service',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['services'], params: SvcParam, response: { 200: S.Service, ...errors } },
    },
    async (req, reply) => sendResource(req, reply, await cloud.getService(req.params.service, visible(req))),
  );
  app.delete(
    '/v1/services/:service',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['services'], params: SvcParam, response: { ...errors } },
    },
    async (req, reply) => {
      checkIfMatch(req, await cloud.getService(req.params.service, visible(req)));
      await cloud.deleteService(req.params.service, visible(req));
      return reply.code(204).send();
    },
  );
  app.post(
    '/v1/services/:service/reserve-vip',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['reserved IPs'],
        params: SvcParam,
        body: S.ReserveVip,
        response: { 201: S.ReservedIp, ...errors },
      },
    },
    async (req, reply) => {
      const svc = await cloud.getService(req.params.service, visible(req));
      return sendResource(
        req,
        reply,
        await cloud.reserveServiceVip(svc.subscription, svc.name, req.body.name),
        201,
      );
    },
  );

  app.get(
    '/v1/vms',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['vms'], response: { 200: Type.Array(S.Vm), ...errors } },
    },
    async (req) => {
      const sub = visible(req);
      return cloud.listVms(sub === undefined ? {} : { subscription: sub });
    },
  );
  app.get(
    '/v1/services/:service/vms',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['vms'], params: SvcParam, response: { 200: Type.Array(S.Vm), ...errors } },
    },
    async (req) => {
      const sub = visible(req);
      return cloud.listVms({
        service: req.params.service,
        ...(sub === undefined ? {} : { subscription: sub }),
      });
    },
  );
  app.post(
    '/v1/services/:service/vms',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['vms'], params: SvcParam, body: S.CreateVm, response: { 201: S.Vm, ...errors } },
    },
    async (req, reply) => {
      const { start, ...spec } = req.body;
      refuseTenantCommand(req, spec.workload);
      const sub = visible(req);
      const vm = await cloud.createVm(
        req.params.service,
        { ...spec, subnet: spec.subnet },
        {
          ...(sub === undefined ? {} : { subscription: sub }),
          ...(start === undefined ? {} : { start }),
          commands: req.principal.kind === 'operator',
        },
      );
      return sendResource(req, reply, vm, 201);
    },
  );
  app.get(
    '/v1/services/:service/vms/:vm',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['vms'], params: VmParam, response: { 200: S.Vm, ...errors } },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        await cloud.getVm({ service: req.params.service, vm: req.params.vm, subscription: visible(req) }),
      ),
  );
  app.patch(
    '/v1/services/:service/vms/:vm',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['vms'], params: VmParam, body: S.PatchVm, response: { 200: S.Vm, ...errors } },
    },
    async (req, reply) => {
      const ref = { service: req.params.service, vm: req.params.vm, subscription: visible(req) };
      refuseTenantCommand(req, req.body.workload);
      const vm = await cloud.updateVm(ref, req.body, ifMatch(req), {
        commands: req.principal.kind === 'operator',
      });
      return sendResource(req, reply, vm);
    },
  );
  app.delete(
    '/v1/services/:service/vms/:vm',
    { config: { scope: 'tenant' }, schema: { tags: ['vms'], params: VmParam, response: { ...errors } } },
    async (req, reply) => {
      const ref = { service: req.params.service, vm: req.params.vm, subscription: visible(req) };
      await cloud.vmOperation(ref, 'delete', 'delete', ifMatch(req));
      return reply.code(204).send();
    },
  );
  app.post(
    '/v1/services/:service/vms/:vm/:operation',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['vms'],
        description: `one of ${OPS.join(', ')}`,
        params: Type.Object({ service: Str, vm: Str, operation: Type.String({ maxLength: 16 }) }),
        response: { 200: S.Vm, ...errors },
      },
    },
    async (req, reply) => {
      const op = req.params.operation as VmOperation;
      if (!OPS.includes(op)) {
        throw new ApiError(
          'BAD_REQUEST',
          `unknown VM operation ${JSON.stringify(req.params.operation)}: use ${OPS.join(', ')}`,
        );
      }
      const ref = { service: req.params.service, vm: req.params.vm, subscription: visible(req) };
      const vm = await cloud.vmOperation(ref, op, op, ifMatch(req));
      if (vm === null) throw new VipdipError('NOT_FOUND', `VM ${ref.service}/${ref.vm} does not exist`);
      return sendResource(req, reply, vm);
    },
  );
}
