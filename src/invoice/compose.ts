import type { Knex } from 'knex';
import type { Feature, PlanFeature, PlanVersion, ResetEvery } from '../domain/catalog.js';
import { resetWindowsUsage, type ResetWindowsRequest } from '../aggregate/usage.js';
import { resetWindows } from '../rate/reset.js';
import type { Db } from '../storage/db.js';
import { featureTerms, type PeriodTerms } from '../rate/charge.js';
import { carriedUnits, rolloverSource } from '../rate/rollover.js';
import { CatalogCache, loadTenantTerms, termsForPeriod, type PlanLookup, type TenantTerms } from '../rate/tenant-terms.js';
import { dec } from '../domain/decimal.js';
import type { Period } from '../domain/period.js';
import { microToString } from '../domain/quantity.js';
import { applyOverride } from '../catalog/repository.js';
import { dimensionUsage, eventAmounts } from '../aggregate/usage.js';
import { byDimension } from '../rate/dimension.js';
import type { Subscription } from '../subscriptions/repository.js';
import { billingPeriodOf, usageValue } from '../aggregate/value.js';
import { loadDiscounts } from '../subscriptions/discounts.js';
import { availableCredits } from '../subscriptions/credits.js';
import { loadTenantTaxes } from '../subscriptions/taxes.js';
import { versionKey } from '../rate/base-fee.js';
import { billedKey, periodsWithLateUsage, ratePeriod, type FeatureTerms, type InvoicedPeriod, type PeriodUsage, type RatedPeriod } from '../rate/period.js';
import type { Billed } from '../rate/usage-lines.js';
import { invoiceTotals, type InvoiceTotals } from '../rate/totals.js';
import type { InvoiceLine, UsageDetails } from './types.js';
import { USAGE_KINDS } from './types.js';
import type { RatedLine } from '../rate/lines.js';
import { lineFromRow } from './repository.js';

type Q = Knex | Knex.Transaction;

/** A plan version a subscription references: its absence is corrupt data, loudly. */
async function planOf(q: Q, cache: CatalogCache, planKey: string, version: number): Promise<PlanVersion> {
  const pv = await cache.plan(q, planKey, version);
  if (!pv) throw new Error(`plan ${planKey} v${version} referenced by a subscription does not exist`);
  return pv;
}

/** The plan a period's usage is priced on (in force at its end), null without a segment. */
async function planAtEnd(q: Q, cache: CatalogCache, t: TenantTerms, sub: Subscription | null, period: Period): Promise<PlanVersion | null> {
  const pt: PeriodTerms = await termsForPeriod(t, sub, period, cache.lookup(q));
  if (pt.ok) return pt.plan;
  if (pt.reason === 'plan_version_missing') await planOf(q, cache, pt.segment!.planKey, pt.segment!.planVersion);
  return null;
}

export type { FeatureTerms } from '../rate/period.js';

/** What loadTenantState reads; the plans of invoiced periods are resolved afterwards. */
type TenantState = PeriodUsage;

async function loadTenantState(
  q: Q,
  tenantId: string,
  upTo: number,
  current: { subscriptionId: string; periodStart: number },
  subs: Subscription[],
): Promise<TenantState> {
  const usage = new Map<number, Map<string, string>>();
  const summaries = await q('usage_summaries as s')
    .leftJoin('features as f', 'f.key', 's.feature_key')
    .select('s.feature_key', 's.period_start', 's.subscription_id', 's.event_count', 'f.aggregation', q.raw('CAST(s.quantity AS TEXT) AS quantity_text'))
    .where('s.tenant_id', tenantId)
    .andWhere('s.period_start', '<=', upTo);
  for (const s of summaries) {
    const start = Number(s.period_start);
    const m = usage.get(start) ?? new Map<string, string>();
    // avg and weighted_sum store an accumulator: their value by value.ts.
    const owner = s.subscription_id === null ? null : (subs.find((x) => x.id === s.subscription_id) ?? null);
    const value = usageValue(s.aggregation ?? 'sum', s.quantity_text, Number(s.event_count), billingPeriodOf({ start, subscription: owner }));
    m.set(s.feature_key, microToString(value));
    usage.set(start, m);
  }

  const invoiced = new Map<number, InvoicedPeriod>();
  const invoices = await q('invoices')
    .select('period_start', 'period_end', 'subscription_id', 'currency', 'feature_terms')
    .where('tenant_id', tenantId)
    .whereNot('status', 'void')
    .andWhere('billing_reason', 'period')
    .andWhere('period_start', '<', upTo);
  for (const i of invoices) {
    invoiced.set(Number(i.period_start), {
      period: { start: Number(i.period_start), end: Number(i.period_end) },
      subscriptionId: i.subscription_id,
      currency: i.currency,
      featureTerms: i.feature_terms ? (JSON.parse(i.feature_terms) as FeatureTerms) : null,
      plan: null,
    });
  }

  // Oldest first, so the last line seen per key is the latest: its snapshot and usage win.
  const billed = new Map<string, Billed>();
  const lines = await q('invoice_lines as l')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'l.tenant_id').andOn('i.id', 'l.invoice_id');
    })
    .select('l.feature_key', 'l.period_start', 'l.amount', 'l.price_snapshot', 'l.details', 'l.dimension_value')
    .where('l.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .whereIn('l.kind', USAGE_KINDS)
    .whereNotNull('l.feature_key')
    .orderByRaw('LENGTH(i.number), i.number, l.line_no');
  for (const l of lines) {
    // A feature priced by dimension is billed per value (DESIGN.md §14).
    const key = billedKey(l.feature_key, Number(l.period_start), l.dimension_value ?? undefined);
    const prev = billed.get(key);
    const details = JSON.parse(l.details) as UsageDetails;
    billed.set(key, {
      amount: prev ? dec(prev.amount).plus(l.amount).toFixed() : l.amount,
      usedTotal: details.usedTotal,
      snapshot: JSON.parse(l.price_snapshot) as PlanFeature,
      billable: details.billable,
    });
  }
  // This period's threshold invoices: the discounts, taxes and commitment of this invoice are the period's less theirs.
  const prior: RatedLine[] = (
    await q('invoice_lines as l')
      .join('invoices as i', function () {
        this.on('i.tenant_id', 'l.tenant_id').andOn('i.id', 'l.invoice_id');
      })
      .select('l.*')
      .where({ 'l.tenant_id': tenantId, 'i.subscription_id': current.subscriptionId, 'i.period_start': current.periodStart, 'i.billing_reason': 'threshold' })
      .whereNot('i.status', 'void')
      .orderByRaw('LENGTH(i.number), i.number, l.line_no')
  ).map((r: Record<string, any>) => lineFromRow(r));
  return { usage, billed, invoiced, prior };
}

/**
 * The event amounts ratePeriod prices percentage features by: the invoice's period and each
 * earlier period with late usage, for every feature some of their terms price by percentage
 * (plan at end, recorded invoice terms, billed snapshots). Read per period and feature.
 */
async function percentageEvents(q: Q, tenantId: string, state: TenantState, plan: PlanVersion | null, period: Period, currency: string, t: TenantTerms) {
  const keys = new Set<string>();
  const note = (terms: Iterable<PlanFeature | null | undefined>) => {
    for (const pf of terms) if (pf && pf.overage?.model === 'percentage') keys.add(pf.featureKey);
  };
  for (const pv of [plan, ...[...state.invoiced.values()].map((i) => i.plan)]) {
    if (pv) note(Object.values(pv.features).map((pf) => applyOverride(pf, t.overrides.get(pf.featureKey))));
  }
  for (const inv of state.invoiced.values()) note(Object.values(inv.featureTerms ?? {}));
  note([...state.billed.values()].map((b) => b.snapshot));
  const out = new Map<number, Map<string, string[]>>();
  if (keys.size === 0) return out;
  const periods = [period, ...periodsWithLateUsage(state, currency).map((i) => i.period)];
  for (const p of periods) {
    const m = new Map<string, string[]>();
    for (const key of [...keys].sort()) {
      if (p !== period && !state.usage.get(p.start)?.has(key)) continue;
      m.set(key, (await eventAmounts(q, tenantId, key, p)).map((micro) => microToString(micro)));
    }
    out.set(p.start, m);
  }
  return out;
}

/** Units each feature carries over into the period from its previous one (its summary; rate/rollover.ts). */
async function carriedInto(t: TenantTerms, sub: Subscription, period: Period, plan: PlanVersion | null, state: TenantState, plans: PlanLookup) {
  const out = new Map<string, string>();
  for (const featureKey of Object.keys(plan?.features ?? {})) {
    const pf = featureTerms(plan!, featureKey, t.overrides.get(featureKey));
    const source = await rolloverSource(t, sub, period, featureKey, pf, plans);
    if (source && pf) out.set(featureKey, carriedUnits(pf, source, state.usage.get(source.period.start)?.get(featureKey) ?? '0'));
  }
  return out;
}

/**
 * Each reset window's usage (aggregate/usage.ts), for the features with `resetEvery`: of this
 * period on its plan, and of earlier invoiced periods with late usage on the terms they were billed on.
 */
async function windowsOf(db: Db, t: TenantTerms, sub: Subscription, period: Period, plan: PlanVersion | null, state: TenantState, features: Map<string, Feature>) {
  const wanted: Array<{ key: string; request: ResetWindowsRequest }> = [];
  const want = (featureKey: string, p: Period, every: ResetEvery | undefined, subscriptionId: string | null) => {
    const feature = features.get(featureKey);
    if (every && feature) wanted.push({ key: `${featureKey}|${p.start}`, request: { tenantId: sub.tenantId, feature, windows: resetWindows(p, every), subscriptionId } });
  };
  for (const [featureKey, pf] of Object.entries(plan?.features ?? {})) want(featureKey, period, pf.resetEvery, sub.id);
  for (const inv of periodsWithLateUsage(state, sub.currency)) {
    for (const featureKey of state.usage.get(inv.period.start)!.keys()) {
      const billed = state.billed.get(`${featureKey}|${inv.period.start}`);
      const ft = billed?.snapshot ?? inv.featureTerms?.[featureKey] ?? (inv.plan ? featureTerms(inv.plan, featureKey, t.overrides.get(featureKey)) : null);
      want(featureKey, inv.period, ft?.resetEvery, inv.subscriptionId);
    }
  }
  if (wanted.length === 0) return undefined;
  const used = await resetWindowsUsage(db, wanted.map((w) => w.request));
  return new Map(wanted.map((w, i) => [w.key, used[i].map(microToString)]));
}

/**
 * Usage per value (aggregate/usage.ts `dimensionUsage`) of the features priced by dimension:
 * of this period on its plan, and of earlier invoiced periods with late usage on the terms
 * their invoices recorded.
 */
async function valuesOf(q: Q, db: Db, t: TenantTerms, sub: Subscription, period: Period, plan: PlanVersion | null, state: TenantState, features: Map<string, Feature>) {
  const out = new Map<string, Map<string, string>>();
  const want = async (featureKey: string, p: Period, pf: PlanFeature | null | undefined) => {
    const feature = features.get(featureKey);
    if (!feature || !byDimension(pf)) return;
    const micro = await dimensionUsage(db, sub.tenantId, feature, pf.dimension, p, q);
    out.set(`${featureKey}|${p.start}`, new Map([...micro].map(([v, m]) => [v, microToString(m)])));
  };
  for (const featureKey of Object.keys(plan?.features ?? {}).sort()) await want(featureKey, period, featureTerms(plan!, featureKey, t.overrides.get(featureKey)));
  for (const inv of periodsWithLateUsage(state, sub.currency)) {
    for (const featureKey of state.usage.get(inv.period.start)!.keys()) {
      await want(featureKey, inv.period, inv.featureTerms ? inv.featureTerms[featureKey] : inv.plan ? featureTerms(inv.plan, featureKey, t.overrides.get(featureKey)) : null);
    }
  }
  return out;
}

export interface ComposeInput {
  sub: Subscription;
  period: Period;
  nominal: Period;
  /** When the invoice is issued: which prepaid credit it may use. */
  issuedAt: number;
  /** The handle `q` belongs to: reset windows read usage through aggregate/usage.ts. */
  db: Db;
  /** `threshold`: an invoice before the period ends, of its usage so far (DESIGN.md §15). */
  reason?: 'period' | 'threshold';
}

export interface Composed {
  lines: InvoiceLine[];
  totals: InvoiceTotals;
  /** Stored on the invoice: what its period's late usage is priced on. */
  featureTerms: FeatureTerms;
  /** Recorded with the invoice: the once / repeating discounts it used. */
  discountsUsed: string[];
  /** Recorded with the invoice: what it took from each prepaid credit grant. */
  creditsUsed: Array<{ grantId: string; instance: number; amount: string }>;
  /** Recorded with the invoice: what its period drew from each grant of units. */
  grantsUsed: RatedPeriod['grantsUsed'];
  /** The plan the period is priced on (in force at its end); null without one. */
  plan: PlanVersion | null;
}

/**
 * All lines of a subscription period's invoice, priced by `ratePeriod` (rate/period.ts); this
 * only gathers what it is priced on, then numbers the lines and sums them.
 */
export async function composeInvoice(q: Q, cache: CatalogCache, input: ComposeInput): Promise<Composed> {
  const { sub, period, nominal } = input;
  const t = (await loadTenantTerms(q, [sub.tenantId])).get(sub.tenantId)!;
  const segments = t.segments.get(sub.id) ?? [];
  const versions = new Map<string, PlanVersion>();
  for (const s of segments) {
    if (s.startsAt < period.end && (s.endsAt === null || s.endsAt > period.start)) {
      versions.set(versionKey(s.planKey, s.planVersion), await planOf(q, cache, s.planKey, s.planVersion));
    }
  }
  const state = await loadTenantState(q, sub.tenantId, period.start, { subscriptionId: sub.id, periodStart: period.start }, t.subscriptions);
  const plan = await planAtEnd(q, cache, t, sub, period);
  for (const inv of periodsWithLateUsage(state, sub.currency)) {
    const invSub = t.subscriptions.find((x) => x.id === inv.subscriptionId) ?? null;
    inv.plan = await planAtEnd(q, cache, t, invSub, inv.period);
  }
  const features = await cache.allFeatures(q);
  state.windows = await windowsOf(input.db, t, sub, period, plan, state, features);
  state.values = await valuesOf(q, input.db, t, sub, period, plan, state, features);
  state.events = await percentageEvents(q, sub.tenantId, state, plan, period, sub.currency, t);

  const discounts = await loadDiscounts(q, sub.tenantId, { exceptPeriod: period.start });
  const taxes = (await loadTenantTaxes(q, sub.tenantId)).rates;
  const credits = await availableCredits(q, sub.tenantId, sub.currency, input.issuedAt);
  const reason = input.reason ?? 'period';
  const carried = await carriedInto(t, sub, period, plan, state, cache.lookup(q));
  const rated = ratePeriod({ sub, segments, versions, period, nominal, plan, features, overrides: t.overrides, grants: t.grants, carried, discounts, taxes, credits, reason }, state);
  const lines = rated.lines.map((d, i) => ({ lineNo: i + 1, ...d }));
  return {
    lines,
    totals: invoiceTotals(lines, sub.currency),
    featureTerms: rated.featureTerms,
    discountsUsed: rated.discountsUsed,
    creditsUsed: rated.creditsUsed,
    // A threshold invoice draws nothing for good: the period's final invoice records the draws.
    grantsUsed: reason === 'threshold' ? [] : rated.grantsUsed,
    plan,
  };
}
