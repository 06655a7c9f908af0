import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('estimate')
    .description("a tenant's projected usage and overage cost at the end of the current period")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _flags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { buildEstimate } = await import('../../report/estimate.js');
      const e = await withDb(ctx, (db) => buildEstimate(db, { now: ctx.now, tenantId }));
      if (ctx.json) {
        printJson(e);
        return;
      }
      const pct = (Number(e.elapsed) * 100).toFixed(2);
      printLine(`${e.tenantId}  ${e.period.start} → ${e.period.end}  (${e.currency}), ${pct}% elapsed at ${e.asOf}`);
      printLine('sum/count features: projected at the run rate so far (used × period length / elapsed);');
      printLine('max/last/unique features: projected at their current value.');
      printLine(
        formatTable(
          ['feature', 'used', 'projection', 'projected', 'amount', 'projected amount'],
          e.features.map((f) => [f.featureKey, f.used, f.projection.replace('_', ' '), f.projectedUsed, f.overageAmount, f.projectedOverageAmount]),
        ),
      );
      printLine(`overage so far: ${e.totalOverageAmount} ${e.currency}; projected at period end: ${e.projectedTotalOverageAmount} ${e.currency}`);
    });
}
