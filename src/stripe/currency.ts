import { Decimal, dec, decStr } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';

/**
 * Stripe's own minor units, which differ from ISO 4217 for some currencies (ISK is 0 digits in
 * ISO but two-decimal in Stripe's API; MGA is 2 in ISO but zero-decimal in Stripe). Every
 * amount sent to or read from Stripe goes through this table.
 * https://docs.stripe.com/currencies#zero-decimal, #three-decimal
 */
const STRIPE_ZERO_DECIMAL = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const STRIPE_THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);

/** Digits of Stripe's integer amounts for a currency: 0, 3, or else 2 (ISK, HUF, TWD included). */
export function stripeDigits(currency: string): number {
  const code = currency.toUpperCase();
  if (STRIPE_ZERO_DECIMAL.has(code)) return 0;
  if (STRIPE_THREE_DECIMAL.has(code)) return 3;
  return 2;
}

/**
 * A major-unit amount (exact decimal string, as the invoice stores it) → Stripe's integer.
 * Refuses, never rounds, an amount Stripe's units cannot carry (e.g. 10.50 MGA).
 */
export function toStripeUnits(major: string, currency: string): number {
  const digits = stripeDigits(currency);
  const scaled = dec(major).times(new Decimal(10).pow(digits));
  if (!scaled.isInteger()) {
    throw new BillingError(
      'invalid_input',
      `${major} ${currency.toUpperCase()} cannot be sent to Stripe: Stripe counts ${currency.toUpperCase()} in units of ${decStr(new Decimal(10).pow(-digits))}`,
    );
  }
  const n = scaled.toNumber();
  if (!Number.isSafeInteger(n)) throw new BillingError('invalid_input', `${major} ${currency.toUpperCase()} is too large for Stripe`);
  return n;
}

/** Stripe's integer → major-unit decimal string with Stripe's digits (for messages). */
export function fromStripeUnits(amount: number, currency: string): string {
  const digits = stripeDigits(currency);
  return dec(amount).div(new Decimal(10).pow(digits)).toFixed(digits);
}
