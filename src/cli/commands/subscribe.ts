import type { Command } from 'commander';
import { optionalInstant, optionalWholeNumber } from '../options.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('subscribe')
    .description("start a tenant's subscription on the current version of a plan (anniversary billing periods)")
    .argument('<tenant>', 'tenant id')
    .argument('<plan>', 'plan key')
    .option('--start <iso>', 'start and billing anchor (default: now)')
    .option('--trial-days <n>', "trial length in days (default: the plan's)")
    .action(async (tenantId: string, planKey: string, opts: { start?: string; trialDays?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { toIso } = await import('../../domain/period.js');
      const start = optionalInstant(opts.start, '--start');
      const trialDays = optionalWholeNumber(opts.trialDays, '--trial-days', { unit: 'days' });
      const { subscribe } = await import('../../subscriptions/lifecycle.js');
      const sub = await withDb(ctx, (db) => subscribe(db, { tenantId, planKey, start, trialDays }, { now: ctx.now, actor: ctx.actor }));
      const iso = (t: number | null) => (t === null ? null : toIso(t));
      if (ctx.json) {
        printJson({ ...sub, planKey, anchorAt: iso(sub.anchorAt), startedAt: iso(sub.startedAt), trialEndsAt: iso(sub.trialEndsAt), cancelAt: iso(sub.cancelAt), canceledAt: iso(sub.canceledAt) });
        return;
      }
      printLine(`subscribed ${tenantId} to ${planKey} as ${sub.id} from ${toIso(sub.startedAt)} (${sub.status}, billed per ${sub.interval} in ${sub.currency})`);
      if (sub.trialEndsAt !== null) printLine(`trial ends ${toIso(sub.trialEndsAt)}`);
    });
}
