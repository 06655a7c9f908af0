import { Decimal, dec } from '../domain/decimal.js';
import type { Discount } from '../domain/discount.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import type { Period } from '../domain/period.js';
import { USAGE_KINDS, adjustmentLine, type DiscountDetails, type RatedLine } from './lines.js';

/**
 * Whether a discount applies to the invoice of `period`: not removed, started before the
 * period ends, and (once / repeating) not yet used by as many non-void invoices as it may be.
 */
export function discountApplies(d: Discount, period: Period): boolean {
  if (d.removedAt !== null || d.startsAt >= period.end) return false;
  if (d.duration === 'once') return d.uses < 1;
  if (d.duration === 'repeating') return d.uses < (d.periods ?? 0);
  return true;
}

/**
 * The discount lines of an invoice (DESIGN.md §13 step 2), given its lines so far and the
 * discounts that apply to it: percentages first (of the subtotal, or of the named features'
 * lines), then fixed amounts, each in creation order, each rounded once (half away from zero),
 * none taking the running amount below 0. A discount that takes nothing off has no line (an
 * unused remainder of a `once` amount is lost: it is used all the same).
 */
export function discountLines(lines: RatedLine[], discounts: Discount[], currency: string, period: Period): RatedLine[] {
  const subtotal = lines.reduce((s, l) => s.plus(l.amount), dec(0));
  let left = Decimal.max(subtotal, 0);
  const ordered = [...discounts.filter((d) => d.percent !== null), ...discounts.filter((d) => d.percent === null)];
  const out: RatedLine[] = [];
  for (const d of ordered) {
    const base = d.features === null ? subtotal : featureBase(lines, d.features);
    const positive = Decimal.max(base, 0);
    const want =
      d.percent !== null ? dec(roundMoney(positive.times(d.percent).div(100), currency).amount) : Decimal.min(dec(roundMoney(d.amount!, currency).amount), d.features === null ? left : positive);
    const off = Decimal.min(want, left);
    const before = left;
    left = left.minus(off);
    if (off.isZero()) continue;
    const amount = formatMoney(off.neg(), currency);
    const details: DiscountDetails = {
      discountId: d.id,
      percent: d.percent,
      fixed: d.amount,
      duration: d.duration,
      features: d.features,
      base: formatMoney(base, currency),
      before: formatMoney(before, currency),
    };
    out.push(adjustmentLine('discount', describeDiscount(d, currency), amount, roundMoney(amount, currency).minor, period, details));
  }
  return out;
}

/** What a discount line takes off, recomputed from its details (for `billing verify`); positive. */
export function discountAmount(d: Pick<DiscountDetails, 'percent' | 'fixed' | 'features' | 'base' | 'before'>, currency: string): string {
  const positive = Decimal.max(dec(d.base), 0);
  const want = d.percent !== null ? dec(roundMoney(positive.times(d.percent).div(100), currency).amount) : Decimal.min(dec(roundMoney(d.fixed!, currency).amount), d.features === null ? dec(d.before) : positive);
  return formatMoney(Decimal.min(want, dec(d.before)), currency);
}

/** The named features' usage lines (this period's and late ones). */
function featureBase(lines: RatedLine[], features: string[]): Decimal {
  return lines.filter((l) => l.featureKey !== null && USAGE_KINDS.includes(l.kind) && features.includes(l.featureKey)).reduce((s, l) => s.plus(l.amount), dec(0));
}

function describeDiscount(d: Discount, currency: string): string {
  const what = d.percent !== null ? `${dec(d.percent).toFixed()}%` : `${roundMoney(d.amount!, currency).amount} ${currency.toUpperCase()}`;
  const on = d.features ? ` on ${d.features.join(', ')}` : '';
  const when = d.duration === 'repeating' ? `repeating, ${d.periods} invoices` : d.duration;
  return `Discount ${what}${on} (${when}, ${d.id})`;
}
