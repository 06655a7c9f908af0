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

/**
 * A core message as an API caller should read it: without the CLI's advice. Core errors put
 * the command to type in BillingError.hint, which is never sent; this catches the messages
 * that still carry it inline ("(see `billing tenant list`)", "; list them with `billing ...`",
 * "--period"), so no API response tells a caller to run a command or pass a flag.
 */
export function apiWording(message: string): string {
  return message
    .replace(/\s*\([^()]*`[^()]*\)/g, '')
    .replace(/\s*[;:]\s[^;:]*`[^;]*$/, '')
    .replace(/(^|[\s("/])--(?=[a-z])/g, '$1')
    .replace(/`/g, '"');
}

/** Expected failures keep their code and their message in API words; anything else becomes an opaque 500. */
export function toHttpError(e: unknown): HttpError {
  if (e instanceof HttpError) return e;
  if (isBillingError(e)) return new HttpError(STATUS_BY_CODE[e.code] ?? 500, e.code, apiWording(e.message));
  return new HttpError(500, 'internal', 'internal error');
}
