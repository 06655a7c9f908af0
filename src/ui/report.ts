import { dec } from '../domain/decimal.js';
import type { FeatureReport, TenantReport } from '../report/report.js';
import type { CurrencyTotal, TenantSummary } from '../report/select.js';
import { toCsv } from '../format/csv.js';
import { formatPeriod } from '../format/period.js';
import { formatTable, groupDigits as g, truncateCell } from '../format/table.js';

// Text output groups digits and shortens long ids; JSON and CSV keep the exact values.

export function reportHeading(r: TenantReport, zone?: string): string {
  const plan = r.plan ? `plan ${r.plan.key} v${r.plan.version}` : 'no subscription';
  return `${r.tenantId}  ${formatPeriod(r.period, zone)}  ${plan}  (${r.currency})`;
}

/** Why an amount is zero although usage is over the allowance. */
export function featureNote(f: Pick<FeatureReport, 'overage' | 'overageAmount' | 'hardStop'>): string {
  if (f.overage === '0' || !dec(f.overageAmount).isZero()) return '';
  return f.hardStop ? 'hard stop: requests past the limit are denied, not billed' : 'no overage price: not billed';
}

export function reportTable(r: TenantReport, zone?: string): string {
  const row = (name: string, f: Omit<FeatureReport, 'featureKey'>) => [
    name, g(f.used), f.included === null ? 'unlimited' : g(f.included), g(f.overage), g(f.overageAmount),
    f.isExceeded ? 'yes' : 'no', f.hardStop ? 'yes' : 'no', featureNote(f),
  ];
  // A feature priced by dimension: its total, then a row per value under it.
  const rows = r.features.flatMap((f) => [row(truncateCell(f.featureKey), f), ...(f.values ?? []).map((v) => row(`  ${f.dimension}=${truncateCell(v.value)}`, v))]);
  const columns = ['feature', 'used', 'included', 'overage', 'amount', 'exceeded', 'hardStop', 'note'];
  // The note column only when a row has one.
  const table = rows.some((row) => row[7] !== '') ? formatTable(columns, rows) : formatTable(columns.slice(0, 7), rows.map((row) => row.slice(0, 7)));
  return `${reportHeading(r, zone)}\n${table}\ntotal overage: ${g(r.totalOverageAmount)} ${r.currency}; invoice total: ${g(r.totalAmount)} ${r.currency}`;
}

export function summaryTable(tenants: TenantSummary[], zone?: string): string {
  return formatTable(
    ['tenant', 'period', 'plan', 'features', 'exceeded', 'overage', 'total', 'currency'],
    tenants.map((t) => [
      truncateCell(t.tenantId), formatPeriod(t.period, zone), t.plan ? `${t.plan.key} v${t.plan.version}` : '-', t.features, t.exceeded,
      g(t.totalOverageAmount), g(t.totalAmount), t.currency,
    ]),
  );
}

export function totalsTable(totals: CurrencyTotal[]): string {
  return formatTable(
    ['currency', 'tenants', 'overage', 'total'],
    totals.map((t) => [t.currency, g(String(t.tenants)), g(t.totalOverageAmount), g(t.totalAmount)]),
  );
}

export function reportCsv(reports: TenantReport[]): string {
  const columns = ['tenant', 'currency', 'period_start', 'period_end', 'plan', 'feature', 'used', 'included', 'overage',
    'overage_amount', 'is_exceeded', 'hard_stop', 'total_overage_amount', 'total_amount'];
  const rows = reports.flatMap((r) =>
    r.features.map((f) => [r.tenantId, r.currency, r.period.start, r.period.end, r.plan?.key ?? '', f.featureKey, f.used,
      f.included ?? '', f.overage, f.overageAmount, f.isExceeded, f.hardStop, r.totalOverageAmount, r.totalAmount]),
  );
  return toCsv(columns, rows);
}

export function summaryCsv(tenants: TenantSummary[]): string {
  const columns = ['tenant', 'currency', 'period_start', 'period_end', 'plan', 'features', 'exceeded', 'total_overage_amount', 'total_amount'];
  return toCsv(columns, tenants.map((t) => [t.tenantId, t.currency, t.period.start, t.period.end, t.plan?.key ?? '', t.features, t.exceeded,
    t.totalOverageAmount, t.totalAmount]));
}
