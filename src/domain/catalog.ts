/** Shapes of the declarative catalog (DESIGN.md §3) as validated and as stored. */

export type Aggregation = 'sum' | 'count' | 'max' | 'min' | 'last' | 'unique' | 'avg' | 'weighted_sum';
export type FeatureType = 'metered' | 'boolean';

export interface Feature {
  key: string; // UPPER_SNAKE
  name: string;
  unit: string | null;
  type: FeatureType;
  aggregation: Aggregation; // 'sum' for boolean features (unused)
  uniqueBy: string | null;
  stripeMeter: string | null;
}

export interface Tier {
  upTo: string | null; // inclusive bound, decimal string; null = infinity (last tier)
  unitPrice: string; // decimal string, major units, up to 12 decimals
  flatPrice: string | null;
}

/** A graduated_percentage tier (DESIGN.md §14): rate is a percentage of the amount in the tier. */
export interface PercentTier {
  upTo: string | null; // inclusive bound of the summed amount; null = infinity (last tier)
  rate: string; // percentage, decimal string, 0 to 100
  flatPrice: string | null;
}

export type Pricing =
  | { model: 'per_unit'; unitPrice: string; minimum?: string | null; maximum?: string | null }
  | { model: 'package'; size: string; packagePrice: string; minimum?: string | null; maximum?: string | null }
  | { model: 'graduated'; tiers: Tier[]; minimum?: string | null; maximum?: string | null }
  | { model: 'volume'; tiers: Tier[]; minimum?: string | null; maximum?: string | null }
  | { model: 'graduated_percentage'; tiers: PercentTier[]; minimum?: string | null; maximum?: string | null }
  | PercentagePricing;

/**
 * percentage (DESIGN.md §14): each paying event of a feature that sums amounts is charged
 * max(perEventMin, min(perEventMax, amount × rate / 100 + fixedFeePerEvent)). The first events
 * in time order are free while within freeEvents and freeAmount. Optional terms are absent when
 * not given.
 */
export interface PercentagePricing {
  model: 'percentage';
  rate: string; // percentage, decimal string, 0 to 100
  fixedFeePerEvent?: string;
  freeEvents?: number;
  freeAmount?: string;
  perEventMin?: string;
  perEventMax?: string;
  minimum?: string | null;
  maximum?: string | null;
}

/** One feature's terms in one plan version. */
export interface PlanFeature {
  featureKey: string;
  enabled: boolean; // false: listed but off (boolean features, or disabled metered ones)
  included: string | null; // decimal string; null = unlimited
  hardStop: boolean;
  limit: string | null; // decimal string; defaults to included when hardStop
  overage: Pricing | null; // null: no overage allowed/charged beyond included
  /** DESIGN.md §14: unused included units carried into the next period, at most `max` (rate/rollover.ts). */
  rollover?: { max: string };
  /** DESIGN.md §14: included and limit apply per window of this length inside the period (rate/reset.ts). */
  resetEvery?: ResetEvery;
  /**
   * DESIGN.md §14 prices by dimension: the metadata field whose value picks the terms
   * (rate/dimension.ts). The feature-level included/overage/hardStop/limit are then unused.
   */
  dimension?: string;
  /** With `dimension`: one entry per value, first match wins, the last is `*` (any other value, or none). */
  prices?: DimensionPrice[];
}

/** One value's terms of a feature priced by dimension; `match` '*' prices every other value. */
export interface DimensionPrice {
  match: string;
  included: string | null;
  hardStop: boolean;
  limit: string | null;
  overage: Pricing | null;
}

export type ResetEvery = 'day' | 'week' | 'month';

export interface PlanVersion {
  planKey: string; // lower-kebab
  version: number;
  name: string;
  currency: string; // ISO 4217, upper case
  price: string; // base fee per interval, decimal string major units
  interval: 'month' | 'year';
  trialDays: number;
  /** DESIGN.md §13: a period's subtotal below this (prorated) gets a true-up line; absent: none. */
  minimumCommitment?: string;
  /** DESIGN.md §15: unbilled usage of an open period reaching this gets a threshold invoice; absent: none. */
  spendThreshold?: string;
  features: Record<string, PlanFeature>;
}

/** Per-tenant override of one feature's terms (billing quota set). */
export interface QuotaOverride {
  tenantId: string;
  featureKey: string;
  included?: string | null; // undefined = not overridden; null = unlimited
  unitPrice?: string | null; // replaces a per_unit price (or becomes per_unit pricing)
  hardStop?: boolean | null;
  limit?: string | null;
}
