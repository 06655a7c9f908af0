import { stripeConfigFromEnv, type StripeConfig } from '../stripe/config.js';

/**
 * The stages' settings, resolved once by `run` and `daemon`: Stripe from the environment, the
 * due days as the CLI resolved them (INVOICE_DUE_DAYS, else the config file).
 */
export function stageSettingsFromEnv(env: NodeJS.ProcessEnv, dueDays: number | undefined): { stripe: StripeConfig; dueDays?: number } {
  return dueDays === undefined ? { stripe: stripeConfigFromEnv(env) } : { stripe: stripeConfigFromEnv(env), dueDays };
}
