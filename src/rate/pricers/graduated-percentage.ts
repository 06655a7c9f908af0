import { Decimal, dec, decStr } from '../../domain/decimal.js';
import type { PercentTier } from '../../domain/catalog.js';
import { priceLine, type PriceLine } from '../price-line.js';
import { describeRange, tierRanges } from './tiers.js';

/**
 * graduated_percentage (DESIGN.md §14): the billable amount (e.g. payment volume) is split
 * into tiers like graduated; each tier charges its rate in percent of the amount in it, plus
 * its flatPrice once the amount reaches it.
 */
export function priceGraduatedPercentage(p: { tiers: PercentTier[] }, billable: Decimal): PriceLine[] {
  const lines: PriceLine[] = [];
  const ranges = tierRanges(p.tiers.map((t) => ({ upTo: t.upTo, unitPrice: t.rate, flatPrice: t.flatPrice })));
  for (const r of ranges) {
    if (billable.lte(r.lower)) break;
    const top = r.upper === null ? billable : Decimal.min(billable, r.upper);
    const amount = top.minus(r.lower);
    const rate = p.tiers[r.index - 1].rate;
    lines.push(
      priceLine(
        `tier-${r.index}`,
        `tier ${r.index} (${describeRange(r).replace('units', 'amount')}): ${rate}% of ${decStr(amount)}`,
        amount,
        decStr(dec(rate).div(100)),
        r.tier.flatPrice ?? null,
      ),
    );
  }
  return lines;
}
