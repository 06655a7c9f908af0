import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  const tenant = program.command('tenant').description('create and list tenants (the customers being billed)');

  tenant
    .command('create')
    .description('create a tenant')
    .argument('<id>', 'tenant id: no whitespace, at most 128 characters')
    .option('--name <name>', 'display name')
    .option('--currency <code>', 'ISO 4217 currency its plans must be billed in')
    .action(async (id: string, opts: { name?: string; currency?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { createTenant } = await import('../../subscriptions/tenants.js');
      const t = await withDb(ctx, (db) => createTenant(db, { id, name: opts.name, currency: opts.currency }, { now: ctx.now, actor: ctx.actor }));
      const { toIso } = await import('../../domain/period.js');
      if (ctx.json) printJson({ ...t, createdAt: toIso(t.createdAt) });
      else printLine(`created tenant ${t.id}${t.name ? ` (${t.name})` : ''}${t.currency ? `, currency ${t.currency}` : ''}`);
    });

  tenant
    .command('list')
    .description('every tenant with its current subscription, plan and status')
    .action(async (_opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listTenantOverview } = await import('../../subscriptions/tenants.js');
      const { toIso } = await import('../../domain/period.js');
      const rows = await withDb(ctx, (db) => listTenantOverview(db, { now: ctx.now }));
      if (ctx.json) {
        printJson(rows.map((r) => ({ ...r, createdAt: toIso(r.createdAt) })));
        return;
      }
      if (rows.length === 0) {
        printLine('no tenants (create one with `billing tenant create ID`)');
        return;
      }
      printLine(
        formatTable(
          ['tenant', 'name', 'currency', 'subscription', 'plan', 'status'],
          rows.map((r) => [r.id, r.name, r.currency, r.subscriptionId, r.planKey ? `${r.planKey} v${r.planVersion}` : null, r.status]),
        ),
      );
    });
}
