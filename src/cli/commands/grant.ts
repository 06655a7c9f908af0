import type { Command } from 'commander';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import type { UnitGrantView } from '../../subscriptions/unit-grants.js';
import { buildContext, withDb } from '../context.js';
import { optionalInstant, optionalWholeNumber } from '../options.js';
import { printJson, printLine } from '../output.js';

interface AddOptions {
  priority?: string;
  effective?: string;
  expires?: string;
}

function grantToJson(g: UnitGrantView) {
  return {
    id: g.id,
    tenant: g.tenantId,
    feature: g.feature,
    quantity: g.quantity,
    used: g.used,
    remaining: g.remaining,
    priority: g.priority,
    effective: toIso(g.effectiveAt),
    expires: g.expiresAt === null ? null : toIso(g.expiresAt),
    voidedAt: g.voidedAt === null ? null : toIso(g.voidedAt),
  };
}

export function register(program: Command): void {
  const grant = program.command('grant').description("grants of units: top-ups of a feature's included quantity until used or expired");

  grant
    .command('add')
    .description('grant units of a metered feature on top of the plan; prints its id')
    .argument('<tenant>', 'tenant id')
    .argument('<feature>', 'metered feature key')
    .argument('<quantity>', 'units, e.g. 1000')
    .option('--priority <n>', 'lower is drawn first (default 0); then the earliest expiry, then the oldest')
    .option('--effective <iso>', 'counts in billing periods ending after this instant (default: now)')
    .option('--expires <iso>', 'not counted in billing periods starting from this instant')
    .action(async (tenantId: string, featureKey: string, quantity: string, opts: AddOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { addUnitGrant } = await import('../../subscriptions/unit-grants.js');
      const input = {
        tenantId,
        featureKey,
        quantity,
        priority: optionalWholeNumber(opts.priority, '--priority', { min: 0, max: 1000 }),
        effective: optionalInstant(opts.effective, '--effective'),
        expires: optionalInstant(opts.expires, '--expires'),
      };
      const g = await withDb(ctx, (db) => addUnitGrant(db, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(grantToJson(g));
      else printLine(g.id);
    });

  grant
    .command('list')
    .description("a tenant's grants of units: quantity, what invoices drew, what is left")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listUnitGrants } = await import('../../subscriptions/unit-grants.js');
      const rows = await withDb(ctx, (db) => listUnitGrants(db, tenantId));
      if (ctx.json) {
        printJson(rows.map(grantToJson));
        return;
      }
      if (rows.length === 0) {
        printLine(`no unit grants for ${tenantId}`);
        return;
      }
      printLine(
        formatTable(
          ['grant', 'feature', 'quantity', 'used', 'remaining', 'priority', 'effective', 'expires', 'voided'],
          rows.map((g) => [
            g.id,
            g.feature,
            g.quantity,
            g.used,
            g.remaining,
            String(g.priority),
            toIso(g.effectiveAt),
            g.expiresAt === null ? '' : toIso(g.expiresAt),
            g.voidedAt === null ? '' : toIso(g.voidedAt),
          ]),
        ),
      );
    });

  grant
    .command('void')
    .description('void a grant: it counts in no billing period starting from now; what invoices drew stays drawn')
    .argument('<tenant>', 'tenant id')
    .argument('<id>', 'grant id')
    .action(async (tenantId: string, id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { voidUnitGrant } = await import('../../subscriptions/unit-grants.js');
      const g = await withDb(ctx, (db) => voidUnitGrant(db, tenantId, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(grantToJson(g));
      else printLine(`voided ${g.id} of ${tenantId}`);
    });
}
