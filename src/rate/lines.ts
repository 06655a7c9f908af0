import type { PlanFeature } from '../domain/catalog.js';
import type { Instant, Period } from '../domain/period.js';

// The priced lines rate/ hands to invoice/, which numbers and persists them.

/**
 * credit: a negative correction (late usage revised down), always with a reason.
 * commitment: the true-up to a plan's minimum commitment (DESIGN.md §13).
 * discount: a tenant discount (DESIGN.md §13), negative, its id in the details.
 * tax: one tax rate on the discounted amount; an inclusive one has amount 0 (its tax is in the details).
 * prepaid_credit: what a prepaid credit grant paid of the total, negative.
 * rounding: brings the amount due of a BHD/JOD/KWD/OMR/TND invoice to a collectible multiple of 10 minor units.
 */
export type LineKind = 'base_fee' | 'overage' | 'late_usage' | 'credit' | 'minimum' | 'commitment' | 'discount' | 'tax' | 'prepaid_credit' | 'rounding';
export const LINE_KINDS: LineKind[] = ['base_fee', 'overage', 'late_usage', 'credit', 'minimum', 'commitment', 'discount', 'tax', 'prepaid_credit', 'rounding'];

/** Lines that make up the subtotal (DESIGN.md §13 step 1); the others follow from it. */
export const SUBTOTAL_KINDS: LineKind[] = ['base_fee', 'overage', 'late_usage', 'credit', 'minimum', 'commitment'];

/** Usage-derived kinds: together they are what was billed for a (tenant, feature, period). */
export const USAGE_KINDS: LineKind[] = ['overage', 'minimum', 'late_usage', 'credit'];

/** Base fee line details: the proration, enough for `billing verify` to recompute it. */
export interface BaseFeeDetails {
  from: Instant;
  to: Instant;
  billedSeconds: string;
  periodSeconds: string;
  /** The nominal (unclipped) period the plan price is for. */
  nominal: { start: Instant; end: Instant };
  trialExcluded: boolean;
}

/**
 * Usage line details. Every usage line bills (due now − billed before) for its period:
 * due = rateUsage(priceSnapshot, usedTotal) rounded; the line's amount is exact in minor units.
 */
export interface UsageDetails {
  usedTotal: string;
  usedBefore: string;
  included: string | null;
  billable: string;
  dueAmount: string;
  duePrecise: string;
  billedBefore: string;
  tiers: Array<{ ref: string; description: string; quantity: string; unitPrice: string | null; flatPrice: string | null; amount: string }>;
  /** Units carried over from the previous period, part of `included` (DESIGN.md §14 rollover). */
  carried?: string;
  /** Reset windows (DESIGN.md §14): each window's usage in order, and what grants covered of their billable total. */
  windows?: string[];
  granted?: string;
  reason?: string;
  /** Prices by dimension (DESIGN.md §14): the metadata field whose value (the line's dimensionValue) it bills. */
  dimension?: string;
}

/** Discount line details: which discount, on what base, so `billing verify` can recompute it. */
export interface DiscountDetails {
  discountId: string;
  percent: string | null;
  /** The fixed amount, for an amount discount. */
  fixed: string | null;
  duration: 'once' | 'repeating' | 'forever';
  /** Feature keys it is limited to; null: the whole subtotal. */
  features: string[] | null;
  /** What it applied to: the subtotal, or the named features' lines. */
  base: string;
  /** The amount left to discount before it (never taken below 0). */
  before: string;
  /**
   * On an invoice after a threshold invoice of the same period: what those took off with this
   * discount. The line is the period's discount so far (from base and before) less this.
   */
  billedBefore?: string;
}

/** Commitment true-up details: the commitment prorated (paying time over the nominal period) less the subtotal. */
export interface CommitmentDetails {
  commitment: string;
  billedSeconds: string;
  periodSeconds: string;
  /** The commitment for this period, prorated and rounded once. */
  committed: string;
  /** The lines it tops up. */
  subtotal: string;
}

/** Tax line details: the rate and what it was computed on. */
export interface TaxDetails {
  name: string;
  rate: string;
  inclusive: boolean;
  /** The discounted amount it was computed on. */
  base: string;
  /** The tax, rounded once (for an inclusive rate: the share of the base that is tax). */
  tax: string;
  /**
   * On an invoice after a threshold invoice of the same period: the tax those added at this
   * rate. base and tax are then the period's so far, and the line is tax less this.
   */
  billedBefore?: string;
  /** With billedBefore: the part of base those invoices were taxed on. */
  baseBefore?: string;
}

/** Prepaid credit line details: which grant (and recurrence instance) paid, and what it had left. */
export interface CreditDetails {
  grantId: string;
  instance: number;
  balanceBefore: string;
}

/** A priced line before invoice/ numbers it. */
export interface RatedLine {
  kind: LineKind;
  featureKey: string | null;
  description: string;
  quantity: string | null;
  unitPrice: string | null;
  amountPrecise: string;
  amount: string;
  amountMinor: string;
  period: Period;
  planKey: string | null;
  planVersion: number | null;
  priceSnapshot: PlanFeature | { price: string; interval: string } | null;
  details: BaseFeeDetails | UsageDetails | DiscountDetails | CommitmentDetails | TaxDetails | CreditDetails | null;
  /** A feature priced by dimension (DESIGN.md §14): the value this usage line bills; absent otherwise. */
  dimensionValue?: string;
}

/**
 * A line that adjusts the invoice rather than pricing usage or the plan (discount, tax,
 * prepaid credit, rounding): no feature, quantity, unit price, plan or price snapshot.
 * `amount` is already rounded to the currency; `amountMinor` is its minor units.
 */
export function adjustmentLine(
  kind: 'discount' | 'tax' | 'prepaid_credit' | 'rounding',
  description: string,
  amount: string,
  amountMinor: string,
  period: Period,
  details: RatedLine['details'],
): RatedLine {
  return { kind, featureKey: null, description, quantity: null, unitPrice: null, amountPrecise: amount, amount, amountMinor, period, planKey: null, planVersion: null, priceSnapshot: null, details };
}
