import { BillingError } from '../domain/errors.js';
import { parseInstant, type Instant } from '../domain/period.js';

/** The one place command options are parsed and checked; each failure is a usage error (exit 2). */

/** A whole number >= min (digits only: no sign, exponent or fraction). */
export function wholeNumber(raw: string, flag: string, opts: { min?: number; max?: number; unit?: string } = {}): number {
  const min = opts.min ?? 0;
  const n = /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
  if (!Number.isSafeInteger(n) || n < min || (opts.max !== undefined && n > opts.max)) {
    const kind = min >= 1 ? 'a positive whole number' : 'a whole number';
    const range = opts.max !== undefined ? ` from ${min} to ${opts.max}` : min > 1 ? ` >= ${min}` : '';
    throw new BillingError('usage', `${flag} must be ${kind}${opts.unit ? ` of ${opts.unit}` : ''}${range} (got "${raw}")`);
  }
  return n;
}

export function optionalWholeNumber(raw: string | undefined, flag: string, opts?: { min?: number; max?: number; unit?: string }): number | undefined {
  return raw === undefined ? undefined : wholeNumber(raw, flag, opts);
}

export function instant(raw: string, flag: string): Instant {
  const t = parseInstant(raw);
  if (t === null) throw new BillingError('usage', `${flag} "${raw}" is not an ISO 8601 instant`);
  return t;
}

export function optionalInstant(raw: string | undefined, flag: string): Instant | undefined {
  return raw === undefined ? undefined : instant(raw, flag);
}

export function oneOf<T extends string>(raw: string, flag: string, choices: readonly T[]): T {
  if (!(choices as readonly string[]).includes(raw)) throw new BillingError('usage', `${flag} "${raw}" is not one of ${choices.join(', ')}`);
  return raw as T;
}

/** Commander's parser for a repeatable option: each occurrence appends its value. */
export function repeatable(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
