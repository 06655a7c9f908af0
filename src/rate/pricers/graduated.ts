import { Decimal, decStr } from '../../domain/decimal.js';
import type { Tier } from '../../domain/catalog.js';
import { priceLine, type PriceLine } from '../price-line.js';
import { describeRange, tierRanges } from './tiers.js';

/**
 * graduated: each tier prices the billable units that fall in it, plus its flatPrice once a
 * billable unit reaches it (so tiers not reached produce no line at all).
 */
export function priceGraduated(p: { tiers: Tier[] }, billable: Decimal): PriceLine[] {
  const lines: PriceLine[] = [];
  for (const r of tierRanges(p.tiers)) {
    if (billable.lte(r.lower)) break;
    const top = r.upper === null ? billable : Decimal.min(billable, r.upper);
    const units = top.minus(r.lower);
    lines.push(
      priceLine(
        `tier-${r.index}`,
        `tier ${r.index} (${describeRange(r)}): ${decStr(units)} units`,
        units,
        r.tier.unitPrice,
        r.tier.flatPrice ?? null,
      ),
    );
  }
  return lines;
}
