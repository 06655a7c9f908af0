import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { formatTable, printJson, printLine, toCsv } from '../output.js';
import type { TenantReport } from '../../report/report.js';

interface ReportFlags {
  tenant?: string;
  period?: string;
  format?: string;
}

const FORMATS = ['table', 'json', 'csv'];

export function register(program: Command): void {
  program
    .command('report')
    .description('usage and overage per tenant and feature for a billing period')
    .option('--tenant <id>', 'one tenant only')
    .option('--period <period>', 'current | previous | YYYY-MM (the billing period starting that month)', 'current')
    .option('--format <format>', 'table | json | csv (--json is --format json)')
    .action(async (flags: ReportFlags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { BillingError } = await import('../../domain/errors.js');
      const format = flags.format ?? (ctx.json ? 'json' : 'table');
      if (!FORMATS.includes(format)) throw new BillingError('usage', `--format "${format}" is not one of ${FORMATS.join(', ')}`);
      const { buildReport } = await import('../../report/report.js');
      const reports = await withDb(ctx, (db) => buildReport(db, { now: ctx.now, tenantId: flags.tenant, period: flags.period }));
      if (format === 'json') printJson(reports);
      else if (format === 'csv') process.stdout.write(reportCsv(reports));
      else printLine(reports.length ? reports.map(reportTable).join('\n\n') : 'no tenant has a subscription or usage in that period');
    });
}

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

function reportCsv(reports: TenantReport[]): string {
  const columns = ['tenant', 'currency', 'period_start', 'period_end', 'plan', 'feature', 'used', 'included', 'overage',
    'overage_amount', 'is_exceeded', 'hard_stop', 'total_overage_amount'];
  const rows = reports.flatMap((r) =>
    r.features.map((f) => [r.tenantId, r.currency, r.period.start, r.period.end, r.plan?.key ?? '', f.featureKey, f.used,
      f.included ?? '', f.overage, f.overageAmount, f.isExceeded, f.hardStop, r.totalOverageAmount]),
  );
  return toCsv(columns, rows);
}
