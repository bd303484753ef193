/** Declarative apply of a whole topology (YAML or JSON): POST /v1/apply?dryRun=true&prune=true. */
import { Type } from 'typebox';
import { applyTopology, parseTopology } from '../../topology/index.ts';
import type { Api, ApiContext } from '../context.ts';
import { ApiError } from '../problem.ts';

export function registerApplyRoutes(app: Api, { cloud }: ApiContext): void {
  app.post(
    '/v1/apply',
    {
      config: { scope: 'tenant' },
      schema: {
        tags: ['apply'],
        description:
          'create and update everything the topology names; delete what it does not name only with prune',
        querystring: Type.Object(
          {
            dryRun: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
            prune: Type.Optional(Type.Union([Type.Literal('true'), Type.Literal('false')])),
          },
          { additionalProperties: false },
        ),
      },
    },
    async (req) => {
      const doc = parseTopology(req.body);
      // Images carry commands run on the host: a tenant's document naming any is refused outright.
      if (req.principal.kind !== 'operator' && typeof doc === 'object' && 'images' in doc) {
        throw new ApiError('FORBIDDEN', 'only the operator may declare images');
      }
      return applyTopology(cloud, doc, {
        dryRun: req.query.dryRun === 'true',
        prune: req.query.prune === 'true',
        operator: req.principal.kind === 'operator',
        ...(req.principal.kind === 'subscription' ? { subscription: req.principal.subscription } : {}),
      });
    },
  );
}
