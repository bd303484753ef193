/**
 * Workload images (SPEC §4, §8): every caller may list them, to choose one for a VM; only the operator
 * registers, changes and deletes them. A tenant sees an image's name only: the command and the
 * environment (which may hold the operator's settings) stay the operator's.
 */
import { Type, type Static } from 'typebox';
import {
  IMAGE_COMMAND_MAX_CHARS,
  IMAGE_ENV_MAX_VARS,
  IMAGE_ENV_VALUE_MAX_CHARS,
  IMAGE_NAME_PATTERN,
  type ImageView,
} from '../../lifecycle/index.ts';
import { COMMAND_PREFIX } from '../../lifecycle/index.ts';
import type { FastifyRequest } from 'fastify';
import { requireOperator, sendResource, type Api, type ApiContext } from '../context.ts';
import { ApiError } from '../problem.ts';
import * as S from '../schemas.ts';

const errors = { '4xx': { $ref: 'Problem#' } } as const;

export const ImageName = Type.String({ pattern: IMAGE_NAME_PATTERN, maxLength: 63 });
const NameParam = Type.Object({ name: Type.String({ maxLength: 63 }) });

const Env = Type.Record(
  Type.String({ maxLength: 128 }),
  Type.String({ maxLength: IMAGE_ENV_VALUE_MAX_CHARS }),
  {
    maxProperties: IMAGE_ENV_MAX_VARS,
  },
);

const ImageBody = Type.Object(
  {
    command: Type.String({ minLength: 1, maxLength: IMAGE_COMMAND_MAX_CHARS }),
    env: Type.Optional(Env),
  },
  { additionalProperties: false },
);
const CreateImage = Type.Object(
  {
    name: ImageName,
    command: Type.String({ minLength: 1, maxLength: IMAGE_COMMAND_MAX_CHARS }),
    env: Type.Optional(Env),
  },
  { additionalProperties: false },
);

type ImageBodyT = Static<typeof ImageBody>;

/** What a caller may see of an image: a tenant its name, whether it is built in, and when it came. */
export function imageFor(operator: boolean, img: ImageView): S.Image {
  if (operator) return img;
  return { name: img.name, builtin: img.builtin, createdAt: img.createdAt };
}

/**
 * A tenant names images only: an inline command in its request is refused (403) before anything is
 * looked at. The store checks the same again inside the change (`commands: false`).
 */
export function refuseTenantCommand(req: FastifyRequest, workload: string | null | undefined): void {
  if (req.principal.kind === 'operator' || typeof workload !== 'string') return;
  if (workload.startsWith(COMMAND_PREFIX)) {
    throw new ApiError(
      'FORBIDDEN',
      'only the operator may give a VM a command; a tenant chooses an image (GET /v1/images)',
    );
  }
}

const spec = (b: ImageBodyT) => ({ command: b.command, ...(b.env === undefined ? {} : { env: b.env }) });

export function registerImageRoutes(app: Api, { cloud }: ApiContext): void {
  app.get(
    '/v1/images',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['images'], response: { 200: Type.Array(S.Image), ...errors } },
    },
    async (req) => {
      const op = req.principal.kind === 'operator';
      return (await cloud.listImages()).map((i) => imageFor(op, i));
    },
  );
  app.get(
    '/v1/images/:name',
    {
      config: { scope: 'tenant' },
      schema: { tags: ['images'], params: NameParam, response: { 200: S.Image, ...errors } },
    },
    async (req, reply) =>
      sendResource(
        req,
        reply,
        imageFor(req.principal.kind === 'operator', await cloud.getImage(req.params.name)),
      ),
  );
  app.post(
    '/v1/images',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['images'],
        description: 'registers a workload image: a command line run by /bin/sh, with its environment',
        body: CreateImage,
        response: { 201: S.Image, ...errors },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      return sendResource(req, reply, await cloud.createImage(req.body.name, spec(req.body)), 201);
    },
  );
  app.put(
    '/v1/images/:name',
    {
      config: { scope: 'operator' },
      schema: {
        tags: ['images'],
        description: "changes an image's command or environment; the VMs running it restart",
        params: NameParam,
        body: ImageBody,
        response: { 200: S.Image, ...errors },
      },
    },
    async (req, reply) => {
      requireOperator(req);
      return sendResource(req, reply, await cloud.updateImage(req.params.name, spec(req.body)));
    },
  );
  app.delete(
    '/v1/images/:name',
    {
      config: { scope: 'operator' },
      schema: { tags: ['images'], params: NameParam, response: { ...errors } },
    },
    async (req, reply) => {
      requireOperator(req);
      await cloud.deleteImage(req.params.name);
      return reply.code(204).send();
    },
  );
}
