import type { Command } from 'commander';
import { oneOf } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { reportCsv, reportTable } from '../../ui/report.js';

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
      const format = oneOf(flags.format ?? (ctx.json ? 'json' : 'table'), '--format', FORMATS);
      const { buildReport } = await import('../../report/report.js');
      const reports = await withDb(ctx, (db) => buildReport(db, { now: ctx.now, tenantId: flags.tenant, period: flags.period }));
      if (format === 'json') printJson(reports);
      else if (format === 'csv') process.stdout.write(reportCsv(reports));
      else printLine(reports.length ? reports.map(reportTable).join('\n\n') : 'no tenant has a subscription or usage in that period');
    });
}
