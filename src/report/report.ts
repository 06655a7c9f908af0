import type { Knex } from 'knex';
import { loadFeatures } from '../catalog/repository.js';
import { dec, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { formatMoney } from '../domain/money.js';
import { periodToJson, type Instant } from '../domain/period.js';
import { rateCharge, type PeriodTerms, type RatedCharge } from '../rate/charge.js';
import { CatalogCache, loadTenantTerms, termsForPeriod, type TenantTerms } from '../rate/tenant-terms.js';
import { handleOn, type Db } from '../storage/db.js';
import { checkPeriodSpec, selectWindow } from '../aggregate/periods.js';
import { usageByTenant, wholeWindowsUsage, type UsageByWindow } from '../aggregate/usage.js';
import { TenantTimeline, windowsKey, type Window } from '../aggregate/windows.js';
import type { Feature } from '../domain/catalog.js';

/** One feature's line of a report (DESIGN.md §7). Decimal strings; amounts in major units. */
export interface FeatureReport {
  featureKey: string;
  used: string;
  /** null = unlimited. */
  included: string | null;
  /** Billable quantity beyond the allowance. */
  overage: string;
  /** Rounded once to the currency's minor unit. */
  overageAmount: string;
  isExceeded: boolean;
  hardStop: boolean;
}

export interface TenantReport {
  tenantId: string;
  currency: string;
  period: { start: string; end: string };
  /** The plan the period is rated on (in force at its end), or null without a subscription. */
  plan: { key: string; version: number } | null;
  subscriptionId: string | null;
  features: FeatureReport[];
  totalOverageAmount: string;
}

export interface ReportOptions {
  now: Instant;
  tenantId?: string;
  /** `current` (default), `previous`, or `YYYY-MM`: the billing period starting that month. */
  period?: string;
}

/**
 * What each tenant owes for usage in a period, rated exactly as the overage stage rates it
 * (src/rate/charge.ts). Usage includes the events not aggregated yet: a tenant's summaries
 * plus its newer events where that is exact, every event of the period otherwise.
 * Without --tenant, tenants with neither a subscription nor usage in the period are left out.
 */
export async function buildReport(db: Db, opts: ReportOptions): Promise<TenantReport[]> {
  const spec = checkPeriodSpec(opts.period ?? 'current');
  const q = db.knex;
  const tenantIds = opts.tenantId !== undefined ? [opts.tenantId] : (await q('tenants').select('id').orderBy('id')).map((r) => r.id as string);
  const terms = await loadTenantTerms(q, tenantIds);
  if (opts.tenantId !== undefined && !terms.get(opts.tenantId)?.tenant) {
    throw new BillingError('not_found', `tenant "${opts.tenantId}" does not exist (see \`billing tenant list\`)`);
  }
  const windows = new Map<string, Window[]>();
  for (const [id, t] of terms) windows.set(id, [selectWindow(new TenantTimeline(t.subscriptions), spec, opts.now)]);
  const reports = (await rateWindows(db, q, terms, windows, opts.now)).map(toTenantReport);
  return opts.tenantId !== undefined ? reports : reports.filter((r) => r.subscriptionId !== null || r.features.some((f) => f.used !== '0'));
}

export interface RatedWindow {
  tenantId: string;
  window: Window;
  terms: PeriodTerms;
  /** Rated charges by feature key, in key order. */
  charges: RatedCharge[];
  /** Micro-units used per feature (absent: no usage). */
  usedMicro: Map<string, string>;
}

/**
 * Rate tenants' windows: every metered feature of the plan in force at the window's end (a
 * minimum applies without usage) and every feature with usage in the window (only up to
 * `usageUntil`, inclusive, when given).
 */
export async function rateWindows(
  db: Db,
  q: Knex | Knex.Transaction,
  terms: Map<string, TenantTerms>,
  windows: Map<string, Window[]>,
  now: Instant,
  usageUntil?: Instant,
): Promise<RatedWindow[]> {
  const features = await loadFeatures(q);
  const measured =
    usageUntil === undefined
      ? windows
      : new Map([...windows].map(([id, ws]) => [id, ws.map((w) => ({ ...w, end: Math.max(w.start, Math.min(w.end, usageUntil + 1)) }))]));
  const usage = await windowUsage(db, q, terms, measured, [...features.values()], usageUntil === undefined);
  const plans = new CatalogCache().lookup(q);
  const out: RatedWindow[] = [];
  for (const [tenantId, ws] of windows) {
    const t = terms.get(tenantId)!;
    for (const w of ws) {
      const usedMicro = usage.get(tenantId)?.get(w.start) ?? new Map<string, string>();
      const pt = await termsForPeriod(t, w.subscription, w, plans);
      const keys = new Set([...usedMicro.keys()]);
      if (pt.ok) {
        for (const [key, pf] of Object.entries(pt.plan.features)) {
          if (pf.enabled && features.get(key)?.type !== 'boolean') keys.add(key);
        }
      }
      const charges = [...keys].sort().map((featureKey) =>
        rateCharge({ tenantId, featureKey, periodStart: w.start, periodEnd: w.end }, usedMicro.get(featureKey) ?? null, pt, t.overrides.get(featureKey), now),
      );
      out.push({ tenantId, window: w, terms: pt, charges, usedMicro });
    }
  }
  return out;
}

/** Whole windows: tenants with many events from their summaries (aggregate/usage.ts). Windows cut short: every event. */
async function windowUsage(
  db: Db,
  q: Knex | Knex.Transaction,
  terms: Map<string, TenantTerms>,
  windows: Map<string, Window[]>,
  features: Feature[],
  whole: boolean,
): Promise<Map<string, UsageByWindow>> {
  if (!whole) return usageByTenant(handleOn(db, q), windows, features);
  const keys = new Map([...windows.keys()].map((id) => [id, windowsKey(terms.get(id)?.subscriptions)]));
  return wholeWindowsUsage(handleOn(db, q), windows, features, keys);
}

export function currencyOf(r: RatedWindow): string {
  return r.terms.ok ? r.terms.plan.currency : r.terms.currency;
}

export function toTenantReport(r: RatedWindow): TenantReport {
  const currency = currencyOf(r);
  return {
    tenantId: r.tenantId,
    currency,
    period: periodToJson(r.window),
    plan: r.terms.ok ? { key: r.terms.plan.planKey, version: r.terms.plan.version } : null,
    subscriptionId: r.window.subscription?.id ?? null,
    features: r.charges.map((c) => ({
      featureKey: c.featureKey,
      used: c.used,
      included: c.included,
      overage: c.billable,
      overageAmount: c.amount,
      isExceeded: c.isExceeded,
      hardStop: c.hardStop,
    })),
    totalOverageAmount: formatMoney(r.charges.reduce((s, c) => s.plus(dec(c.amount)), ZERO), currency),
  };
}
