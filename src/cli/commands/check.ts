import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('check')
    .description('can TENANT use FEATURE now? exit 0 when allowed, 3 when denied (fails closed)')
    .argument('<tenant>', 'tenant id')
    .argument('<feature>', 'feature key')
    .option('--quantity <n>', 'units the request would use', '1')
    .option('--dimension <value>', "a feature priced by dimension: the value of its events' field to check (its own entitlement)")
    .action(async (tenantId: string, featureKey: string, opts: { quantity: string; dimension?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { checkEntitlement } = await import('../../entitlements/check.js');
      const { prepaidCredit } = await import('../../subscriptions/credits.js');
      const { r, credits } = await withDb(ctx, async (db) => {
        const r = await checkEntitlement(db, { tenantId, featureKey, quantity: opts.quantity, ...(opts.dimension !== undefined ? { dimension: opts.dimension } : {}) }, { now: ctx.now });
        // The JSON adds the prepaid balance (DESIGN.md §13) for callers that show it beside the verdict.
        return { r, credits: ctx.json ? await prepaidCredit(db.knex, tenantId, ctx.now) : null };
      });
      if (ctx.json) {
        printJson({ ...r, grants: r.grants ?? [], credits });
      } else {
        const terms = [`used ${r.used}`];
        if (r.grants) terms.push(`with ${r.grants.length} unit grant${r.grants.length === 1 ? '' : 's'} (${r.grants.map((g) => `${g.id} ${g.remaining} left`).join(', ')})`);
        if (r.limit !== null) terms.push(`limit ${r.limit}`, `remaining ${r.remaining}`);
        else if (r.allowed) terms.push('unlimited');
        if (r.hardStop) terms.push('hard stop');
        const what = r.dimension ? `${featureKey} (${r.dimension.field} ${r.dimension.value})` : featureKey;
        printLine(`${r.allowed ? 'allowed' : 'denied'}: ${tenantId} ${what} x${opts.quantity}: ${r.reason.replace(/_/g, ' ')} (${terms.join(', ')})`);
      }
      // 3 = denied (DESIGN.md §6), so `if billing check ...` fails closed.
      process.exitCode = r.allowed ? ExitCode.Ok : ExitCode.Partial;
    });
}
