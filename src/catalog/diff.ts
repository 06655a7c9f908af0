import type { Feature, PlanFeature, PlanVersion, Pricing } from '../domain/catalog.js';
import { dec, decStr } from '../domain/decimal.js';
import type { PlanSpec } from './validate.js';

/** Human-readable differences between two catalog entries ("price: 29.00 → 35.00"). */

const show = (v: unknown): string => (v === null || v === undefined ? 'null' : typeof v === 'string' ? v : JSON.stringify(v));

function sameDecimal(a: string | null, b: string | null): boolean {
  if (a === null || b === null) return a === b;
  return dec(a).eq(dec(b));
}

/** Pricing with every decimal canonical, so "0.050" and "0.05" compare equal. */
function canonicalPricing(p: Pricing | null): string {
  if (p === null) return 'null';
  const c = (v: string | null | undefined) => (v === null || v === undefined ? null : decStr(dec(v)));
  const base = { model: p.model, minimum: c(p.minimum), maximum: c(p.maximum) };
  switch (p.model) {
    case 'per_unit':
      return JSON.stringify({ ...base, unitPrice: c(p.unitPrice) });
    case 'package':
      return JSON.stringify({ ...base, size: c(p.size), packagePrice: c(p.packagePrice) });
    case 'percentage':
      return JSON.stringify({ ...base, rate: c(p.rate), fee: c(p.fixedFeePerEvent), freeEvents: p.freeEvents ?? null, freeAmount: c(p.freeAmount), min: c(p.perEventMin), max: c(p.perEventMax) });
    case 'graduated_percentage':
      return JSON.stringify({ ...base, tiers: p.tiers.map((t) => [c(t.upTo), c(t.rate), c(t.flatPrice)]) });
    default:
      return JSON.stringify({ ...base, tiers: p.tiers.map((t) => [c(t.upTo), c(t.unitPrice), c(t.flatPrice)]) });
  }
}

export function diffFeature(before: Feature, after: Feature): string[] {
  const out: string[] = [];
  for (const k of ['name', 'unit', 'type', 'aggregation', 'uniqueBy', 'stripeMeter'] as const) {
    if (before[k] !== after[k]) out.push(`${k}: ${show(before[k])} → ${show(after[k])}`);
  }
  return out;
}

function diffPlanFeature(key: string, a: PlanFeature, b: PlanFeature): string[] {
  const out: string[] = [];
  const at = `features.${key}`;
  if (a.enabled !== b.enabled) out.push(`${at}.enabled: ${a.enabled} → ${b.enabled}`);
  if (!sameDecimal(a.included, b.included)) out.push(`${at}.included: ${show(a.included)} → ${show(b.included)}`);
  if (a.hardStop !== b.hardStop) out.push(`${at}.hardStop: ${a.hardStop} → ${b.hardStop}`);
  if (!sameDecimal(a.limit, b.limit)) out.push(`${at}.limit: ${show(a.limit)} → ${show(b.limit)}`);
  if (canonicalPricing(a.overage) !== canonicalPricing(b.overage)) out.push(`${at}.overage: ${show(a.overage)} → ${show(b.overage)}`);
  if (!sameDecimal(a.rollover?.max ?? null, b.rollover?.max ?? null)) out.push(`${at}.rollover.max: ${show(a.rollover?.max ?? null)} → ${show(b.rollover?.max ?? null)}`);
  if ((a.dimension ?? null) !== (b.dimension ?? null)) out.push(`${at}.dimension: ${show(a.dimension ?? null)} → ${show(b.dimension ?? null)}`);
  if (JSON.stringify(a.prices ?? null) !== JSON.stringify(b.prices ?? null)) out.push(`${at}.prices changed`);
  if ((a.resetEvery ?? null) !== (b.resetEvery ?? null)) out.push(`${at}.resetEvery: ${show(a.resetEvery ?? null)} → ${show(b.resetEvery ?? null)}`);
  return out;
}

/**
 * Differences in a plan's terms (everything that prices or entitles: currency, price,
 * interval, trial, feature terms). A non-empty result means a new plan version.
 */
export function diffPlanTerms(before: PlanVersion, after: PlanSpec): string[] {
  const out: string[] = [];
  if (before.currency !== after.currency) out.push(`currency: ${before.currency} → ${after.currency}`);
  if (!sameDecimal(before.price, after.price)) out.push(`price: ${before.price} → ${after.price}`);
  if (before.interval !== after.interval) out.push(`interval: ${before.interval} → ${after.interval}`);
  if (before.trialDays !== after.trialDays) out.push(`trialDays: ${before.trialDays} → ${after.trialDays}`);
  if (!sameDecimal(before.minimumCommitment ?? null, after.minimumCommitment ?? null)) {
    out.push(`minimumCommitment: ${show(before.minimumCommitment ?? null)} → ${show(after.minimumCommitment ?? null)}`);
  }
  if (!sameDecimal(before.spendThreshold ?? null, after.spendThreshold ?? null)) {
    out.push(`spendThreshold: ${show(before.spendThreshold ?? null)} → ${show(after.spendThreshold ?? null)}`);
  }
  const keys = [...new Set([...Object.keys(before.features), ...Object.keys(after.features)])].sort();
  for (const k of keys) {
    const a = before.features[k];
    const b = after.features[k];
    if (!a) out.push(`features.${k}: added`);
    else if (!b) out.push(`features.${k}: removed`);
    else out.push(...diffPlanFeature(k, a, b));
  }
  return out;
}
