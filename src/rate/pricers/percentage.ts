import { Decimal, ZERO, dec, decStr } from '../../domain/decimal.js';
import type { PercentagePricing } from '../../domain/catalog.js';
import { priceLine, type PriceLine } from '../price-line.js';

/** How a window's events split under percentage pricing (shared by the pricer and invoice text). */
export interface PercentageSplit {
  free: Decimal[];
  paying: Decimal[];
}

/**
 * Free events: in time order, event i is free while i ≤ freeEvents (when set) and the running
 * amount of events 1..i ≤ freeAmount (when set); the first event failing either, and every
 * later one, pays in full (whole events: never part of one).
 */
export function splitFree(p: PercentagePricing, amounts: readonly Decimal[]): PercentageSplit {
  if (p.freeEvents === undefined && p.freeAmount === undefined) return { free: [], paying: [...amounts] };
  let running = ZERO;
  let i = 0;
  for (; i < amounts.length; i++) {
    running = running.plus(amounts[i]);
    if (p.freeEvents !== undefined && i + 1 > p.freeEvents) break;
    if (p.freeAmount !== undefined && running.gt(p.freeAmount)) break;
  }
  return { free: amounts.slice(0, i), paying: amounts.slice(i) };
}

/**
 * percentage (DESIGN.md §14): each paying event costs max(perEventMin, min(perEventMax,
 * amount × rate / 100 + fixedFeePerEvent)), exactly (rounded once with the feature's total).
 * Lines: the rate on the paying amount, the fee per paying event, then the per-event minimum's
 * top-ups and maximum's cuts summed, so every line keeps amount = quantity × unitPrice + flat.
 * `amounts`: the window's event amounts in time order (occurred_at, then ingest seq).
 */
export function pricePercentage(p: PercentagePricing, amounts: readonly Decimal[]): PriceLine[] {
  const { free, paying } = splitFree(p, amounts);
  const lines: PriceLine[] = [];
  if (free.length > 0) {
    const sum = free.reduce((s, a) => s.plus(a), ZERO);
    lines.push(priceLine('free', `${free.length} free event${free.length === 1 ? '' : 's'} (${decStr(sum)})`, new Decimal(free.length), null, null));
  }
  if (paying.length === 0) return lines;
  const rate = dec(p.rate).div(100);
  const fee = dec(p.fixedFeePerEvent ?? '0');
  const min = p.perEventMin === undefined ? null : dec(p.perEventMin);
  const max = p.perEventMax === undefined ? null : dec(p.perEventMax);
  let sum = ZERO;
  let topUp = ZERO;
  let cut = ZERO;
  let [raised, capped] = [0, 0];
  for (const a of paying) {
    sum = sum.plus(a);
    const raw = a.times(rate).plus(fee);
    const capped1 = max !== null && raw.gt(max) ? max : raw;
    const priced = min !== null && capped1.lt(min) ? min : capped1;
    if (priced.gt(raw)) [topUp, raised] = [topUp.plus(priced.minus(raw)), raised + 1];
    if (priced.lt(raw)) [cut, capped] = [cut.plus(raw.minus(priced)), capped + 1];
  }
  const n = new Decimal(paying.length);
  lines.push(priceLine('percentage', `${p.rate}% of ${decStr(sum)} (${paying.length} paying event${paying.length === 1 ? '' : 's'})`, sum, decStr(rate), null));
  if (!fee.isZero()) lines.push(priceLine('event-fee', `${decStr(fee)} per event × ${paying.length}`, n, decStr(fee), null));
  if (topUp.gt(0)) lines.push(priceLine('event-minimum', `per-event minimum ${p.perEventMin} on ${raised} event${raised === 1 ? '' : 's'}`, new Decimal(1), null, decStr(topUp)));
  if (cut.gt(0)) lines.push(priceLine('event-maximum', `per-event maximum ${p.perEventMax} on ${capped} event${capped === 1 ? '' : 's'}`, new Decimal(1), null, decStr(cut.neg())));
  return lines;
}
