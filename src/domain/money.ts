import { Decimal, dec, decStr, type DecimalInput } from './decimal.js';

// ISO 4217 minor-unit digits where Intl's answer differs from the standard or may be missing.
const DIGITS_OVERRIDE: Record<string, number> = {};

const digitsCache = new Map<string, number>();

/** Number of minor-unit digits of an ISO 4217 currency (USD 2, JPY 0, KWD 3). */
export function currencyDigits(currency: string): number {
  const code = currency.toUpperCase();
  const cached = digitsCache.get(code);
  if (cached !== undefined) return cached;
  if (!/^[A-Z]{3}$/.test(code)) throw new RangeError(`invalid currency code "${currency}"`);
  let digits = DIGITS_OVERRIDE[code];
  if (digits === undefined) {
    digits = new Intl.NumberFormat('en', { style: 'currency', currency: code }).resolvedOptions()
      .maximumFractionDigits as number;
  }
  digitsCache.set(code, digits);
  return digits;
}

export function isKnownCurrency(currency: string): boolean {
  const code = currency.toUpperCase();
  if (!/^[A-Z]{3}$/.test(code)) return false;
  try {
    return (Intl as unknown as { supportedValuesOf(k: string): string[] })
      .supportedValuesOf('currency')
      .includes(code);
  } catch {
    return true;
  }
}

export interface RoundedAmount {
  /** The exact decimal before rounding, major units. */
  precise: string;
  /** Rounded to the currency's minor unit, major units ("1.25"). */
  amount: string;
  /** Rounded amount as an integer count of minor units ("125"). */
  minor: string;
}

/** Round once, half away from zero, to the currency's minor unit. */
export function roundMoney(value: DecimalInput, currency: string): RoundedAmount {
  const d = dec(value);
  const digits = currencyDigits(currency);
  const rounded = d.toDecimalPlaces(digits, Decimal.ROUND_HALF_UP);
  return {
    precise: decStr(d),
    amount: rounded.toFixed(digits),
    minor: decStr(rounded.times(new Decimal(10).pow(digits))),
  };
}

/** Format a major-unit amount with exactly the currency's digits ("1.5" USD -> "1.50"). */
export function formatMoney(value: DecimalInput, currency: string): string {
  return dec(value).toFixed(currencyDigits(currency));
}

/** Minor units (integer string) -> major-unit decimal string with the currency's digits. */
export function minorToMajor(minor: DecimalInput, currency: string): string {
  const digits = currencyDigits(currency);
  return dec(minor).div(new Decimal(10).pow(digits)).toFixed(digits);
}
