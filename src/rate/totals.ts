import { dec } from '../domain/decimal.js';
import { formatMoney } from '../domain/money.js';
import type { DiscountDetails, RatedLine } from './lines.js';

/** One discount as the invoice shows it: the amount it took off (positive). */
export interface AppliedDiscount {
  id: string;
  description: string;
  amount: string;
}

/** DESIGN.md §13 totals of an invoice, decimal strings with the currency's digits. */
export interface InvoiceTotals {
  /** Every line but discounts (the cash-rounding line included, as it always was). */
  subtotal: string;
  discounts: AppliedDiscount[];
  /** What the discount lines took off, positive. */
  discountTotal: string;
  taxTotal: string;
  /** subtotal − discountTotal + exclusive taxes: the sum of all lines. */
  total: string;
  creditsApplied: string;
  /** total − creditsApplied. */
  amountDue: string;
}

/** The totals implied by an invoice's lines (invoice/ stores them, `billing verify` recomputes them). */
export function invoiceTotals(lines: Array<Pick<RatedLine, 'kind' | 'amount' | 'description' | 'details'>>, currency: string): InvoiceTotals {
  let subtotal = dec(0);
  let discountTotal = dec(0);
  const discounts: AppliedDiscount[] = [];
  for (const l of lines) {
    if (l.kind === 'discount') {
      discountTotal = discountTotal.minus(l.amount);
      discounts.push({ id: (l.details as DiscountDetails | null)?.discountId ?? '', description: l.description, amount: formatMoney(dec(l.amount).neg(), currency) });
    } else subtotal = subtotal.plus(l.amount);
  }
  const total = subtotal.minus(discountTotal);
  const zero = formatMoney(0, currency);
  return {
    subtotal: formatMoney(subtotal, currency),
    discounts,
    discountTotal: formatMoney(discountTotal, currency),
    taxTotal: zero,
    total: formatMoney(total, currency),
    creditsApplied: zero,
    amountDue: formatMoney(total, currency),
  };
}
