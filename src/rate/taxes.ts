import { Decimal, dec } from '../domain/decimal.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import type { Period } from '../domain/period.js';
import { adjustmentLine, type RatedLine, type TaxDetails } from './lines.js';
import type { TaxRate } from '../subscriptions/taxes.js';
export type { TaxRate };


/**
 * The tax of one rate on a base, rounded once, half away from zero: exclusive base × rate / 100,
 * inclusive base − base / (1 + rate / 100).
 */
export function taxOn(base: string, t: Pick<TaxRate, 'rate' | 'inclusive'>, currency: string): string {
  const b = dec(base);
  const precise = t.inclusive ? b.minus(b.div(dec(t.rate).div(100).plus(1))) : b.times(t.rate).div(100);
  return roundMoney(precise, currency).amount;
}

/** The tax a line adds on its own invoice: the period's so far less what earlier invoices of the period added. */
export function ownTax(d: Pick<TaxDetails, 'tax' | 'billedBefore'>): Decimal {
  return dec(d.tax).minus(d.billedBefore ?? 0);
}

/** The base a line's own tax is on: the period's so far less what earlier invoices of the period were taxed on. */
export function ownTaxBase(d: Pick<TaxDetails, 'base' | 'baseBefore'>): Decimal {
  return dec(d.base).minus(d.baseBefore ?? 0);
}

/**
 * The tax lines of an invoice (DESIGN.md §13 step 3), one per rate, on the discounted amount
 * (never below zero). An exclusive tax is added to the total; an inclusive one is only shown
 * (its line amount is zero: the prices already hold it).
 */
export function taxLines(lines: RatedLine[], rates: TaxRate[], currency: string, period: Period): RatedLine[] {
  if (rates.length === 0) return [];
  const base = formatMoney(Decimal.max(lines.reduce((s, l) => s.plus(l.amount), dec(0)), 0), currency);
  return rates.map((t) => {
    const tax = taxOn(base, t, currency);
    const amount = t.inclusive ? formatMoney(0, currency) : tax;
    const details: TaxDetails = { name: t.name, rate: t.rate, inclusive: t.inclusive, base, tax };
    return adjustmentLine('tax', `${t.name} ${dec(t.rate).toFixed()}% ${t.inclusive ? 'included in' : 'on'} ${base}`, amount, roundMoney(amount, currency).minor, period, details);
  });
}
