/**
 * The one place where error codes become HTTP statuses, and errors become RFC 9457
 * `application/problem+json` bodies with the stable code in a `code` member.
 */
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
  | 'UNAVAILABLE';

export const API_TITLES: Readonly<Record<ApiErrorCode, string>> = {
  BAD_REQUEST: 'bad request',
  UNAUTHORIZED: 'unauthorized',
  FORBIDDEN: 'forbidden',
  PRECONDITION_FAILED: 'precondition failed',
  UNSUPPORTED_MEDIA_TYPE: 'unsupported media type',
  PAYLOAD_TOO_LARGE: 'payload too large',
  INTERNAL: 'internal error',
  UNAVAILABLE: 'service unavailable',
};

export class ApiError extends Error {
  constructor(
    readonly code: ApiErrorCode,
    readonly detail: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(`${API_TITLES[code]}: ${detail}`);
  }
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  [k: string]: unknown;
}

export function problem(
  code: ErrorCode | ApiErrorCode,
  title: string,
  detail: string,
  instance?: string,
  extra: Record<string, unknown> = {},
): Problem {
  return {
    type: `https://vipdip.test/problems/${code.toLowerCase().replaceAll('_', '-')}`,
    title,
    status: STATUS[code],
    detail,
    code,
    ...(instance === undefined ? {} : { instance }),
    ...extra,
  };
}
