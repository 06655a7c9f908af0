/** Stripe settings for the stages, resolved by the CLI from the environment (null: not configured). */
export function stripeFromEnv(env: NodeJS.ProcessEnv): unknown {
  if (!env.STRIPE_SECRET_KEY) return null;
  return { secretKey: env.STRIPE_SECRET_KEY, apiBase: env.STRIPE_API_BASE || undefined };
}
