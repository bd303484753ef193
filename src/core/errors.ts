/**
 * The error catalog. Every failure the domain reports carries a stable code; the API maps codes to
 * HTTP statuses in one place and the CLI prints the message in one line.
 */
export const ERROR_CODES = {
  INVALID_ADDRESS: 'not a valid IPv4 address',
  INVALID_CIDR: 'not a valid CIDR block',
  INVALID_ARGUMENT: 'invalid argument',
  POOL_EXHAUSTED: 'pool exhausted',
  ADDRESS_TAKEN: 'address already bound',
  ADDRESS_OUT_OF_RANGE: 'address outside its range',
  ADDRESS_RESERVED: 'address is reserved',
  INVALID_TRANSITION: 'invalid transition',
  NOT_FOUND: 'not found',
  ALREADY_EXISTS: 'already exists',
  OVERLAP: 'address ranges overlap',
  IN_USE: 'resource in use',
  NO_HOST: 'no host available',
  CONFLICT: 'conflicting change',
  DRIVER_UNSUPPORTED: 'not supported by the data-plane driver',
  /** The store cannot be reached (a database outage): the request may succeed when tried again. */
  UNAVAILABLE: 'service unavailable',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class VipdipError extends Error {
  override readonly name = 'VipdipError';
  constructor(
    readonly code: ErrorCode,
    /** A complete sentence naming the bad value or the resource concerned. */
    readonly detail: string,
    readonly data: Readonly<Record<string, unknown>> = {},
  ) {
    super(`${ERROR_CODES[code]}: ${detail}`);
  }

  /** The short, stable title of the error's class (the problem+json `title`). */
  get title(): string {
    return ERROR_CODES[this.code];
  }
}

export function isVipdipError(e: unknown, code?: ErrorCode): e is VipdipError {
  return e instanceof VipdipError && (code === undefined || e.code === code);
}

export const fail = (code: ErrorCode, detail: string, data?: Record<string, unknown>): never => {
  throw new VipdipError(code, detail, data);
};
