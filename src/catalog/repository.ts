import type { Knex } from 'knex';
import type { DimensionPrice, Feature, PlanFeature, ResetEvery, PlanVersion, Pricing, QuotaOverride } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { bool } from '../storage/sql.js';
import type { CouponSpec, TaxRateSpec } from './validate.js';

type Q = Knex | Knex.Transaction;

export function featureFromRow(r: Record<string, any>): Feature {
  return {
    key: r.key,
    name: r.name,
    unit: r.unit ?? null,
    type: r.type,
    aggregation: r.aggregation,
    uniqueBy: r.unique_by ?? null,
    stripeMeter: r.stripe_meter ?? null,
  };
}

export async function loadFeatures(q: Q): Promise<Map<string, Feature>> {
  const rows = await q('features').select('*').orderBy('key');
  return new Map(rows.map((r) => [r.key, featureFromRow(r)]));
}

export async function loadFeature(q: Q, key: string): Promise<Feature | null> {
  const r = await q('features').where({ key }).first();
  return r ? featureFromRow(r) : null;
}

function planFeatureFromRow(r: Record<string, any>): PlanFeature {
  return {
    featureKey: r.feature_key,
    enabled: bool(r.enabled),
    included: r.included ?? null,
    hardStop: bool(r.hard_stop),
    limit: r.limit ?? null,
    overage: r.overage ? (JSON.parse(r.overage) as Pricing) : null,
    ...(r.rollover_max !== null && r.rollover_max !== undefined ? { rollover: { max: String(r.rollover_max) } } : {}),
    ...(r.reset_every ? { resetEvery: r.reset_every as ResetEvery } : {}),
    ...(r.dimension ? { dimension: String(r.dimension), prices: JSON.parse(r.prices) as DimensionPrice[] } : {}),
  };
}

export async function loadPlanVersion(q: Q, planKey: string, version: number): Promise<PlanVersion | null> {
  const v = await q('plan_versions').where({ plan_key: planKey, version }).first();
  if (!v) return null;
  const fs = await q('plan_features').where({ plan_key: planKey, version }).orderBy('feature_key');
  return {
    planKey,
    version,
    name: v.name,
    currency: v.currency,
    price: v.price,
    interval: v.interval,
    trialDays: Number(v.trial_days),
    ...(v.minimum_commitment ? { minimumCommitment: v.minimum_commitment as string } : {}),
    ...(v.spend_threshold ? { spendThreshold: v.spend_threshold as string } : {}),
    features: Object.fromEntries(fs.map((r) => [r.feature_key, planFeatureFromRow(r)])),
  };
}

export async function loadCurrentPlanVersion(q: Q, planKey: string): Promise<PlanVersion | null> {
  const p = await q('plans').where({ key: planKey }).first();
  return p ? loadPlanVersion(q, planKey, Number(p.current_version)) : null;
}

export async function listPlanKeys(q: Q): Promise<string[]> {
  return (await q('plans').select('key').orderBy('key')).map((r) => r.key);
}

export async function loadQuotaOverride(q: Q, tenantId: string, featureKey: string): Promise<QuotaOverride | null> {
  const r = await q('quota_overrides').where({ tenant_id: tenantId, feature_key: featureKey }).first();
  return r ? quotaFromRow(r) : null;
}

export async function loadQuotaOverrides(q: Q, tenantId: string): Promise<Map<string, QuotaOverride>> {
  const rows = await q('quota_overrides').where({ tenant_id: tenantId });
  return new Map(rows.map((r) => [r.feature_key, quotaFromRow(r)]));
}

function quotaFromRow(r: Record<string, any>): QuotaOverride {
  const o: QuotaOverride = { tenantId: r.tenant_id, featureKey: r.feature_key };
  if (bool(r.included_set)) o.included = r.included ?? null;
  if (r.unit_price !== null && r.unit_price !== undefined) o.unitPrice = r.unit_price;
  if (r.hard_stop !== null && r.hard_stop !== undefined) o.hardStop = bool(r.hard_stop);
  if (r.limit !== null && r.limit !== undefined) o.limit = r.limit;
  return o;
}

/** Whether a plan feature's limit is its included amount (given so, or defaulted to it). */
export function limitFollowsIncluded(pf: PlanFeature): boolean {
  return pf.limit === null || (pf.included !== null && dec(pf.limit).eq(dec(pf.included)));
}

/**
 * The limit in force after an override: the override's own limit; else the plan's limit, where
 * a plan limit equal to (or defaulted to) included follows the overridden included. Never
 * below included: a tenant is not cut off short of what it pays for.
 */
export function effectiveLimit(pf: PlanFeature, o: QuotaOverride | null | undefined): string | null {
  const included = o?.included !== undefined ? o.included : pf.included;
  let limit: string | null;
  if (o?.limit !== undefined && o.limit !== null) limit = o.limit;
  else if (limitFollowsIncluded(pf)) limit = pf.limit === null ? null : included;
  else limit = pf.limit;
  return limit !== null && included !== null && dec(limit).lt(dec(included)) ? included : limit;
}

/** A plan feature's terms after a tenant's override (included, price, hard stop, limit). */
export function applyOverride(pf: PlanFeature, o: QuotaOverride | null | undefined): PlanFeature {
  if (!o) return pf;
  const out: PlanFeature = { ...pf };
  if (o.included !== undefined) out.included = o.included;
  if (o.hardStop !== undefined && o.hardStop !== null) out.hardStop = o.hardStop;
  out.limit = effectiveLimit(pf, o);
  if (o.unitPrice !== undefined && o.unitPrice !== null) {
    const base = pf.overage;
    out.overage = {
      model: 'per_unit',
      unitPrice: o.unitPrice,
      minimum: base?.minimum ?? null,
      maximum: base?.maximum ?? null,
    };
  }
  return out;
}

/** The catalog's default tax rates (tenants without their own pay these), in name order. */
export async function loadDefaultTaxRates(q: Q): Promise<TaxRateSpec[]> {
  const rows = await q('default_tax_rates').select('*').orderBy('name');
  return rows.map((r) => ({ name: r.name, rate: r.rate, inclusive: bool(r.inclusive) }));
}

export async function loadCoupons(q: Q): Promise<CouponSpec[]> {
  const rows = await q('coupons').select('*').orderBy('key');
  return rows.map(couponFromRow);
}

export async function loadCoupon(q: Q, key: string): Promise<CouponSpec | null> {
  const r = await q('coupons').where({ key }).first();
  return r ? couponFromRow(r) : null;
}

function couponFromRow(r: Record<string, any>): CouponSpec {
  return {
    key: r.key,
    percent: r.percent ?? null,
    amount: r.amount ?? null,
    duration: r.duration,
    periods: r.periods === null || r.periods === undefined ? null : Number(r.periods),
    features: r.features ? (JSON.parse(r.features) as string[]) : null,
  };
}
