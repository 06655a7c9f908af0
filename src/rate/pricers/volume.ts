import { decStr, type Decimal } from '../../domain/decimal.js';
import type { Tier } from '../../domain/catalog.js';
import { priceLine, type PriceLine } from '../price-line.js';
import { describeRange, tierRanges } from './tiers.js';

/** volume: every billable unit at the price of the tier the total falls in, plus its flatPrice. */
export function priceVolume(p: { tiers: Tier[] }, billable: Decimal): PriceLine[] {
  if (billable.lte(0)) return [];
  const ranges = tierRanges(p.tiers);
  // Validated tiers end with upTo null, so the last range always matches.
  const r = ranges.find((t) => t.upper === null || billable.lte(t.upper)) ?? ranges[ranges.length - 1];
  const what = `tier ${r.index} (${describeRange(r)}): all ${decStr(billable)} units`;
  return [priceLine(`tier-${r.index}`, what, billable, r.tier.unitPrice, r.tier.flatPrice ?? null)];
}
