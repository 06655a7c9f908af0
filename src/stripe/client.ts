import type Stripe from 'stripe';
import { BillingError } from '../domain/errors.js';
import type { StripeConfig } from './config.js';

export type StripeClient = Stripe;

/**
 * The official SDK at its pinned API version. It never retries by itself: failed calls go
 * back to the outbox, which retries with the same idempotency key and a recorded backoff.
 * The SDK's retries are not equivalent: they skip 429 without stripe-should-retry, bypass
 * our rate pacing, and sleep on real timers the tests cannot drive.
 * Loaded lazily so commands that never talk to Stripe do not pay for the SDK.
 */
export async function createStripeClient(config: StripeConfig): Promise<Stripe> {
  if (!config.secretKey) {
    throw new BillingError('usage', 'STRIPE_SECRET_KEY is not set: export a Stripe secret key (sk_test_… for a test account)');
  }
  const { default: StripeSdk } = await import('stripe');
  const options: Stripe.StripeConfig = { maxNetworkRetries: 0, timeout: config.timeoutMs, telemetry: false };
  if (config.apiBase) {
    let u: URL;
    try {
      u = new URL(config.apiBase);
    } catch {
      throw new BillingError('usage', `STRIPE_API_BASE "${config.apiBase}" is not a URL (e.g. http://127.0.0.1:12111)`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') {
      throw new BillingError('usage', `STRIPE_API_BASE "${config.apiBase}" must start with http:// or https://`);
    }
    options.host = u.hostname;
    options.protocol = u.protocol === 'http:' ? 'http' : 'https';
    options.port = u.port || (u.protocol === 'http:' ? 80 : 443);
  }
  return new StripeSdk(config.secretKey, options);
}

/** What a failed call means for the outbox row that made it. */
export interface CallFailure {
  /** retry: network, 409, 429, 5xx (unless Stripe says not to); card_declined: a payment failure; rejected: other 4xx. */
  kind: 'retry' | 'card_declined' | 'rejected';
  status: number | null;
  code: string | null;
  /** One line for last_error and reports (Stripe's message; never the key). */
  message: string;
  /** Stripe may have executed the call: no answer at all, a 409 (the key's first request still running) or a 5xx. */
  outcomeUnknown: boolean;
}

interface StripeLikeError {
  type?: string;
  statusCode?: number;
  code?: string;
  message?: string;
  headers?: Record<string, string>;
  rawType?: string;
}

export function isStripeError(e: unknown): boolean {
  return typeof (e as StripeLikeError | null)?.type === 'string' && /^Stripe/.test((e as StripeLikeError).type!);
}

export function classifyStripeError(e: unknown): CallFailure {
  if (!isStripeError(e)) throw e;
  const err = e as StripeLikeError;
  const status = typeof err.statusCode === 'number' ? err.statusCode : null;
  const code = err.code ?? null;
  const firstLine = (err.message ?? 'unknown Stripe error').split('\n')[0];
  const message = status === null ? `network: ${firstLine}` : `${status}${code ? ` ${code}` : ''}: ${firstLine}`;
  const outcomeUnknown = status === null || status === 409 || status >= 500;
  const failure = (kind: CallFailure['kind']): CallFailure => ({ kind, status, code, message, outcomeUnknown });
  if (err.type === 'StripeCardError') return failure('card_declined');
  if (status === null) return failure('retry');
  const should = err.headers?.['stripe-should-retry'];
  if (should === 'true') return failure('retry');
  if (should === 'false') return failure('rejected');
  if (status === 409 || status === 429 || status >= 500) return failure('retry');
  return failure('rejected');
}
