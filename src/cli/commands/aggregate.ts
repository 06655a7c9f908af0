import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';

interface AggregateFlags {
  tenant?: string;
  period?: string;
  full?: boolean;
}

export function register(program: Command): void {
  program
    .command('aggregate')
    .description('summarize usage per tenant × feature × billing period (incremental; --full rebuilds)')
    .option('--tenant <id>', "rebuild this tenant's summaries only")
    .option('--period <period>', 'recompute one period per tenant: current | previous | YYYY-MM (the period starting that month)')
    .option('--full', 'rebuild every summary from all events')
    .action(async (flags: AggregateFlags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { runAggregate } = await import('../../aggregate/aggregate.js');
      const { checkPeriodSpec } = await import('../../aggregate/periods.js');
      const period = flags.period === undefined ? undefined : checkPeriodSpec(flags.period);
      const started = performance.now();
      const { evaluateAlerts } = await import('../../alerts/evaluate.js');
      const { firingLine, firingToJson } = await import('./alert.js');
      const { r, fired, seconds } = await withDb(ctx, async (db) => {
        const r = await runAggregate(db, { now: ctx.now, tenantId: flags.tenant, full: flags.full, period });
        const seconds = (performance.now() - started) / 1000;
        // Alert rules are evaluated on the usage just summarised (DESIGN.md §15).
        return { r, seconds, fired: await evaluateAlerts(db, { now: ctx.now, tenantId: flags.tenant }) };
      });
      if (ctx.json) printJson({ ...r, seconds: Number(seconds.toFixed(3)), alerts: fired.map(firingToJson) });
      else {
        const scope = period ? `period ${period}` : flags.tenant ? `tenant ${flags.tenant}` : r.full ? 'full rebuild' : 'incremental';
        printLine(`aggregated (${scope}): ${r.groups} summaries from ${r.events} events in ${seconds.toFixed(2)}s; watermark seq ${r.watermark ?? 'none'}`);
        for (const f of fired) printLine(firingLine(f));
      }
      for (const o of r.outOfRange) {
        printErr(`warning: tenant ${o.tenantId}: skipped ${o.events} event(s) dated outside 1970-01-01..9999-12-31 and counted in no period; delete or fix them`);
      }
    });
}
