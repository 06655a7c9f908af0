/**
 * How to reach Stripe. Built once by the CLI (or the daemon) from the environment with
 * `stripeConfigFromEnv(env)`; the core only ever receives this object.
 */
export interface StripeConfig {
  /** sk_test_… / sk_live_…; null when not configured (a dry run needs none). */
  secretKey: string | null;
  /** Another API host for tests and proxies, e.g. http://127.0.0.1:12111; null = api.stripe.com. */
  apiBase: string | null;
  /** whsec_… for verifying webhook signatures. */
  webhookSecret: string | null;
  /** Per-request timeout. */
  timeoutMs: number;
  /** Calls in flight at once. */
  concurrency: number;
  /** Ceiling on calls started per second (Stripe's test mode allows 25). */
  maxRequestsPerSecond: number;
}

const STRIPE_DEFAULTS = { timeoutMs: 30_000, concurrency: 4, maxRequestsPerSecond: 20 } as const;

/** The config from STRIPE_SECRET_KEY, STRIPE_API_BASE and STRIPE_WEBHOOK_SECRET. */
export function stripeConfigFromEnv(env: NodeJS.ProcessEnv, overrides: Partial<StripeConfig> = {}): StripeConfig {
  return {
    secretKey: env.STRIPE_SECRET_KEY || null,
    apiBase: env.STRIPE_API_BASE || null,
    webhookSecret: env.STRIPE_WEBHOOK_SECRET || null,
    ...STRIPE_DEFAULTS,
    ...overrides,
  };
}
