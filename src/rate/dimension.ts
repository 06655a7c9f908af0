import type { PlanFeature } from '../domain/catalog.js';
import { ZERO, dec, decStr } from '../domain/decimal.js';
import { roundMoney } from '../domain/money.js';
import { rateUsage, type RatedUsage } from './rate.js';

/*
 * Prices by dimension (DESIGN.md §14): a feature whose plan terms set `dimension` and `prices`
 * is rated per value of that metadata field, each value on its own entry's included and
 * overage; the feature's charge is the sum of its values' rounded amounts.
 */

/** The value events without the field count under, and the entry that prices unmatched values. */
export const ANY_VALUE = '*';

export function byDimension(pf: PlanFeature | null | undefined): pf is PlanFeature & { dimension: string; prices: NonNullable<PlanFeature['prices']> } {
  return !!pf?.dimension && !!pf.prices && pf.prices.length > 0;
}

/** A value's terms: the first entry matching it, else the `*` entry, as a feature's own terms. */
export function valueTerms(pf: PlanFeature, value: string): PlanFeature {
  const e = pf.prices!.find((p) => p.match === value) ?? pf.prices!.find((p) => p.match === ANY_VALUE)!;
  return { featureKey: pf.featureKey, enabled: pf.enabled, included: e.included, hardStop: e.hardStop, limit: e.limit, overage: e.overage };
}

/** Values in a stable order (by name), so lines and reports list them alike. */
export function sortedValues(values: Iterable<string>): string[] {
  return [...values].sort((a, b) => (a === b ? 0 : a < b ? -1 : 1));
}

/** One value's rating. */
export interface RatedValue {
  value: string;
  rated: RatedUsage;
}

/**
 * Rate each value (decimal usage) on its own terms; the feature's totals are their sums (the
 * amount of rounded amounts; included null when any value is unlimited; exceeded / hard stop
 * when any value is).
 */
export function rateByValue(pf: PlanFeature, values: ReadonlyMap<string, string>, currency: string): { total: RatedUsage; values: RatedValue[] } {
  const rated = sortedValues(values.keys()).map((value) => ({ value, rated: rateUsage(valueTerms(pf, value), values.get(value)!, currency) }));
  const sum = (f: (r: RatedUsage) => string) => rated.reduce((s, x) => s.plus(dec(f(x.rated))), ZERO);
  const money = roundMoney(sum((r) => r.amount), currency);
  const included = rated.some((x) => x.rated.included === null) ? null : decStr(sum((r) => r.included!));
  return {
    values: rated,
    total: {
      used: decStr(sum((r) => r.used)),
      included,
      billable: decStr(sum((r) => r.billable)),
      amountPrecise: money.precise,
      amount: money.amount,
      amountMinor: money.minor,
      isExceeded: rated.some((r) => r.rated.isExceeded),
      hardStop: rated.some((r) => r.rated.hardStop),
      lines: rated.flatMap((r) => r.rated.lines.map((l) => ({ ...l, ref: `${r.value}:${l.ref}`, description: `${r.value}: ${l.description}` }))),
      priceSnapshot: pf,
    },
  };
}
