import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import type { PlanFeature, Pricing } from '../domain/catalog.js';
import { roundMoney } from '../domain/money.js';
import { priceLine, sumLines, type PriceLine } from './price-line.js';
import { priceModel } from './pricers/index.js';

export type { PriceLine } from './price-line.js';

export interface PricedQuantity {
  /** Precise decimal, major units, minimum/maximum applied. Equals the sum of the lines. */
  amount: string;
  lines: PriceLine[];
}

export interface RatedUsage {
  used: string;
  included: string | null;
  billable: string;
  amountPrecise: string;
  /** Rounded once to the currency's minor unit, major units ("1.25"). */
  amount: string;
  amountMinor: string;
  isExceeded: boolean;
  hardStop: boolean;
  lines: PriceLine[];
  /** The terms rated with (after any quota override). */
  priceSnapshot: PlanFeature;
}

/**
 * Price a billable quantity (already net of the included allowance). A minimum tops the spend
 * up with a positive "minimum" line, even at zero usage; a maximum caps it with a negative
 * "maximum" line, so the lines always add up to `amount`.
 */
export function priceBillable(pricing: Pricing, billable: string, events?: readonly string[]): PricedQuantity {
  const qty = dec(billable);
  const lines = priceModel(pricing, qty.gt(0) ? qty : ZERO, events?.map((e) => dec(e)));
  let total = sumLines(lines);
  if (pricing.minimum !== null && pricing.minimum !== undefined && total.lt(pricing.minimum)) {
    const topUp = dec(pricing.minimum).minus(total);
    lines.push(priceLine('minimum', `minimum spend ${pricing.minimum}`, new Decimal(1), null, decStr(topUp)));
    total = total.plus(topUp);
  }
  if (pricing.maximum !== null && pricing.maximum !== undefined && total.gt(pricing.maximum)) {
    const cut = dec(pricing.maximum).minus(total);
    lines.push(priceLine('maximum', `maximum spend ${pricing.maximum}`, new Decimal(1), null, decStr(cut)));
    total = total.plus(cut);
  }
  return { amount: decStr(total), lines };
}

/**
 * Rate one feature's usage for a period: billable = max(0, used − included) (included null =
 * unlimited, nothing billable); priced by the terms' overage pricing, rounded once.
 * No pricing (overage null) or a disabled feature: billable is still reported, amount is 0.
 * Percentage pricing charges every event (its free allowance is its own): included is 0 and
 * `events` (the window's amounts in time order, decimal strings) are what it prices.
 */
export function rateUsage(terms: PlanFeature, used: string, currency: string, events?: readonly string[]): RatedUsage {
  const u = dec(used);
  const included = chargesEveryEvent(terms) ? ZERO : terms.included === null ? null : dec(terms.included);
  const billable = included === null ? ZERO : Decimal.max(ZERO, u.minus(included));
  const priced = terms.overage && terms.enabled ? priceBillable(terms.overage, decStr(billable), events) : { amount: '0', lines: [] };
  const money = roundMoney(priced.amount, currency);
  return {
    used: decStr(u),
    included: included === null ? null : decStr(included),
    billable: decStr(billable),
    amountPrecise: money.precise,
    amount: money.amount,
    amountMinor: money.minor,
    isExceeded: isExceeded(terms, u),
    hardStop: terms.hardStop,
    lines: priced.lines,
    priceSnapshot: terms,
  };
}

/** Percentage terms: priced per event from the window's events; no included units, no unit grants. */
export function chargesEveryEvent(terms: PlanFeature): boolean {
  return terms.overage?.model === 'percentage';
}

/**
 * Usage beyond the allowance: used > included. With unlimited included under a hard stop
 * (only a limit caps it), used > limit. Never true for unlimited without a limit.
 */
function isExceeded(terms: PlanFeature, used: Decimal): boolean {
  if (terms.included !== null) return used.gt(terms.included);
  if (terms.hardStop && terms.limit !== null) return used.gt(terms.limit);
  return false;
}
