import { BillingError } from '../domain/errors.js';
import { stripeConfigFromEnv, type StripeConfig } from '../stripe/config.js';

/** The stages' settings that come from the environment, resolved once by `run` and `daemon`. */
export function stageSettingsFromEnv(env: NodeJS.ProcessEnv): { stripe: StripeConfig; dueDays?: number } {
  const raw = env.INVOICE_DUE_DAYS;
  if (raw === undefined || raw.trim() === '') return { stripe: stripeConfigFromEnv(env) };
  if (!/^\d+$/.test(raw.trim())) throw new BillingError('usage', `INVOICE_DUE_DAYS "${raw}" must be a whole number of days`);
  return { stripe: stripeConfigFromEnv(env), dueDays: Number(raw.trim()) };
}
