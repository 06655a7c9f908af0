import type { Command } from 'commander';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import { grantToJson } from '../../subscriptions/json.js';
import { buildContext, withDb } from '../context.js';
import { oneOf, optionalInstant, optionalWholeNumber } from '../options.js';
import { printJson, printLine } from '../output.js';

interface GrantOptions {
  priority?: string;
  effective?: string;
  expires?: string;
  recurring?: string;
  name?: string;
}

export function register(program: Command): void {
  const credit = program.command('credit').description('prepaid credits: grants taken off invoice totals after tax');

  credit
    .command('grant')
    .description("grant prepaid credit in the tenant's currency; prints its id")
    .argument('<tenant>', 'tenant id')
    .argument('<amount>', "amount in the tenant's currency, e.g. 50.00")
    .option('--priority <n>', 'lower is used first (default 0); then the earliest expiry')
    .option('--effective <iso>', 'usable on invoices issued from this instant (default: now)')
    .option('--expires <iso>', 'what is left lapses at this instant')
    .option('--recurring <every>', 'monthly: renews with the full amount each month; the rest lapses')
    .option('--name <text>', 'shown on invoices (default "Prepaid credit")')
    .action(async (tenantId: string, amount: string, opts: GrantOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { grantCredit } = await import('../../subscriptions/credits.js');
      const input = {
        tenantId,
        amount,
        priority: optionalWholeNumber(opts.priority, '--priority', { min: 0, max: 1000 }),
        effective: optionalInstant(opts.effective, '--effective'),
        expires: optionalInstant(opts.expires, '--expires'),
        recurring: opts.recurring === undefined ? undefined : oneOf(opts.recurring, '--recurring', ['monthly'] as const),
        name: opts.name,
      };
      const g = await withDb(ctx, (db) => grantCredit(db, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(grantToJson(g));
      else printLine(g.id);
    });

  credit
    .command('list')
    .description("a tenant's credit ledger: grants, uses by invoices, expiries and voids")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { creditLedger } = await import('../../subscriptions/credits.js');
      const rows = await withDb(ctx, (db) => creditLedger(db, tenantId, ctx.now));
      if (ctx.json) {
        printJson(rows.map((e) => ({ ...e, at: toIso(e.at) })));
        return;
      }
      if (rows.length === 0) {
        printLine(`no credits for ${tenantId}`);
        return;
      }
      printLine(
        formatTable(
          ['at', 'kind', 'grant', 'amount', 'invoice', 'name'],
          rows.map((e) => [toIso(e.at), e.kind, e.instance > 0 ? `${e.grantId} #${e.instance + 1}` : e.grantId, `${e.amount} ${e.currency}`, e.invoice ?? '', e.note]),
        ),
      );
    });

  credit
    .command('balance')
    .description("a tenant's prepaid balance now, per currency")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { creditBalance } = await import('../../subscriptions/credits.js');
      const rows = await withDb(ctx, (db) => creditBalance(db, tenantId, ctx.now));
      if (ctx.json) {
        printJson({ tenant: tenantId, at: toIso(ctx.now), balances: rows });
        return;
      }
      if (rows.length === 0) printLine(`${tenantId}: no prepaid credit`);
      for (const r of rows) printLine(`${tenantId}: ${r.balance} ${r.currency} (${r.grants} grant${r.grants === 1 ? '' : 's'} with a balance)`);
    });

  credit
    .command('void')
    .description('void a grant: what is left lapses now; what invoices used stays used')
    .argument('<tenant>', 'tenant id')
    .argument('<id>', 'grant id')
    .action(async (tenantId: string, id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { voidCredit } = await import('../../subscriptions/credits.js');
      const g = await withDb(ctx, (db) => voidCredit(db, tenantId, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(grantToJson(g));
      else printLine(`voided ${g.id} of ${tenantId}`);
    });
}
