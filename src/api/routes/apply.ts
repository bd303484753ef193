/** Declarative apply of a whole topology (YAML or JSON): POST /v1/apply?dryRun=true&prune=true. */
import { Type } from 'typebox';
import { YamlParser, applyTopology, parseTopology } from '../../topology/index.ts';
import type { Api, ApiContext } from '../context.ts';
import { checkStructure } from '../limits.ts';
import { ApiError } from '../problem.ts';

/**
 * Sized from a realistic large topology: 10,000 VMs in 2,500 services of 4, one endpoint each, written
 * as the examples are, take 0.89 MB of YAML (0.78 MB as JSON); 2 MiB leaves room for twice that.
 */
export const APPLY_BODY_LIMIT_BYTES = 2 << 20;
/**
 * The most values (mappings, lists and scalars) a topology may hold. The 10,000-VM topology above
 * holds 65,000 (counted in the YAML worker, so a bigger one is never copied back); validation's cost
 * is bounded by this, not by what a body can pack into 2 MiB.
 */
export const APPLY_VALUES_MAX = 150_000;

export function registerApplyRoutes(app: Api, { cloud }: ApiContext): void {
  const yaml = new YamlParser(APPLY_VALUES_MAX);
  app.addHook('onClose', () => yaml.close());
  app.post(
    '/v1/apply',
    {
      config: { scope: 'tenant' },
      bodyLimit: APPLY_BODY_LIMIT_BYTES,
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
      // YAML is parsed in a worker, so a large document never holds the API, DNS or data plane.
      const parsed = typeof req.body === 'string' ? await yaml.parse(req.body) : req.body;
      const p = checkStructure(parsed, undefined) ?? countValues(parsed, APPLY_VALUES_MAX);
      if (p !== undefined) throw new ApiError('BAD_REQUEST', `${p.path} ${p.message}`, { errors: [p] });
      const doc = parseTopology(parsed);
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

/** Counts the values of a parsed document, stopping once past `max`. */
function countValues(doc: unknown, max: number): { path: string; message: string } | undefined {
  let n = 0;
  const stack: unknown[] = [doc];
  while (stack.length > 0) {
    const v = stack.pop();
    if (++n > max) return { path: 'body', message: `holds more than ${max} values` };
    if (Array.isArray(v)) for (const x of v as unknown[]) stack.push(x);
    else if (typeof v === 'object' && v !== null)
      for (const x of Object.values(v) as unknown[]) stack.push(x);
  }
  return undefined;
}
