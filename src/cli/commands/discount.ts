import type { Command } from 'commander';
import { DISCOUNT_DURATIONS, type Discount } from '../../domain/discount.js';
import { BillingError } from '../../domain/errors.js';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import { buildContext, withDb } from '../context.js';
import { oneOf, optionalInstant, optionalWholeNumber, repeatable } from '../options.js';
import { printJson, printLine } from '../output.js';

interface AddOptions {
  percent?: string;
  amount?: string;
  duration?: string;
  periods?: string;
  feature?: string[];
  start?: string;
  coupon?: string;
}

function discountToJson(d: Discount) {
  return {
    id: d.id,
    tenant: d.tenantId,
    percent: d.percent,
    amount: d.amount,
    duration: d.duration,
    periods: d.periods,
    features: d.features,
    start: toIso(d.startsAt),
    createdAt: toIso(d.createdAt),
    removedAt: d.removedAt === null ? null : toIso(d.removedAt),
    uses: d.uses,
  };
}

export function register(program: Command): void {
  const discount = program.command('discount').description('per-tenant discounts taken off invoices (percentages, then fixed amounts)');

  discount
    .command('add')
    .description('add a discount to a tenant; prints its id')
    .argument('<tenant>', 'tenant id')
    .option('--percent <p>', 'percentage off (above 0, at most 100)')
    .option('--amount <x>', "fixed amount off, in the invoice's currency")
    .option('--duration <d>', `${DISCOUNT_DURATIONS.join(' | ')} (default once)`)
    .option('--periods <n>', 'with --duration repeating: how many invoices')
    .option('--feature <key>', "only this feature's lines (repeatable)", repeatable)
    .option('--start <iso>', 'applies to invoices whose period ends after this (default: now)')
    .option('--coupon <key>', "the catalog's coupon of this key (instead of --percent/--amount/--duration/--periods/--feature)")
    .action(async (tenantId: string, opts: AddOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { addDiscount } = await import('../../subscriptions/discounts.js');
      if (opts.coupon !== undefined) {
        const own = [opts.percent && '--percent', opts.amount && '--amount', opts.duration && '--duration', opts.periods && '--periods', opts.feature && '--feature'].filter(Boolean);
        if (own.length > 0) throw new BillingError('usage', `--coupon sets the discount's terms: drop ${own.join(', ')}`);
        const key = opts.coupon;
        const start = optionalInstant(opts.start, '--start');
        const d = await withDb(ctx, async (db) => {
          const { loadCoupon } = await import('../../catalog/repository.js');
          const c = await loadCoupon(db.knex, key);
          if (!c) throw new BillingError('not_found', `the catalog has no coupon "${key}" (see \`billing catalog show\`)`);
          const terms = { percent: c.percent ?? undefined, amount: c.amount ?? undefined, duration: c.duration, periods: c.periods ?? undefined, features: c.features ?? undefined };
          return addDiscount(db, { tenantId, ...terms, start }, { now: ctx.now, actor: ctx.actor });
        });
        if (ctx.json) printJson(discountToJson(d));
        else printLine(d.id);
        return;
      }
      const input = {
        tenantId,
        percent: opts.percent,
        amount: opts.amount,
        duration: opts.duration === undefined ? undefined : oneOf(opts.duration, '--duration', DISCOUNT_DURATIONS),
        periods: optionalWholeNumber(opts.periods, '--periods', { min: 1, max: 1000 }),
        features: opts.feature,
        start: optionalInstant(opts.start, '--start'),
      };
      const d = await withDb(ctx, (db) => addDiscount(db, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(discountToJson(d));
      else printLine(d.id);
    });

  discount
    .command('list')
    .description("a tenant's discounts, removed ones included")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listDiscounts } = await import('../../subscriptions/discounts.js');
      const rows = await withDb(ctx, (db) => listDiscounts(db, tenantId));
      if (ctx.json) {
        printJson(rows.map(discountToJson));
        return;
      }
      if (rows.length === 0) {
        printLine(`no discounts for ${tenantId}`);
        return;
      }
      printLine(
        formatTable(
          ['id', 'off', 'duration', 'features', 'start', 'uses', 'status'],
          rows.map((d) => [
            d.id,
            d.percent !== null ? `${d.percent}%` : d.amount!,
            d.duration === 'repeating' ? `repeating ×${d.periods}` : d.duration,
            d.features?.join(',') ?? 'all',
            toIso(d.startsAt),
            String(d.uses),
            d.removedAt === null ? 'active' : `removed ${toIso(d.removedAt)}`,
          ]),
        ),
      );
    });

  discount
    .command('remove')
    .description('stop a discount applying to invoices generated from now on')
    .argument('<tenant>', 'tenant id')
    .argument('<id>', 'discount id')
    .action(async (tenantId: string, id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { removeDiscount } = await import('../../subscriptions/discounts.js');
      const d = await withDb(ctx, (db) => removeDiscount(db, tenantId, id, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(discountToJson(d));
      else printLine(`removed ${d.id} from ${tenantId}`);
    });
}
