import { Decimal, dec, ZERO } from '../domain/decimal.js';
import { formatMoney } from '../domain/money.js';
import type { FeatureReport, TenantReport } from './report.js';

// `billing report`'s filters, order, limit, summary and per-currency totals: they only pick and
// sum what buildReport priced.

export const REPORT_SORTS = ['tenant', 'used', 'amount'] as const;
export type ReportSort = (typeof REPORT_SORTS)[number];

export interface ReportSelection {
  /** Only tenant × feature rows over their included quantity (and tenants with one). */
  exceeded?: boolean;
  /** Only tenants rated on this plan key. */
  plan?: string;
  /** Only tenants billed in this currency (any case). */
  currency?: string;
  sort?: ReportSort;
  /** Rows (tenant × feature) at most; with a summary, tenants. */
  limit?: number;
}

/** One line per tenant (`report --summary`). */
export interface TenantSummary {
  tenantId: string;
  currency: string;
  period: { start: string; end: string };
  plan: { key: string; version: number } | null;
  subscriptionId: string | null;
  /** Features reported, and how many of them are over their included quantity. */
  features: number;
  exceeded: number;
  totalOverageAmount: string;
  totalAmount: string;
}

/** The tenants' totals in one currency (never summed across currencies). */
export interface CurrencyTotal {
  currency: string;
  tenants: number;
  totalOverageAmount: string;
  totalAmount: string;
}

function filterTenants(reports: TenantReport[], s: ReportSelection): TenantReport[] {
  const currency = s.currency?.toUpperCase();
  return reports.filter(
    (r) =>
      (s.plan === undefined || r.plan?.key === s.plan) &&
      (currency === undefined || r.currency.toUpperCase() === currency) &&
      (!s.exceeded || r.features.some((f) => f.isExceeded)),
  );
}

const byTenant = (a: { tenantId: string }, b: { tenantId: string }) => (a.tenantId < b.tenantId ? -1 : a.tenantId > b.tenantId ? 1 : 0);
/** Larger first; amounts compare as numbers whatever their currency (narrow with --currency). */
const desc = (a: string, b: string) => dec(b).cmp(dec(a));

/**
 * The report's rows picked, ordered and cut: `tenant` keeps tenant id then feature order; `used`
 * and `amount` order every tenant × feature row by used quantity or overage amount, largest
 * first, and list each tenant where its first row falls, its rows in that order. The limit
 * counts rows. Tenant totals stay the tenant's whole period.
 */
export function selectReport(reports: TenantReport[], s: ReportSelection): TenantReport[] {
  const picked = filterTenants(reports, s).map((r) => (s.exceeded ? { ...r, features: r.features.filter((f) => f.isExceeded) } : r));
  const limit = s.limit ?? Infinity;
  const sort = s.sort ?? 'tenant';
  if (sort === 'tenant') {
    const out: TenantReport[] = [];
    let left = limit;
    for (const r of [...picked].sort(byTenant)) {
      if (left <= 0) break;
      const features = r.features.slice(0, left);
      left -= features.length;
      out.push({ ...r, features });
    }
    return out;
  }
  const key = (f: FeatureReport) => (sort === 'used' ? f.used : f.overageAmount);
  const rows = picked
    .flatMap((r) => r.features.map((f) => ({ r, f })))
    .sort((a, b) => desc(key(a.f), key(b.f)) || byTenant(a.r, b.r) || (a.f.featureKey < b.f.featureKey ? -1 : 1))
    .slice(0, limit);
  const out = new Map<TenantReport, FeatureReport[]>();
  for (const { r, f } of rows) out.set(r, [...(out.get(r) ?? []), f]);
  return [...out].map(([r, features]) => ({ ...r, features }));
}

/**
 * One line per tenant: `tenant` by id, `amount` by its invoice total, `used` by its largest used
 * quantity, largest first; the limit counts tenants.
 */
export function summarizeReport(reports: TenantReport[], s: ReportSelection): TenantSummary[] {
  const sort = s.sort ?? 'tenant';
  const top = (r: TenantReport) => r.features.reduce((m, f) => Decimal.max(m, dec(f.used)), ZERO).toFixed();
  const ordered = [...filterTenants(reports, s)].sort(
    (a, b) => (sort === 'amount' ? desc(a.totalAmount, b.totalAmount) : sort === 'used' ? desc(top(a), top(b)) : 0) || byTenant(a, b),
  );
  return ordered.slice(0, s.limit ?? Infinity).map((r) => ({
    tenantId: r.tenantId,
    currency: r.currency,
    period: r.period,
    plan: r.plan,
    subscriptionId: r.subscriptionId,
    features: r.features.length,
    exceeded: r.features.filter((f) => f.isExceeded).length,
    totalOverageAmount: r.totalOverageAmount,
    totalAmount: r.totalAmount,
  }));
}

/** Per currency, in currency order: the tenants shown and the sums of their totals. */
export function currencyTotals(tenants: Array<Pick<TenantReport, 'currency' | 'totalOverageAmount' | 'totalAmount'>>): CurrencyTotal[] {
  const sums = new Map<string, { tenants: number; overage: Decimal; total: Decimal }>();
  for (const t of tenants) {
    const s = sums.get(t.currency) ?? { tenants: 0, overage: ZERO, total: ZERO };
    sums.set(t.currency, { tenants: s.tenants + 1, overage: s.overage.plus(t.totalOverageAmount), total: s.total.plus(t.totalAmount) });
  }
  return [...sums]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([currency, s]) => ({ currency, tenants: s.tenants, totalOverageAmount: formatMoney(s.overage, currency), totalAmount: formatMoney(s.total, currency) }));
}

