import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('overage')
    .description('rate usage summaries into charges (included allowance, pricing model, minimum/maximum)')
    .option('--tenant <id>', 'only this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { runOverage } = await import('../../rate/overage.js');
      const { periodToJson, toIso } = await import('../../domain/period.js');
      const charges: unknown[] = [];
      const result = await withDb(ctx, (db) =>
        runOverage(db, {
          now: ctx.now,
          tenantId: opts.tenant,
          // Collected only for --json: a human run prints counts, whatever the volume.
          onCharge: ctx.json
            ? (c) =>
                charges.push({
                  tenantId: c.tenantId,
                  featureKey: c.featureKey,
                  period: periodToJson({ start: c.periodStart, end: c.periodEnd }),
                  planKey: c.planKey,
                  planVersion: c.planVersion,
                  currency: c.currency,
                  used: c.used,
                  included: c.included,
                  billable: c.billable,
                  amountPrecise: c.amountPrecise,
                  amount: c.amount,
                  amountMinor: c.amountMinor,
                  isExceeded: c.isExceeded,
                  hardStop: c.hardStop,
                  priceSnapshot: c.priceSnapshot,
                  lines: c.lines,
                  ratedAt: toIso(c.ratedAt),
                })
            : undefined,
        }),
      );
      if (ctx.json) printJson({ ...result, charges });
      else {
        printLine(
          `rated ${result.rated} charge(s): ${result.minimums} minimum spend without usage, ` +
            `${result.unrated} unpriced (no subscription or feature not in plan)` +
            (result.removed ? `; removed ${result.removed} minimum charge(s) no longer owed` : ''),
        );
      }
    });
}
