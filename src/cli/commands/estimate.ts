import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { Decimal, dec } from '../../domain/decimal.js';
import { checkTimeZone, formatPeriod } from '../../format/period.js';
import { formatTable, groupDigits as g, truncateCell } from '../../format/table.js';
import type { FeatureEstimate, TenantEstimate } from '../../report/estimate.js';

/** A projection as text: whole units for counts and for whole-number usage, else 2 decimals (JSON keeps the micro-unit). */
function shownQuantity(f: FeatureEstimate): string {
  const whole = f.aggregation === 'count' || dec(f.used).isInteger();
  return g(dec(f.projectedUsed).toDecimalPlaces(whole ? 0 : 2, Decimal.ROUND_HALF_UP).toFixed());
}

function note(f: FeatureEstimate): string {
  if (f.projectedOverage === '0' || !dec(f.projectedOverageAmount).isZero()) return '';
  return f.hardStop ? 'hard stop: denied past the limit, not billed' : 'no overage price: not billed';
}

/** A discount total (positive) as what it takes off. */
const off = (amount: string) => (dec(amount).isZero() ? amount : `-${g(amount)}`);

function invoiceTable(e: TenantEstimate): string {
  const [now, end] = [e.invoice!, e.projectedInvoice!];
  const rows = [
    ['subtotal', g(now.subtotal), g(end.subtotal)],
    ...(now.discounts.length || end.discounts.length ? [['discounts', off(now.discountTotal), off(end.discountTotal)]] : []),
    ...(now.taxes.length ? [[`taxes (${now.taxes.map((t) => `${t.name} ${t.rate}%${t.inclusive ? ' incl.' : ''}`).join(', ')})`, g(now.taxTotal), g(end.taxTotal)]] : []),
    [`total (${e.currency})`, g(now.total), g(end.total)],
  ];
  return formatTable(['invoice (before prepaid credit)', 'if closed now', 'projected'], rows);
}

export function register(program: Command): void {
  program
    .command('estimate')
    .description("a tenant's projected usage, overage and invoice total at the end of the current period")
    .argument('<tenant>', 'tenant id')
    .option('--tz <zone>', 'show the period in this time zone (IANA name, e.g. Europe/Berlin); JSON stays UTC', 'UTC')
    .action(async (tenantId: string, flags: { tz: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const zone = checkTimeZone(flags.tz);
      const { buildEstimate } = await import('../../report/estimate.js');
      const e = await withDb(ctx, (db) => buildEstimate(db, { now: ctx.now, tenantId }));
      if (ctx.json) {
        printJson(e);
        return;
      }
      const pct = (Number(e.elapsed) * 100).toFixed(2);
      printLine(`${e.tenantId}  ${formatPeriod(e.period, zone)}  (${e.currency}), ${pct}% elapsed at ${e.asOf}`);
      printLine('sum/count features: projected at the run rate so far (used × period length / elapsed);');
      printLine('max/min/last/unique features: projected at their current value.');
      const rows = e.features.map((f) => [
        truncateCell(f.featureKey), g(f.used), f.projection.replace('_', ' '), shownQuantity(f), g(f.overageAmount), g(f.projectedOverageAmount), note(f),
      ]);
      const columns = ['feature', 'used', 'projection', 'projected', 'amount', 'projected amount', 'note'];
      const withNotes = rows.some((r) => r[6] !== '');
      printLine(formatTable(withNotes ? columns : columns.slice(0, 6), withNotes ? rows : rows.map((r) => r.slice(0, 6))));
      printLine(`overage so far: ${g(e.totalOverageAmount)} ${e.currency}; projected at period end: ${g(e.projectedTotalOverageAmount)} ${e.currency}`);
      if (e.invoice && e.projectedInvoice) {
        printLine('');
        printLine(invoiceTable(e));
      }
    });
}
