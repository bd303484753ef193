/**
 * The one place where error codes become HTTP statuses, and errors become RFC 9457
 * `application/problem+json` bodies with the stable code in a `code` member.
 */
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Problem } from '../core/api-shapes.ts';
import type { ErrorCode } from '../core/errors.ts';

export const STATUS: Readonly<Record<ErrorCode | ApiErrorCode, number>> = {
  INVALID_ADDRESS: 422,
  INVALID_CIDR: 422,
  INVALID_ARGUMENT: 422,
  POOL_EXHAUSTED: 409,
  ADDRESS_TAKEN: 409,
  ADDRESS_OUT_OF_RANGE: 422,
  ADDRESS_RESERVED: 422,
  INVALID_TRANSITION: 409,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  OVERLAP: 409,
  IN_USE: 409,
  NO_HOST: 409,
  CONFLICT: 409,
  DRIVER_UNSUPPORTED: 422,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  PRECONDITION_FAILED: 412,
  UNSUPPORTED_MEDIA_TYPE: 415,
  PAYLOAD_TOO_LARGE: 413,
  INTERNAL: 500,
  UNAVAILABLE: 503,
  OVERLOADED: 503,
};

/** Errors that only the API raises (transport, auth, preconditions). */
export type ApiErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'PRECONDITION_FAILED'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  /** Refused before anything ran (admission.ts): nothing was done, and it may be sent again. */
  | 'OVERLOADED';

export const API_TITLES: Readonly<Record<ApiErrorCode, string>> = {
  BAD_REQUEST: 'bad request',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  PRECONDITION_FAILED: 'precondition failed',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported media type',
  PAYLOAD_TOO_LARGE: 'payload too large',
  INTERNAL: 'internal error',
  UNAVAILABLE: 'service unavailable',
  OVERLOADED: 'server overloaded',
};

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    readonly detail: string,
    readonly extra: ProblemExtra = {},
  ) {
    super(`${API_TITLES[code]}: ${detail}`);
  }
}

export type { Problem } from '../core/api-shapes.ts';

/**
 * What a problem may carry beyond its code and texts: only members of the Problem schema, since the
 * serializer sends no others. `errors` is checked when the problem is made (a domain error's data is
 * untyped): a list of `{ path, message }`.
 */
export interface ProblemExtra {
  errors?: unknown;
  errorsTotal?: number;
}

/** No problem lists more than this many errors; `errorsTotal` says how many there were. */
export const PROBLEM_ERRORS_MAX = 100;
/** Each text of a problem is cut to this many characters (a field name may be as long as a body). */
const PROBLEM_TEXT_MAX_CHARS = 512;
const PROBLEM_DETAIL_MAX_CHARS = 2048;

const cut = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

/**
 * A problem body. Whatever the caller passes, it stays small (well under 64 KiB): the error list is
 * capped with its total count, every text is cut, and `instance` is the path alone, since a query
 * string may carry a token (`?access_token=`) that must never be echoed.
 */
export function problem(
  code: ErrorCode | ApiErrorCode,
  title: string,
  detail: string,
  instance?: string,
  extra: ProblemExtra = {},
): Problem {
  const { errors, ...rest } = extra;
  const capped = Array.isArray(errors)
    ? {
        errors: (errors as { path?: string; message?: string }[]).slice(0, PROBLEM_ERRORS_MAX).map((e) => ({
          path: cut(e.path ?? '', PROBLEM_TEXT_MAX_CHARS),
          message: cut(e.message ?? '', PROBLEM_TEXT_MAX_CHARS),
        })),
        ...(errors.length > PROBLEM_ERRORS_MAX ? { errorsTotal: errors.length } : {}),
      }
    : {};
  return {
    type: `https://vipdip.test/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status: STATUS[code],
    detail: cut(detail, PROBLEM_DETAIL_MAX_CHARS),
    code,
    ...(instance === undefined ? {} : { instance: cut(instance.split('?')[0]!, PROBLEM_TEXT_MAX_CHARS) }),
    ...rest,
    ...capped,
  };
}

/**
 * Answers a problem on Node's own response, for the refusals made before Fastify sees a request
 * (admission control, a body that did not arrive in time). `done` runs once it is written.
 */
export function writeProblem(
  res: ServerResponse,
  body: Problem,
  headers: OutgoingHttpHeaders = {},
  done?: () => void,
): void {
  const text = JSON.stringify(body);
  res.writeHead(body.status, {
    'content-type': 'application/problem+json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text, done);
}
