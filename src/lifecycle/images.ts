/**
 * Images: what a VM's `workload` names (SPEC §4, §8). A workload is either the name of an image (a
 * built-in, or one the operator registered with a command) or, given by the operator only, an inline
 * command written `command: <command line>`. A tenant chooses among images and never writes a
 * command: the prefix makes the difference visible in the text itself, so that no string a tenant
 * sends can be taken for a command by accident (before images, every workload was a shell command).
 * Pure.
 */
import { VipdipError } from '../core/errors.ts';

/** The images every vipdip has; they run through the vipdip command itself. */
export const BUILTIN_IMAGES = ['whoami', 'echo'] as const;
export type BuiltinImage = (typeof BUILTIN_IMAGES)[number];
export const isBuiltinImage = (w: string): w is BuiltinImage =>
  (BUILTIN_IMAGES as readonly string[]).includes(w);

/** The prefix of an operator's inline command in a VM's `workload`. */
export const COMMAND_PREFIX = 'command:';
/** An image name: a lower-case DNS-label-like word, so that it never looks like a command line. */
export const IMAGE_NAME_PATTERN = '^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$';
const IMAGE_NAME = new RegExp(IMAGE_NAME_PATTERN);
export const IMAGE_COMMAND_MAX_CHARS = 4096;
export const IMAGE_ENV_MAX_VARS = 64;
export const IMAGE_ENV_VALUE_MAX_CHARS = 4096;
/** An environment variable's name as an image may set it (not a VM's own VIPDIP_* variables). */
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

export type WorkloadRef = { kind: 'image'; image: string } | { kind: 'command'; command: string };

/** What a VM's `workload` text means; INVALID_ARGUMENT when it is neither an image name nor a command. */
export function parseWorkload(text: string): WorkloadRef {
  if (text.startsWith(COMMAND_PREFIX)) {
    const command = text.slice(COMMAND_PREFIX.length).trim();
    if (command === '') {
      throw new VipdipError('INVALID_ARGUMENT', `workload ${COMMAND_PREFIX} needs a command line after it`);
    }
    return { kind: 'command', command };
  }
  if (!IMAGE_NAME.test(text)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `workload ${JSON.stringify(text.slice(0, 80))} is not an image name (lower-case letters, digits and ` +
        `hyphens); the operator writes an inline command as "${COMMAND_PREFIX} <command line>"`,
    );
  }
  return { kind: 'image', image: text };
}

/** The image a workload names, or null for an inline command (what the dashboard shows). */
export function workloadImage(text: string | null): string | null {
  if (text === null || text.startsWith(COMMAND_PREFIX)) return null;
  return text;
}

export function checkImageName(name: unknown): string {
  if (typeof name !== 'string' || !IMAGE_NAME.test(name)) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `image name ${JSON.stringify(String(name).slice(0, 80))} must be lower-case letters, digits and hyphens (at most 63)`,
    );
  }
  return name;
}

export interface ImageSpec {
  command: string;
  env?: Record<string, string>;
}

/** Checks an operator's image: a non-empty command and a small environment of plain names. */
export function normalizeImage(
  name: string,
  spec: { command?: unknown; env?: unknown },
): Required<ImageSpec> {
  checkImageName(name);
  if (isBuiltinImage(name)) {
    throw new VipdipError('ALREADY_EXISTS', `image ${name} is built in and cannot be replaced`);
  }
  const { command, env = {} } = spec;
  if (typeof command !== 'string' || command.trim() === '' || command.length > IMAGE_COMMAND_MAX_CHARS) {
    throw new VipdipError(
      'INVALID_ARGUMENT',
      `image ${name}: command must be a non-empty command line of at most ${IMAGE_COMMAND_MAX_CHARS} characters`,
    );
  }
  if (typeof env !== 'object' || env === null || Array.isArray(env)) {
    throw new VipdipError('INVALID_ARGUMENT', `image ${name}: env must be a mapping of names to values`);
  }
  const entries = Object.entries(env as Record<string, unknown>);
  if (entries.length > IMAGE_ENV_MAX_VARS) {
    throw new VipdipError('INVALID_ARGUMENT', `image ${name}: at most ${IMAGE_ENV_MAX_VARS} variables`);
  }
  const out: Record<string, string> = {};
  for (const [k, v] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!ENV_NAME.test(k) || k.startsWith('VIPDIP_')) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `image ${name}: ${JSON.stringify(k.slice(0, 80))} is not a variable name an image may set (VIPDIP_* are the VM's own)`,
      );
    }
    if (typeof v !== 'string' || v.length > IMAGE_ENV_VALUE_MAX_CHARS) {
      throw new VipdipError(
        'INVALID_ARGUMENT',
        `image ${name}: the value of ${k} must be a string of at most ${IMAGE_ENV_VALUE_MAX_CHARS} characters`,
      );
    }
    out[k] = v;
  }
  return { command, env: out };
}
