import { BillingError } from '../domain/errors.js';
import type { AuthConfig } from './auth.js';
import { validateJwtKeys, type JwtKeys } from './jwt.js';
import type { RateLimitConfig } from './rate-limit.js';

export interface ServeConfig {
  auth: AuthConfig;
  /** The billing clock ("now") for each request; the CLI passes Date.now or a fixed --now. */
  clock: () => number;
  bodyLimitBytes?: number;
  maxBatch?: number;
  /** Requests handled at once; the rest wait in FIFO order. Default per dialect. */
  maxConcurrent?: number;
  /** null: no rate limit. */
  rateLimit?: RateLimitConfig | null;
  /** Whole-request deadline (receiving the body and handling it). */
  requestTimeoutMs?: number;
  /** Signing secret (whsec_…) for POST /v1/billing/webhooks/stripe; null/absent: route off. */
  stripeWebhookSecret?: string | null;
  /** Days an event may lie before its tenant's creation (default DEFAULT_BACKFILL_DAYS). */
  backfillDays?: number;
  /** One structured access-log entry per request; null: no log. Never receives credentials. */
  log?: ((entry: Record<string, unknown>) => void) | null;
}

export const SERVE_DEFAULTS = {
  bodyLimitBytes: 1024 * 1024,
  maxBatch: 1000,
  // SQLite has one connection; PostgreSQL's pool holds 10 (src/storage/db.ts).
  maxConcurrent: { sqlite: 4, pg: 10 },
  rateLimit: { perSecond: 500, burst: 1000 } as RateLimitConfig,
  requestTimeoutMs: 30_000,
};

/**
 * Credentials from the environment the CLI hands in: BILLING_SERVICE_SECRETS (comma-separated,
 * several during a rotation), BILLING_JWT_SECRET (HS256), BILLING_JWT_PUBLIC_KEY (PEM, RS256
 * or ES256), optional BILLING_JWT_ISSUER / BILLING_JWT_AUDIENCE.
 */
export function authConfigFromEnv(env: Record<string, string | undefined>): AuthConfig {
  const serviceSecrets = (env.BILLING_SERVICE_SECRETS ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  let jwt: JwtKeys | undefined;
  if (env.BILLING_JWT_SECRET || env.BILLING_JWT_PUBLIC_KEY) {
    jwt = {
      hmacSecret: env.BILLING_JWT_SECRET || undefined,
      // PEM in an env var often arrives with literal "\n".
      publicKeyPem: env.BILLING_JWT_PUBLIC_KEY ? env.BILLING_JWT_PUBLIC_KEY.replace(/\\n/g, '\n') : undefined,
      issuer: env.BILLING_JWT_ISSUER || undefined,
      audience: env.BILLING_JWT_AUDIENCE || undefined,
      clockToleranceSec: 30,
    };
    try {
      validateJwtKeys(jwt);
    } catch (e) {
      throw new BillingError('usage', `BILLING_JWT_PUBLIC_KEY is not usable: ${(e as Error).message}`);
    }
  }
  if (serviceSecrets.length === 0 && !jwt) {
    throw new BillingError(
      'usage',
      'no credentials configured: set BILLING_SERVICE_SECRETS (comma-separated) and/or BILLING_JWT_SECRET or BILLING_JWT_PUBLIC_KEY',
    );
  }
  return { serviceSecrets, jwt };
}
