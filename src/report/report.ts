import { dec, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { formatMoney } from '../domain/money.js';
import { periodToJson, type Instant } from '../domain/period.js';
import type { Knex } from 'knex';
import { CatalogCache, loadTenantTerms, type TenantTerms } from '../rate/tenant-terms.js';
import { currencyOf, rateWindows, type RatedWindow } from '../rate/window.js';
import type { Db } from '../storage/db.js';
import { checkPeriodSpec, selectWindow } from '../aggregate/periods.js';
import { TenantTimeline, type Window } from '../aggregate/windows.js';
import { loadInvoiceExtras, windowInvoiceTotals } from './invoice-totals.js';
import { byDimension, rateByValue } from '../rate/dimension.js';
import type { RatedCharge } from '../rate/charge.js';
import { microToString } from '../domain/quantity.js';

/** Usage as a report rates it: decimal strings; amounts in major units. */
export interface RatedUsage {
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

/** One feature's line of a report (DESIGN.md §7). */
export interface FeatureReport extends RatedUsage {
  featureKey: string;
  /** A feature priced by dimension (DESIGN.md §14): its metadata field, and a row per value (by name). */
  dimension?: string;
  values?: ValueReport[];
}

/** One value's usage of a feature priced by dimension, rated on its own entry; the feature's row sums them. */
export interface ValueReport extends RatedUsage {
  value: string;
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
  /**
   * What the period's invoice totals (DESIGN.md §13 `total`): base fee + usage + minimum
   * commitment − discounts + exclusive taxes, before prepaid credits; 0 without a subscription.
   */
  totalAmount: string;
}

export interface ReportOptions {
  now: Instant;
  tenantId?: string;
  /** `current` (default), `previous`, or `YYYY-MM`: the billing period starting that month. */
  period?: string;
  /** Only tenants whose id starts with this (ignored with tenantId). */
  tenantPrefix?: string;
}

/**
 * What each tenant owes for usage in a period, priced by rate/ (`rateWindows`, the same
 * `rateCharge` as the overage stage). Usage includes the events not aggregated yet: a tenant's summaries
 * plus its newer events where that is exact, every event of the period otherwise.
 * Without --tenant, tenants with neither a subscription nor usage in the period are left out.
 */
export async function buildReport(db: Db, opts: ReportOptions): Promise<TenantReport[]> {
  const spec = checkPeriodSpec(opts.period ?? 'current');
  const q = db.knex;
  const tenantIds = opts.tenantId !== undefined ? [opts.tenantId] : await listTenantIds(q, opts.tenantPrefix);
  const terms = await loadTenantTerms(q, tenantIds);
  if (opts.tenantId !== undefined && !terms.get(opts.tenantId)?.tenant) {
    throw new BillingError('not_found', `tenant "${opts.tenantId}" does not exist`, undefined, { hint: 'see `billing tenant list`' });
  }
  const windows = new Map<string, Window[]>();
  for (const [id, t] of terms) windows.set(id, [selectWindow(new TenantTimeline(t.subscriptions), spec, opts.now)]);
  const reports = await toTenantReports(db, terms, await rateWindows(db, terms, windows, opts.now));
  return opts.tenantId !== undefined ? reports : reports.filter((r) => r.subscriptionId !== null || r.features.some((f) => f.used !== '0'));
}

/** Tenant ids in id order; with a prefix, only those starting with it (LIKE narrows, startsWith decides: SQLite's LIKE ignores case). */
async function listTenantIds(q: Knex, prefix: string | undefined): Promise<string[]> {
  const query = q('tenants').select('id').orderBy('id');
  if (prefix) query.whereRaw("id LIKE ? ESCAPE '!'", [`${prefix.replace(/[!%_]/g, (c) => `!${c}`)}%`]);
  const ids = (await query).map((r) => r.id as string);
  return prefix ? ids.filter((id) => id.startsWith(prefix)) : ids;
}

/** Reports of rated windows, each with its invoice total priced by the rating path (invoice-totals.ts). */
export async function toTenantReports(db: Db, terms: Map<string, TenantTerms>, rated: RatedWindow[]): Promise<TenantReport[]> {
  const q = db.knex;
  const extras = await loadInvoiceExtras(q, [...new Set(rated.filter((r) => r.window.subscription).map((r) => r.tenantId))]);
  const cache = new CatalogCache();
  const out: TenantReport[] = [];
  for (const r of rated) {
    const totals = await windowInvoiceTotals(q, cache, terms.get(r.tenantId)!, r, r.usedMicro, extras);
    out.push(toTenantReport(r, totals?.total ?? null));
  }
  return out;
}

/** A feature priced by dimension: each value's rating, as the charge summed them (rate/dimension.ts). */
function valueRows(c: RatedCharge, valuesUsed: ReadonlyMap<string, string> | undefined, currency: string): Pick<FeatureReport, 'dimension' | 'values'> {
  const pf = 'unrated' in c.priceSnapshot ? null : c.priceSnapshot;
  if (!byDimension(pf)) return {};
  const used = new Map([...(valuesUsed ?? [])].map(([v, m]) => [v, microToString(m)]));
  return {
    dimension: pf.dimension,
    values: rateByValue(pf, used, currency).values.map(({ value, rated }) => ({
      value,
      used: rated.used,
      included: rated.included,
      overage: rated.billable,
      overageAmount: rated.amount,
      isExceeded: rated.isExceeded,
      hardStop: rated.hardStop,
    })),
  };
}

function toTenantReport(r: RatedWindow, total: string | null): TenantReport {
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
      ...valueRows(c, r.details.get(c.featureKey)?.valuesUsed, currency),
    })),
    totalOverageAmount: formatMoney(r.charges.reduce((s, c) => s.plus(dec(c.amount)), ZERO), currency),
    totalAmount: total ?? formatMoney(ZERO, currency),
  };
}
