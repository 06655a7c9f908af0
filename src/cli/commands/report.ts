import type { Command } from 'commander';
import { oneOf, optionalWholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { checkTimeZone } from '../../format/period.js';
import { REPORT_SORTS, type ReportSort } from '../../report/select.js';
import { reportCsv, reportTable, summaryCsv, summaryTable, totalsTable } from '../../ui/report.js';

interface ReportFlags {
  tenant?: string;
  period?: string;
  format?: string;
  exceeded?: boolean;
  plan?: string;
  currency?: string;
  sort?: string;
  limit?: string;
  summary?: boolean;
  tz?: string;
}

const FORMATS = ['table', 'json', 'csv'];

const SHAPES = `
JSON (--json or --format json):
  without --summary: an array, one object per tenant:
    [{ tenantId, currency, period: {start, end}, plan: {key, version} | null, subscriptionId,
       features: [{ featureKey, used, included, overage, overageAmount, isExceeded, hardStop,
         dimension?, values?: [{ value, used, included, overage, overageAmount, isExceeded, hardStop }] }],
       totalOverageAmount, totalAmount }]
  (dimension and values: a feature priced by dimension, one entry per value of its field)
  with --summary: { tenants: [{ tenantId, currency, period, plan, subscriptionId, features,
       exceeded, totalOverageAmount, totalAmount }], totals: [{ currency, tenants,
       totalOverageAmount, totalAmount }] }
  totalAmount is the period's invoice total (base fee + usage + minimum commitment - discounts
  + taxes, before prepaid credits). Amounts are decimal strings in major units, periods ISO
  instants in UTC; no digit grouping or shortened ids (the table does both).
Filters pick rows; a tenant's totals stay its whole period's. --limit counts tenant x feature
rows (with --summary, tenants; --sort amount then orders them by totalAmount and used by their
largest used quantity). Amounts sort as numbers whatever their currency.`;

export function register(program: Command): void {
  program
    .command('report')
    .description('usage and overage per tenant and feature for a billing period')
    .option('--tenant <id>', 'one tenant (unknown: exit 2), or every tenant whose id starts with a prefix: --tenant "acme-*"')
    .option('--period <period>', 'current | previous | YYYY-MM (the billing period starting that month)', 'current')
    .option('--exceeded', 'only tenant x feature rows over their included quantity')
    .option('--plan <key>', 'only tenants rated on this plan')
    .option('--currency <code>', 'only tenants billed in this currency')
    .option('--sort <order>', `${REPORT_SORTS.join(' | ')}: rows by tenant id, used quantity or overage amount (largest first)`, 'tenant')
    .option('--limit <n>', 'at most N rows (with --summary, N tenants)')
    .option('--summary', 'one line per tenant with its totals')
    .option('--tz <zone>', 'show periods in this time zone (IANA name, e.g. Europe/Berlin); JSON stays UTC', 'UTC')
    .option('--format <format>', 'table | json | csv (--json is --format json)')
    .addHelpText('after', SHAPES)
    .action(async (flags: ReportFlags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const format = oneOf(flags.format ?? (ctx.json ? 'json' : 'table'), '--format', FORMATS);
      const sort = oneOf<ReportSort>(flags.sort ?? 'tenant', '--sort', REPORT_SORTS);
      const limit = optionalWholeNumber(flags.limit, '--limit', { min: 1 });
      const zone = checkTimeZone(flags.tz ?? 'UTC');
      const prefix = flags.tenant?.endsWith('*') ? flags.tenant.slice(0, -1) : undefined;
      const tenantId = prefix === undefined ? flags.tenant : undefined;
      const filtered = prefix !== undefined || flags.exceeded || flags.plan !== undefined || flags.currency !== undefined;
      const selection = { exceeded: flags.exceeded, plan: flags.plan, currency: flags.currency, sort, limit };
      const { buildReport } = await import('../../report/report.js');
      const { currencyTotals, selectReport, summarizeReport } = await import('../../report/select.js');
      const all = await withDb(ctx, (db) => buildReport(db, { now: ctx.now, tenantId, tenantPrefix: prefix, period: flags.period }));
      if (flags.summary) {
        const tenants = summarizeReport(all, selection);
        const totals = currencyTotals(tenants);
        if (format === 'json') printJson({ tenants, totals });
        else if (format === 'csv') process.stdout.write(summaryCsv(tenants));
        else printLine(tenants.length ? `${summaryTable(tenants, zone)}\n\n${totalsTable(totals)}` : 'no tenant matches');
        return;
      }
      const reports = selectReport(all, selection);
      if (format === 'json') printJson(reports);
      else if (format === 'csv') process.stdout.write(reportCsv(reports));
      else if (reports.length === 0) printLine(filtered ? 'no tenant matches' : 'no tenant has a subscription or usage in that period');
      else printLine(`${reports.map((r) => reportTable(r, zone)).join('\n\n')}\n\n${totalsTable(currencyTotals(reports))}`);
    });
}
