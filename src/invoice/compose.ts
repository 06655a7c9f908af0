import type { Knex } from 'knex';
import type { PlanFeature, PlanVersion } from '../domain/catalog.js';
import { featureTerms as termsOf, type PeriodTerms } from '../rate/charge.js';
import { CatalogCache, loadTenantTerms, termsForPeriod, type TenantTerms } from '../rate/tenant-terms.js';
import { dec } from '../domain/decimal.js';
import { formatMoney } from '../domain/money.js';
import type { Period } from '../domain/period.js';
import { microToString } from '../domain/quantity.js';
import type { Subscription } from '../subscriptions/repository.js';
import { baseFeeLines, versionKey } from '../rate/base-fee.js';
import type { RatedLine as DraftLine } from '../rate/lines.js';
import { roundingLine } from '../rate/rounding.js';
import type { InvoiceLine, UsageDetails } from './types.js';
import { USAGE_KINDS } from './types.js';
import { usageLine, type Billed } from './usage-lines.js';

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

interface InvoicedPeriod {
  period: Period;
  subscriptionId: string;
  currency: string;
  /** The terms the invoice priced each metered feature on; null for invoices that predate recording them. */
  featureTerms: FeatureTerms | null;
}

/** Feature key → the terms (plan at period end, after the tenant's override) an invoice priced it on. */
export type FeatureTerms = Record<string, PlanFeature>;

interface TenantState {
  /** period_start → feature → used (decimal string) */
  usage: Map<number, Map<string, string>>;
  /** `${feature}|${period_start}` → what non-void invoices billed */
  billed: Map<string, Billed>;
  /** period_start → an invoiced period, its subscription and currency */
  invoiced: Map<number, InvoicedPeriod>;
}

async function loadTenantState(q: Q, tenantId: string, upTo: number): Promise<TenantState> {
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
    .andWhere('period_start', '<', upTo);
  for (const i of invoices) {
    invoiced.set(Number(i.period_start), {
      period: { start: Number(i.period_start), end: Number(i.period_end) },
      subscriptionId: i.subscription_id,
      currency: i.currency,
      featureTerms: i.feature_terms ? (JSON.parse(i.feature_terms) as FeatureTerms) : null,
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
  return { usage, billed, invoiced };
}

export interface ComposeInput {
  sub: Subscription;
  period: Period;
  nominal: Period;
}

export interface Composed {
  lines: InvoiceLine[];
  subtotal: string;
  total: string;
  /** Stored on the invoice: what its period's late usage is priced on. */
  featureTerms: FeatureTerms;
}

/**
 * All lines of a subscription period's invoice: base fee per segment, usage per feature of
 * the plan in force at period end (with the tenant's overrides), then late usage / credits
 * for earlier invoiced periods whose usage changed since they were billed.
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
  const drafts: DraftLine[] = baseFeeLines({ sub, segments, versions, period, nominal });

  const state = await loadTenantState(q, sub.tenantId, period.start);
  const pv = await planAtEnd(q, cache, t, sub, period);
  const featureTerms: FeatureTerms = {};
  if (pv) {
    for (const featureKey of Object.keys(pv.features).sort()) {
      const feature = (await cache.allFeatures(q)).get(featureKey);
      if (!feature || feature.type !== 'metered') continue;
      const terms = termsOf(pv, featureKey, t.overrides.get(featureKey))!;
      featureTerms[featureKey] = terms;
      const line = usageLine({
        context: 'current',
        feature,
        terms,
        usedTotal: state.usage.get(period.start)?.get(featureKey) ?? '0',
        billed: state.billed.get(`${featureKey}|${period.start}`) ?? null,
        currency: sub.currency,
        period,
        planKey: pv.planKey,
        planVersion: pv.version,
      });
      if (line) drafts.push(line);
    }
  }

  drafts.push(...(await lateUsageLines(q, cache, sub, t, state)));

  const rounding = roundingLine(drafts, sub.currency, period);
  if (rounding) drafts.push(rounding);

  const lines = drafts.map((d, i) => ({ lineNo: i + 1, ...d }));
  const sum = lines.reduce((s, l) => s.plus(l.amount), dec(0));
  const subtotal = formatMoney(sum, sub.currency);
  return { lines, subtotal, total: subtotal, featureTerms };
}

async function lateUsageLines(q: Q, cache: CatalogCache, sub: Subscription, t: TenantTerms, state: TenantState): Promise<DraftLine[]> {
  const out: DraftLine[] = [];
  for (const [start, inv] of [...state.invoiced.entries()].sort((a, b) => a[0] - b[0])) {
    if (inv.currency !== sub.currency) continue; // never converted: it waits for an invoice in its own currency
    // Only features with a summary: a missing summary means "not known", never "zero".
    const features = [...(state.usage.get(start)?.keys() ?? [])];
    if (features.length === 0) continue;
    const invSub = t.subscriptions.find((x) => x.id === inv.subscriptionId) ?? null;
    const pv = await planAtEnd(q, cache, t, invSub, inv.period);
    for (const featureKey of features.sort()) {
      const feature = (await cache.allFeatures(q)).get(featureKey);
      if (!feature) continue;
      const billed = state.billed.get(`${featureKey}|${start}`) ?? null;
      // Rate on the terms the period was billed with; a feature without a line then, on the terms
      // its invoice recorded (none: the plan lacked it), else on today's terms at its period end.
      const terms =
        billed?.snapshot ?? (inv.featureTerms ? inv.featureTerms[featureKey] ?? null : pv ? termsOf(pv, featureKey, t.overrides.get(featureKey)) : null);
      if (!terms) continue;
      const line = usageLine({
        context: 'late',
        feature,
        terms,
        usedTotal: state.usage.get(start)?.get(featureKey) ?? '0',
        billed,
        currency: sub.currency,
        period: inv.period,
        planKey: pv?.planKey ?? null,
        planVersion: pv?.version ?? null,
      });
      if (line) out.push(line);
    }
  }
  return out;
}
