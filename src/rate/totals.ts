import { Decimal, dec } from '../domain/decimal.js';
import { formatMoney } from '../domain/money.js';
import type { DiscountDetails, RatedLine, TaxDetails } from './lines.js';
import { ownTax, ownTaxBase } from './taxes.js';

/** One discount as the invoice shows it: the amount it took off (positive). */
export interface AppliedDiscount {
  id: string;
  description: string;
  amount: string;
}

/** One tax rate as the invoice shows it. */
export interface AppliedTax {
  name: string;
  rate: string;
  inclusive: boolean;
  base: string;
  amount: string;
}

/** DESIGN.md §13 totals of an invoice, decimal strings with the currency's digits. */
export interface InvoiceTotals {
  /** Base fee, usage, late usage and the commitment true-up. */
  subtotal: string;
  discounts: AppliedDiscount[];
  /** What the discount lines took off, positive. */
  discountTotal: string;
  taxes: AppliedTax[];
  /** Every rate's tax, inclusive ones too. */
  taxTotal: string;
  /** subtotal − discountTotal + exclusive taxes. */
  total: string;
  /** What prepaid credit paid, positive. */
  creditsApplied: string;
  /** total − creditsApplied (+ cash rounding) − credit notes: what is collected. */
  amountDue: string;
}

/**
 * The totals implied by an invoice's lines (invoice/ stores them, `billing verify` recomputes
 * them); `creditNotes` is what credit notes took off its amount due.
 */
export function invoiceTotals(
  lines: Array<Pick<RatedLine, 'kind' | 'amount' | 'description' | 'details'>>,
  currency: string,
  creditNotes = '0',
): InvoiceTotals {
  let subtotal = dec(0);
  let discountTotal = dec(0);
  let taxTotal = dec(0);
  let exclusiveTax = dec(0);
  let credits = dec(0);
  let rounding = dec(0);
  const discounts: AppliedDiscount[] = [];
  const taxes: AppliedTax[] = [];
  for (const l of lines) {
    if (l.kind === 'discount') {
      discountTotal = discountTotal.minus(l.amount);
      discounts.push({ id: (l.details as DiscountDetails | null)?.discountId ?? '', description: l.description, amount: formatMoney(dec(l.amount).neg(), currency) });
    } else if (l.kind === 'tax') {
      const d = l.details as TaxDetails;
      // After a threshold invoice of the period, a tax line carries the period's tax so far less what those added.
      const own = ownTax(d);
      taxTotal = taxTotal.plus(own);
      exclusiveTax = exclusiveTax.plus(l.amount);
      taxes.push({ name: d.name, rate: d.rate, inclusive: d.inclusive, base: formatMoney(ownTaxBase(d), currency), amount: formatMoney(own, currency) });
    } else if (l.kind === 'prepaid_credit') credits = credits.minus(l.amount);
    else if (l.kind === 'rounding') rounding = rounding.plus(l.amount);
    else subtotal = subtotal.plus(l.amount);
  }
  const total = subtotal.minus(discountTotal).plus(exclusiveTax);
  // A credit note never takes the amount due below zero (the rest became prepaid credit); a
  // negative total (late usage credited beyond the charges) stays what it is.
  const beforeNotes = total.minus(credits).plus(rounding);
  const due = beforeNotes.minus(Decimal.min(dec(creditNotes), Decimal.max(beforeNotes, 0)));
  return {
    subtotal: formatMoney(subtotal, currency),
    discounts,
    discountTotal: formatMoney(discountTotal, currency),
    taxes,
    taxTotal: formatMoney(taxTotal, currency),
    total: formatMoney(total, currency),
    creditsApplied: formatMoney(credits, currency),
    amountDue: formatMoney(due, currency),
  };
}
