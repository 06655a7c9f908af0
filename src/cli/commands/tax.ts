import type { Command } from 'commander';
import { formatTable } from '../../format/table.js';
import { BillingError } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';

interface SetOptions {
  name?: string;
  rate?: string;
  inclusive?: boolean;
  none?: boolean;
}

export function register(program: Command): void {
  const tax = program.command('tax').description("a tenant's tax rates (else the catalog's default \"taxes\")");

  tax
    .command('set')
    .description('add or replace a tax rate of a tenant, or tax it at nothing with --none')
    .argument('<tenant>', 'tenant id')
    .option('--name <name>', 'the rate\'s name as printed on invoices, e.g. "VAT"')
    .option('--rate <percent>', 'percentage, e.g. 19 or 7.7')
    .option('--inclusive', 'prices already include this tax (it is shown, not added)')
    .option('--none', "no tax for this tenant, whatever the catalog's default")
    .action(async (tenantId: string, opts: SetOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      if (opts.none && (opts.name !== undefined || opts.rate !== undefined || opts.inclusive)) {
        throw new BillingError('usage', '--none takes no --name, --rate or --inclusive');
      }
      if (!opts.none && (opts.name === undefined || opts.rate === undefined)) throw new BillingError('usage', 'give --name and --rate, or --none');
      const { setTenantTax } = await import('../../subscriptions/taxes.js');
      const input = opts.none ? { none: true as const } : { name: opts.name!, rate: opts.rate!, inclusive: opts.inclusive === true };
      const t = await withDb(ctx, (db) => setTenantTax(db, tenantId, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(t);
      else printLine(t.rates.length === 0 ? `${tenantId}: no tax` : `${tenantId}: ${t.rates.map(describe).join(', ')}`);
    });

  tax
    .command('show')
    .description("the rates a tenant's invoices are taxed at, and where they come from")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { loadTenantTaxes } = await import('../../subscriptions/taxes.js');
      const t = await withDb(ctx, (db) => loadTenantTaxes(db.knex, tenantId));
      if (ctx.json) {
        printJson(t);
        return;
      }
      const from = t.source === 'tenant' ? 'its own rates' : "the catalog's default";
      if (t.rates.length === 0) {
        printLine(`${tenantId}: no tax (${from})`);
        return;
      }
      printLine(`${tenantId}: ${from}`);
      printLine(formatTable(['name', 'rate', 'kind'], t.rates.map((r) => [r.name, `${r.rate}%`, r.inclusive ? 'inclusive' : 'exclusive'])));
    });
}

function describe(r: { name: string; rate: string; inclusive: boolean }): string {
  return `${r.name} ${r.rate}%${r.inclusive ? ' inclusive' : ''}`;
}
