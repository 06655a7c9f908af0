import { ZERO, dec, type Decimal } from '../../domain/decimal.js';
import type { Tier } from '../../domain/catalog.js';

/** A tier as a half-open-below range (lower, upper]; upper null = no bound. */
export interface TierRange {
  index: number; // 1-based, for the "tier-N" ref
  lower: Decimal;
  upper: Decimal | null;
  tier: Tier;
}

/** Tiers as consecutive ranges: tier k covers (upTo_{k-1}, upTo_k], the first starts at 0. */
export function tierRanges(tiers: Tier[]): TierRange[] {
  let lower = ZERO;
  return tiers.map((tier, i) => {
    const upper = tier.upTo === null ? null : dec(tier.upTo);
    const r = { index: i + 1, lower, upper, tier };
    if (upper !== null) lower = upper;
    return r;
  });
}

export function describeRange(r: TierRange): string {
  const lo = r.lower.toFixed();
  return r.upper === null ? `above ${lo}` : `${lo} < units ≤ ${r.upper.toFixed()}`;
}
