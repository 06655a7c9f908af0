import { Decimal as DecimalJs } from 'decimal.js';

/**
 * Exact decimal arithmetic for money and quantities. 60 significant digits is far beyond
 * any amount we handle, so the only rounding that ever happens is the explicit one per line.
 */
export const Decimal = DecimalJs.clone({
  precision: 60,
  rounding: DecimalJs.ROUND_HALF_UP, // half away from zero, as DESIGN.md §1.5 requires
  toExpNeg: -60,
  toExpPos: 60,
});
export type Decimal = InstanceType<typeof Decimal>;

export type DecimalInput = string | number | bigint | Decimal;

const DECIMAL_RE = /^[+-]?(\d+(\.\d*)?|\.\d+)$/;

/** True for a plain decimal string like "12", "-0.05", "1.", ".5" (no exponent, no spaces). */
export function isDecimalString(s: string): boolean {
  return DECIMAL_RE.test(s);
}

export function dec(x: DecimalInput): Decimal {
  if (typeof x === 'bigint') return new Decimal(x.toString());
  if (typeof x === 'number' && !Number.isInteger(x)) {
    // Only integers may come in as numbers: a fractional float is already inexact.
    throw new TypeError(`refusing to build a Decimal from a fractional number (${x}); pass a string`);
  }
  return new Decimal(x as string | number | Decimal);
}

/** Canonical string: no exponent, no trailing zeros ("1.50" -> "1.5", "-0" -> "0"). */
export function decStr(x: Decimal): string {
  const s = x.toFixed();
  return s === '-0' ? '0' : s;
}

export const ZERO = new Decimal(0);
