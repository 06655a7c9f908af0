import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('verify')
    .description('check the money invariants of every invoice; exit 1 listing the violations')
    .option('--stripe', "also compare every invoice synced to Stripe (lines, total, amount due) with Stripe's copy")
    .action(async (opts: { stripe?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { verifyInvoices } = await import('../../invoice/verify.js');
      const r = await withDb(ctx, async (db) => {
        const local = await verifyInvoices(db);
        if (!opts.stripe) return { ...local, stripe: undefined };
        const { stripeConfigFromEnv } = await import('../../stripe/config.js');
        const { verifyAgainstStripe } = await import('../../stripe/reconcile.js');
        const stripe = await verifyAgainstStripe(db, stripeConfigFromEnv(ctx.env));
        return { ...local, ok: local.ok && stripe.drift.length === 0, stripe };
      });
      if (!r.ok) process.exitCode = ExitCode.Failure;
      if (ctx.json) {
        printJson(r);
        return;
      }
      const drift = r.stripe?.drift ?? [];
      const against = r.stripe ? `; ${r.stripe.invoices} invoice(s) compared with Stripe` : '';
      if (r.violations.length === 0) {
        if (drift.length === 0) {
          printLine(`ok: ${r.invoices} invoice(s), ${r.lines} line(s) checked, no violations${against ? `${against}, no drift` : ''}`);
          return;
        }
      } else {
        printLine(
          formatTable(
            ['check', 'tenant', 'invoice', 'line', 'problem'],
            r.violations.map((v) => [v.check, v.tenantId ?? '', v.invoice ?? '', v.line ?? '', v.message]),
          ),
        );
        printLine(`${r.violations.length} violation(s) in ${r.invoices} invoice(s), ${r.lines} line(s)`);
      }
      if (r.stripe) {
        for (const d of drift) printLine(`drift: ${d.message}`);
        printLine(`${drift.length} difference(s) from Stripe in ${r.stripe.invoices} invoice(s)`);
      }
    });
}
