/**
 * The data plane through the API: the health of every backend of a service's endpoints and the
 * status and last output of a VM's workload (both tenant-scoped: another subscription's service
 * answers 404), and the operator-token route by which a standalone agent reports them.
 */
import { Type } from 'typebox';
import { requireOperator, visible, type Api, type ApiContext } from '../context.ts';
import { VipdipError } from '../../core/errors.ts';
import { ApiError } from '../problem.ts';
import * as S from '../schemas.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;
const Str = Type.String({ maxLength: 64 });
/**
 * Sized for one agent of 10,000 VMs: its backends (about 250 bytes each, 2.5 MB) and workloads with
 * their last output lines (200 lines of up to 2,000 characters kept, a few KiB each in practice).
 * Only an agent or the operator reaches it: a tenant is refused in onRequest before a byte is read.
 */
const REPORT_BODY_LIMIT_BYTES = 64 << 20;

export function registerDataPlaneRoutes(app: Api, ctx: ApiContext): void {
  const { cloud, registry } = ctx;

  app.get(
    '/v1/services/:service/health',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['data plane'],
        params: Type.Object({ service: Str }),
        response: { 200: S.ServiceHealth, ...errors },
      },
    },
    async (req): Promise<S.ServiceHealth> => {
      const svc = await cloud.getService(req.params.service, visible(req));
      const vms = await cloud.listVms({ service: svc.name, subscription: svc.subscription });
      const reported = registry.backends(svc.name);
      const groups = new Map<string, S.EndpointHealth>();
      for (const vm of [...vms].sort((a, b) => (a.name < b.name ? -1 : 1))) {
        for (const e of vm.endpoints) {
          // Members of a load-balanced set share one public endpoint; any other endpoint is its own.
          const key = e.lbSet !== undefined ? `set ${e.lbSet}` : `vm ${vm.name} ${e.name}`;
          let g = groups.get(key);
          if (g === undefined) {
            g = {
              name: e.name,
              protocol: e.protocol,
              publicPort: e.publicPort,
              lbSet: e.lbSet ?? null,
              vip: svc.vip,
              backends: [],
            };
            groups.set(key, g);
          }
          const r = reported.get(`${vm.name}/${e.name}`);
          let state: S.BackendState = 'unknown';
          let since: string | null = null;
          let detail: string | null;
          if (vm.state !== 'running') {
            state = 'down';
            detail = `the VM is ${vm.state}`;
            since = r?.state === 'down' ? r.since : null;
          } else if (r === undefined) {
            detail = 'no data-plane agent reports this backend';
          } else if (r.dip !== vm.dip) {
            detail = `the data plane has not caught up with its DIP ${vm.dip} yet`;
          } else {
            state = r.state;
            since = r.since;
            detail = r.detail;
          }
          g.backends.push({ vm: vm.name, dip: vm.dip, localPort: e.localPort, state, since, detail });
        }
      }
      return { service: svc.name, endpoints: [...groups.values()] };
    },
  );

  app.get(
    '/v1/services/:service/vms/:vm/logs',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['data plane'],
        params: Type.Object({ service: Str, vm: Str }),
        response: { 200: S.WorkloadLogs, ...errors },
      },
    },
    async (req) => {
      const vm = await cloud.getVm({
        service: req.params.service,
        vm: req.params.vm,
        subscription: visible(req),
      });
      const w = vm.workload === null ? undefined : registry.workload(vm.service, vm.name);
      return {
        vm: vm.name,
        workload: vm.workload,
        status: vm.workload === null ? ('none' as const) : (w?.status ?? ('stopped' as const)),
        pid: w?.pid ?? null,
        restarts: w?.restarts ?? 0,
        lines: w?.lines ?? [],
        agent: w?.agent ?? null,
        reportedAt: w?.reportedAt ?? null,
        stale: w?.stale ?? false,
      };
    },
  );

  app.put(
    '/v1/agents/:agent/report',
    {
      config: { scope: 'agent' },
      bodyLimit: REPORT_BODY_LIMIT_BYTES,
      schema: {
        tags: ['data plane'],
        description: 'a standalone agent reports backend health, workloads and listeners (operator token)',
        params: Type.Object({ agent: Str }),
        body: S.AgentReport,
        response: { ...errors },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      if (req.body.agent !== req.params.agent) {
        throw new ApiError(
          'BAD_REQUEST',
          `the report is from agent ${req.body.agent}, not ${req.params.agent}`,
        );
      }
      registry.accept(req.body);
      return reply.code(204).send();
    },
  );

  app.delete(
    '/v1/agents/:agent',
    {
      config: { scope: 'agent' },
      schema: {
        tags: ['data plane'],
        description: 'an agent that stops for good says so: its backends read unknown at once',
        params: Type.Object({ agent: Str }),
        response: { ...errors },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      if (!registry.forget(req.params.agent)) {
        throw new VipdipError('NOT_FOUND', `agent ${req.params.agent} has not reported`);
      }
      return reply.code(204).send();
    },
  );

  app.get(
    '/v1/agents',
    {
      config: { scope: 'operator' },
      schema: { tags: ['data plane'], response: { 200: Type.Array(S.AgentSeen), ...errors } },
    },
    (req) => {
      requireOperator(req);
      return Promise.resolve(registry.agentsSeen());
    },
  );
}
