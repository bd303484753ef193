/** The operator's images (the built-ins are images.ts's), and the check of a VM's workload against them. */
import { VipdipError, isVipdipError } from '../core/errors.ts';
import type { ImageRow, Repo } from '../store/index.ts';
import { notFound, type Ctx } from './context.ts';
import { events } from './events.ts';
import {
  BUILTIN_IMAGES,
  checkImageName,
  isBuiltinImage,
  normalizeImage,
  parseWorkload,
  type ImageSpec,
} from './images.ts';
import type { ImageView } from './views.ts';

/** A delete refused because VMs name the image lists at most this many of them. */
const IMAGE_USERS_LISTED = 5;

function imageView(r: ImageRow): ImageView {
  return {
    name: r.name,
    builtin: false,
    command: r.command,
    env: JSON.parse(r.env) as Record<string, string>,
    createdAt: r.created_at,
  };
}

const builtinImageView = (name: string): ImageView => ({
  name,
  builtin: true,
  command: null,
  env: {},
  createdAt: null,
});

/**
 * Whether a workload may be set by this caller, checked inside the transaction that sets it: an
 * image must exist (a delete of it waits for the lock), an inline command needs the operator.
 */
export async function checkWorkload(
  repo: Repo,
  vm: string,
  workload: string | null,
  commands: boolean,
): Promise<void> {
  if (workload === null) return;
  let ref;
  try {
    ref = parseWorkload(workload);
  } catch (e) {
    if (isVipdipError(e)) throw new VipdipError(e.code, `VM ${vm}: ${e.detail}`);
    throw e;
  }
  if (ref.kind === 'command') {
    if (!commands) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `VM ${vm}: only the operator may give a VM a command; choose an image (vipdip image list)`,
      );
    }
    return;
  }
  if (isBuiltinImage(ref.image)) return;
  await repo.lockImages();
  if ((await repo.image(ref.image)) === undefined) {
    throw new VipdipError('INVALID_ARGUMENT', `VM ${vm}: image ${ref.image} does not exist`);
  }
}

/** The built-ins first, then the operator's, by name. */
export function listImages(c: Ctx): Promise<ImageView[]> {
  return c.read(async (r) => [...BUILTIN_IMAGES.map(builtinImageView), ...(await r.images()).map(imageView)]);
}

export function getImage(c: Ctx, name: string): Promise<ImageView> {
  if (isBuiltinImage(name)) return Promise.resolve(builtinImageView(name));
  return c.read(async (r) => {
    const row = await r.image(name);
    return row === undefined ? notFound(`image ${name}`) : imageView(row);
  });
}

/** Registers an image (operator); ALREADY_EXISTS for a built-in or a registered name. */
export async function createImage(c: Ctx, name: string, spec: ImageSpec): Promise<ImageView> {
  const img = normalizeImage(name, spec);
  return c.write(async (tx) => {
    await tx.repo.lockImages();
    if ((await tx.repo.image(name)) !== undefined) {
      throw new VipdipError('ALREADY_EXISTS', `image ${name} already exists`);
    }
    const row = {
      name,
      command: img.command,
      env: JSON.stringify(img.env),
      created_at: c.clock.now().toISOString(),
    };
    await tx.repo.insertImage(row);
    tx.emit(events.imageCreated(name, { command: img.command, env: Object.keys(img.env) }));
    return imageView(row);
  });
}

/** Changes an image's command or environment; the VMs running it restart with the new one. */
export async function updateImage(c: Ctx, name: string, spec: ImageSpec): Promise<ImageView> {
  const img = normalizeImage(name, spec);
  return c.write(async (tx) => {
    await tx.repo.lockImages();
    const cur = (await tx.repo.image(name)) ?? notFound(`image ${name}`);
    const env = JSON.stringify(img.env);
    if (cur.command !== img.command || cur.env !== env) {
      await tx.repo.updateImage(name, { command: img.command, env });
      tx.emit(
        events.imageUpdated(
          name,
          { command: cur.command, env: Object.keys(JSON.parse(cur.env) as object) },
          { command: img.command, env: Object.keys(img.env) },
        ),
      );
    }
    return imageView({ ...cur, command: img.command, env });
  });
}

/** Deletes an image; IN_USE while any VM names it. */
export async function deleteImage(c: Ctx, name: string): Promise<void> {
  checkImageName(name);
  if (isBuiltinImage(name)) throw new VipdipError('IN_USE', `image ${name} is built in`);
  await c.write(async (tx) => {
    await tx.repo.lockImages();
    const cur = (await tx.repo.image(name)) ?? notFound(`image ${name}`);
    const users = await tx.repo.vmsUsingImage(name, IMAGE_USERS_LISTED + 1);
    if (users.length > 0) {
      const more = users.length > IMAGE_USERS_LISTED ? ' and more' : '';
      throw new VipdipError(
        'IN_USE',
        `image ${name} is the workload of ${users.slice(0, IMAGE_USERS_LISTED).join(', ')}${more}`,
      );
    }
    await tx.repo.deleteImage(name);
    tx.emit(events.imageDeleted(name, cur.command));
  });
}
