import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

interface SetOptions {
  included?: string;
  unitPrice?: string;
  hardStop?: boolean;
  limit?: string;
}

export function register(program: Command): void {
  const quota = program.command('quota').description("per-tenant overrides of a plan feature's terms");

  quota
    .command('set')
    .description('override included units, unit price, hard stop or limit for one tenant and feature (others kept)')
    .argument('<tenant>', 'tenant id')
    .argument('<feature>', 'feature key')
    .option('--included <n>', 'included units per period, or "unlimited"')
    .option('--unit-price <price>', 'overage price per unit (per_unit pricing), or "plan" to use the plan\'s again')
    .option('--hard-stop', 'deny usage beyond the limit')
    .option('--no-hard-stop', 'allow usage beyond the limit (billed as overage)')
    .option('--limit <n>', 'hard-stop limit, or "default" (included)')
    .action(async (tenantId: string, featureKey: string, opts: SetOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { setQuota } = await import('../../subscriptions/quota.js');
      const input = {
        tenantId,
        featureKey,
        included: opts.included === undefined ? undefined : opts.included === 'unlimited' ? null : opts.included,
        unitPrice: opts.unitPrice === undefined ? undefined : opts.unitPrice === 'plan' ? null : opts.unitPrice,
        hardStop: opts.hardStop,
        limit: opts.limit === undefined ? undefined : opts.limit === 'default' ? null : opts.limit,
      };
      const o = await withDb(ctx, (db) => setQuota(db, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(o);
      else printLine(`quota for ${tenantId} ${featureKey}: ${describe(o)}`);
    });

  quota
    .command('list')
    .description("a tenant's quota overrides")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listQuotas } = await import('../../subscriptions/quota.js');
      const rows = await withDb(ctx, (db) => listQuotas(db, tenantId));
      if (ctx.json) {
        printJson(rows);
        return;
      }
      if (rows.length === 0) {
        printLine(`no quota overrides for ${tenantId}`);
        return;
      }
      const cell = (v: string | boolean | null | undefined, none = 'plan') => (v === undefined ? none : v === null ? 'unlimited' : String(v));
      printLine(
        formatTable(
          ['feature', 'included', 'unitPrice', 'hardStop', 'limit'],
          rows.map((o) => [o.featureKey, cell(o.included), o.unitPrice ?? 'plan', cell(o.hardStop ?? undefined), o.limit ?? 'plan']),
        ),
      );
    });
}

function describe(o: { included?: string | null; unitPrice?: string | null; hardStop?: boolean | null; limit?: string | null }): string {
  const parts: string[] = [];
  if (o.included !== undefined) parts.push(`included ${o.included ?? 'unlimited'}`);
  if (o.unitPrice) parts.push(`unit price ${o.unitPrice}`);
  if (o.hardStop !== undefined && o.hardStop !== null) parts.push(o.hardStop ? 'hard stop' : 'no hard stop');
  if (o.limit) parts.push(`limit ${o.limit}`);
  return parts.length ? parts.join(', ') : 'plan terms';
}
