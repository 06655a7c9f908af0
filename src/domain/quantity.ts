import { Decimal, dec, decStr, isDecimalString } from './decimal.js';

/**
 * Quantities are stored as integers of micro-units (1e-6) so that SQL SUM/MAX on both SQLite
 * (which has no exact decimal type) and PostgreSQL stay exact. 1e12 (the largest sane
 * quantity) * 1e6 still fits a signed 64-bit integer.
 */
export const QUANTITY_SCALE = 6;
const FACTOR = new Decimal(10).pow(QUANTITY_SCALE);
export const MAX_QUANTITY = new Decimal('1e12');

export type QuantityError = 'not_a_number' | 'negative' | 'too_large' | 'too_precise';

export type ParsedQuantity = { ok: true; micro: string; value: string } | { ok: false; error: QuantityError };

/** Parse a quantity from ingest input (string or JSON number). */
export function parseQuantity(raw: unknown): ParsedQuantity {
  let s: string;
  if (typeof raw === 'number') {
    if (!Number.isFinite(raw)) return { ok: false, error: 'not_a_number' };
    // JSON numbers: String() gives the shortest round-trip form, which is what the sender wrote.
    s = String(raw);
    if (/e/i.test(s)) {
      try {
        s = new Decimal(s).toFixed();
      } catch {
        return { ok: false, error: 'not_a_number' };
      }
    }
  } else if (typeof raw === 'string') {
    s = raw.trim();
  } else {
    return { ok: false, error: 'not_a_number' };
  }
  if (!isDecimalString(s)) return { ok: false, error: 'not_a_number' };
  const d = new Decimal(s);
  if (d.isNegative() && !d.isZero()) return { ok: false, error: 'negative' };
  if (d.gt(MAX_QUANTITY)) return { ok: false, error: 'too_large' };
  const micro = d.times(FACTOR);
  if (!micro.isInteger()) return { ok: false, error: 'too_precise' };
  return { ok: true, micro: decStr(micro), value: decStr(d.abs()) };
}

export function microToDecimal(micro: string | number | bigint): Decimal {
  return dec(micro).div(FACTOR);
}

/** Micro-units (as stored) -> canonical decimal string ("300000" -> "0.3"). */
export function microToString(micro: string | number | bigint | null | undefined): string {
  if (micro === null || micro === undefined) return '0';
  return decStr(microToDecimal(micro));
}

export function decimalToMicro(value: string | Decimal): string {
  return decStr(dec(value).times(FACTOR).toDecimalPlaces(0, Decimal.ROUND_HALF_UP));
}
