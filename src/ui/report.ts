import type { TenantReport } from '../report/report.js';
import { toCsv } from '../format/csv.js';
import { formatTable } from '../format/table.js';

function day(iso: string): string {
  return iso.endsWith('T00:00:00.000Z') ? iso.slice(0, 10) : iso;
}

export function reportHeading(r: TenantReport): string {
  const plan = r.plan ? `plan ${r.plan.key} v${r.plan.version}` : 'no subscription';
  return `${r.tenantId}  ${day(r.period.start)} → ${day(r.period.end)}  ${plan}  (${r.currency})`;
}

export function reportTable(r: TenantReport): string {
  const table = formatTable(
    ['feature', 'used', 'included', 'overage', 'amount', 'exceeded', 'hardStop'],
    r.features.map((f) => [f.featureKey, f.used, f.included ?? 'unlimited', f.overage, f.overageAmount, f.isExceeded ? 'yes' : 'no', f.hardStop ? 'yes' : 'no']),
  );
  return `${reportHeading(r)}\n${table}\ntotal overage: ${r.totalOverageAmount} ${r.currency}`;
}

export function reportCsv(reports: TenantReport[]): string {
  const columns = ['tenant', 'currency', 'period_start', 'period_end', 'plan', 'feature', 'used', 'included', 'overage',
    'overage_amount', 'is_exceeded', 'hard_stop', 'total_overage_amount'];
  const rows = reports.flatMap((r) =>
    r.features.map((f) => [r.tenantId, r.currency, r.period.start, r.period.end, r.plan?.key ?? '', f.featureKey, f.used,
      f.included ?? '', f.overage, f.overageAmount, f.isExceeded, f.hardStop, r.totalOverageAmount]),
  );
  return toCsv(columns, rows);
}
