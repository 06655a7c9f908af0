import { isBillingError, type ErrorCode } from '../domain/errors.js';

/** A failure that maps straight to an HTTP status and a JSON `{ error, message }` body. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

const STATUS_BY_CODE: Partial<Record<ErrorCode, number>> = {
  usage: 400,
  invalid_input: 400,
  catalog_invalid: 400,
  signature_invalid: 400,
  not_found: 404,
  conflict: 409,
  locked: 503,
  db_unreachable: 503,
  db_not_migrated: 503,
  db_error: 503,
};

/** Expected failures keep their message; anything else becomes an opaque 500. */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (isBillingError(e)) return new HttpError(STATUS_BY_CODE[e.code] ?? 500, e.code, e.message);
  return new HttpError(500, 'internal', 'internal error');
}
