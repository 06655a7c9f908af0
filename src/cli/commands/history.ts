import type { Command } from 'commander';
import { wholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { checkTimeZone, formatPeriod } from '../../format/period.js';
import { formatTable, groupDigits as g, truncateCell } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('history')
    .description("a tenant's usage and overage per billing period, newest first")
    .argument('<tenant>', 'tenant id')
    .option('--limit <n>', 'number of periods', '12')
    .option('--tz <zone>', 'show periods in this time zone (IANA name, e.g. Europe/Berlin); JSON stays UTC', 'UTC')
    .action(async (tenantId: string, flags: { limit: string; tz: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const zone = checkTimeZone(flags.tz);
      const limit = wholeNumber(flags.limit, '--limit');
      const { buildHistory } = await import('../../report/history.js');
      const periods = await withDb(ctx, (db) => buildHistory(db, { now: ctx.now, tenantId, limit }));
      if (ctx.json) {
        printJson(periods);
        return;
      }
      const rows: string[][] = [];
      for (const p of periods) {
        const period = formatPeriod(p.period, zone);
        for (const f of p.features) {
          rows.push([period, p.plan?.key ?? '-', truncateCell(f.featureKey), g(f.used), g(f.overage), g(f.overageAmount), '']);
          // A feature priced by dimension: a row per value under it.
          for (const v of f.values ?? []) rows.push([period, p.plan?.key ?? '-', `  ${f.dimension}=${truncateCell(v.value)}`, g(v.used), g(v.overage), g(v.overageAmount), '']);
        }
        rows.push([period, p.plan?.key ?? '-', `total (${p.currency})`, '', '', g(p.totalOverageAmount), g(p.totalAmount)]);
      }
      printLine(formatTable(['period', 'plan', 'feature', 'used', 'overage', 'amount', 'invoice total'], rows));
    });
}
