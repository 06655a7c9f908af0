import { cashRoundingMinor, minorToMajor } from '../domain/money.js';
import type { Period } from '../domain/period.js';
import { adjustmentLine, type RatedLine } from './lines.js';

/**
 * The cash-rounding line of an invoice whose currency is collected in steps of 10 minor units
 * (BHD JOD KWD OMR TND), or null when the total is already collectible. The other lines stay exact.
 */
export function roundingLine(lines: Array<{ amountMinor: string }>, currency: string, period: Period): RatedLine | null {
  const totalMinor = lines.reduce((s, l) => s + BigInt(l.amountMinor), 0n);
  const adjust = cashRoundingMinor(totalMinor, currency);
  if (adjust === '0') return null;
  const amount = minorToMajor(adjust, currency);
  return adjustmentLine('rounding', `Rounding to a collectible amount (multiples of ${minorToMajor(10, currency)} ${currency.toUpperCase()})`, amount, adjust, period, null);
}
