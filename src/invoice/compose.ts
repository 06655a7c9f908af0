import type { Knex } from 'knex';
import type { PlanFeature, PlanVersion } from '../domain/catalog.js';
import type { PeriodTerms } from '../rate/charge.js';
import { CatalogCache, loadTenantTerms, termsForPeriod, type TenantTerms } from '../rate/tenant-terms.js';
import { dec } from '../domain/decimal.js';
import type { Period } from '../domain/period.js';
import { microToString } from '../domain/quantity.js';
import { applyOverride } from '../catalog/repository.js';
import { eventAmounts } from '../aggregate/usage.js';
import type { Subscription } from '../subscriptions/repository.js';
import { loadDiscounts } from '../subscriptions/discounts.js';
import { availableCredits } from '../subscriptions/credits.js';
import { loadTenantTaxes } from '../subscriptions/taxes.js';
import { versionKey } from '../rate/base-fee.js';
import { periodsWithLateUsage, ratePeriod, type FeatureTerms, type InvoicedPeriod, type PeriodUsage, type RatedPeriod } from '../rate/period.js';
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

async function loadTenantState(q: Q, tenantId: string, upTo: number, current: { subscriptionId: string; periodStart: number }): Promise<TenantState> {
  const usage = new Map<number, Map<string, string>>();
  const summaries = await q('usage_summaries')
    .select('feature_key', 'period_start', q.raw('CAST(quantity AS TEXT) AS quantity_text'))
    .where('tenant_id', tenantId)
    .andWhere('period_start', '<=', upTo);
  for (const s of summaries) {
    const start = Number(s.period_start);
    const m = usage.get(start) ?? new Map<string, string>();
    m.set(s.feature_key, microToString(s.quantity_text));
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
    .select('l.feature_key', 'l.period_start', 'l.amount', 'l.price_snapshot', 'l.details')
    .where('l.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .whereIn('l.kind', USAGE_KINDS)
    .whereNotNull('l.feature_key')
    .orderByRaw('LENGTH(i.number), i.number, l.line_no');
  for (const l of lines) {
    const key = `${l.feature_key}|${Number(l.period_start)}`;
    const prev = billed.get(key);
    const details = JSON.parse(l.details) as UsageDetails;
    billed.set(key, {
      amount: prev ? dec(prev.amount).plus(l.amount).toFixed() : l.amount,
      usedTotal: details.usedTotal,
      snapshot: JSON.parse(l.price_snapshot) as PlanFeature,
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

export interface ComposeInput {
  sub: Subscription;
  period: Period;
  nominal: Period;
  /** When the invoice is issued: which prepaid credit it may use. */
  issuedAt: number;
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
  const state = await loadTenantState(q, sub.tenantId, period.start, { subscriptionId: sub.id, periodStart: period.start });
  const plan = await planAtEnd(q, cache, t, sub, period);
  for (const inv of periodsWithLateUsage(state, sub.currency)) {
    const invSub = t.subscriptions.find((x) => x.id === inv.subscriptionId) ?? null;
    inv.plan = await planAtEnd(q, cache, t, invSub, inv.period);
  }
  const features = await cache.allFeatures(q);
  state.events = await percentageEvents(q, sub.tenantId, state, plan, period, sub.currency, t);

  const discounts = await loadDiscounts(q, sub.tenantId, { exceptPeriod: period.start });
  const taxes = (await loadTenantTaxes(q, sub.tenantId)).rates;
  const credits = await availableCredits(q, sub.tenantId, sub.currency, input.issuedAt);
  const reason = input.reason ?? 'period';
  const rated = ratePeriod({ sub, segments, versions, period, nominal, plan, features, overrides: t.overrides, grants: t.grants, discounts, taxes, credits, reason }, state);
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
