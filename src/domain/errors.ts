/** Exit codes of the CLI contract (DESIGN.md §4, §6). */
export const ExitCode = {
  Ok: 0,
  Failure: 1,
  Usage: 2,
  /** Some rows rejected (ingest), request denied (check), items needing attention (run, stripe, status --strict). */
  Partial: 3,
  /** Stopped by SIGINT / SIGTERM: 128 + the signal number, as shells report it. */
  Interrupted: 130,
  Terminated: 143,
} as const;

/** The same codes under their library-API names (exported from the package). */
export const EXIT = {
  ok: ExitCode.Ok,
  failure: ExitCode.Failure,
  usage: ExitCode.Usage,
  partial: ExitCode.Partial,
} as const;

export type ErrorCode =
  | 'usage'
  | 'invalid_input'
  | 'not_found'
  | 'conflict'
  | 'catalog_invalid'
  | 'db_unreachable'
  | 'db_not_migrated'
  | 'db_error'
  | 'locked'
  | 'stripe_error'
  | 'signature_invalid'
  | 'internal';

const EXIT_BY_CODE: Record<ErrorCode, number> = {
  usage: EXIT.usage,
  invalid_input: EXIT.usage,
  not_found: EXIT.usage,
  conflict: EXIT.failure,
  catalog_invalid: EXIT.usage,
  db_unreachable: EXIT.failure,
  db_not_migrated: EXIT.failure,
  db_error: EXIT.failure,
  locked: EXIT.failure,
  stripe_error: EXIT.failure,
  signature_invalid: EXIT.usage,
  internal: EXIT.failure,
};

/**
 * An expected failure with a stable code. `message` says what went wrong in words any caller
 * reads (CLI, library, HTTP API); `hint` is the next command to type, for the CLI only: the
 * CLI prints `message (hint)` as one line, the HTTP API never shows it.
 */
export class BillingError extends Error {
  readonly code: ErrorCode;
  readonly details?: unknown;
  readonly hint?: string;
  constructor(code: ErrorCode, message: string, details?: unknown, options: { hint?: string } = {}) {
    super(message);
    this.name = 'BillingError';
    this.code = code;
    this.details = details;
    this.hint = options.hint;
  }
  get exitCode(): number {
    return EXIT_BY_CODE[this.code];
  }
}

export function isBillingError(e: unknown): e is BillingError {
  return e instanceof BillingError;
}
