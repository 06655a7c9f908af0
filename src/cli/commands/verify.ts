import type { Command } from 'commander';
import { EXIT } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { formatTable, printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('verify')
    .description('check the money invariants of every invoice; exit 1 listing the violations')
    .action(async (_opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { verifyInvoices } = await import('../../invoice/verify.js');
      const r = await withDb(ctx, (db) => verifyInvoices(db));
      if (!r.ok) process.exitCode = EXIT.failure;
      if (ctx.json) {
        printJson(r);
        return;
      }
      if (r.ok) {
        printLine(`ok: ${r.invoices} invoice(s), ${r.lines} line(s) checked, no violations`);
        return;
      }
      printLine(
        formatTable(
          ['check', 'tenant', 'invoice', 'line', 'problem'],
          r.violations.map((v) => [v.check, v.tenantId ?? '', v.invoice ?? '', v.line ?? '', v.message]),
        ),
      );
      printLine(`${r.violations.length} violation(s) in ${r.invoices} invoice(s), ${r.lines} line(s)`);
    });
}
