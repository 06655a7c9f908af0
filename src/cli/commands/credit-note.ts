import type { Command } from 'commander';
import { toIso } from '../../domain/period.js';
import { formatTable } from '../../format/table.js';
import type { CreditNote } from '../../invoice/credit-notes.js';
import { buildContext, withDb } from '../context.js';
import { oneOf, optionalWholeNumber } from '../options.js';
import { toCsv } from '../../format/csv.js';
import { printJson, printLine } from '../output.js';

interface CreateOptions {
  amount?: string;
  line?: string;
  reason: string;
  refund?: boolean;
}

function noteToJson(n: CreditNote) {
  return {
    number: n.number,
    id: n.id,
    tenant: n.tenantId,
    invoice: n.invoiceNumber,
    line: n.lineNo,
    currency: n.currency,
    amount: n.amount,
    taxAmount: n.taxAmount,
    dueReduction: n.dueReduction,
    credited: n.credited,
    grant: n.grantId,
    refund: n.refund,
    reason: n.reason,
    createdAt: toIso(n.createdAt),
  };
}

const NOTE_COLUMNS = ['number', 'id', 'tenant', 'invoice', 'line', 'currency', 'amount', 'taxAmount', 'dueReduction', 'credited', 'grant', 'refund', 'reason', 'createdAt'] as const;

function outcome(n: CreditNote): string {
  const parts = [];
  if (n.dueReduction !== '0' && !/^0(\.0+)?$/.test(n.dueReduction)) parts.push(`amount due −${n.dueReduction}`);
  if (!/^0(\.0+)?$/.test(n.credited)) parts.push(n.refund ? `${n.credited} to refund` : `${n.credited} as prepaid credit ${n.grantId}`);
  return parts.join(', ');
}

export function register(program: Command): void {
  const cn = program.command('credit-note').description('credit notes: amounts given back on open or paid invoices');

  cn.command('create')
    .description('credit an open or paid invoice, by amount or by line; prints its number')
    .argument('<invoice>', 'invoice number (any case) or id')
    .option('--amount <x>', 'gross amount to credit (with --line: at most that line\'s share)')
    .option('--line <n>', "credit this line's share of the total (discounts and taxes pro rata)")
    .requiredOption('--reason <text>', 'why, kept with the note')
    .option('--refund', 'on a paid invoice: mark the amount for refund instead of prepaid credit')
    .action(async (invoice: string, opts: CreateOptions, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { createCreditNote } = await import('../../invoice/credit-notes.js');
      const input = { invoice, amount: opts.amount, line: optionalWholeNumber(opts.line, '--line', { min: 1 }), reason: opts.reason, refund: opts.refund === true };
      const n = await withDb(ctx, (db) => createCreditNote(db, input, { now: ctx.now, actor: ctx.actor }));
      if (ctx.json) printJson(noteToJson(n));
      else printLine(`${n.number}  ${n.invoiceNumber}  ${n.amount} ${n.currency}  ${outcome(n)}`);
    });

  cn.command('list')
    .description('credit notes, oldest first')
    .option('--tenant <id>', 'only this tenant')
    .action(async (opts: { tenant?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listCreditNotes } = await import('../../invoice/credit-notes.js');
      const rows = await withDb(ctx, (db) => listCreditNotes(db, { tenantId: opts.tenant }));
      if (ctx.json) {
        printJson(rows.map(noteToJson));
        return;
      }
      if (rows.length === 0) {
        printLine('no credit notes');
        return;
      }
      printLine(
        formatTable(
          ['number', 'tenant', 'invoice', 'amount', 'tax', 'outcome', 'reason'],
          rows.map((n) => [n.number, n.tenantId, n.invoiceNumber, `${n.amount} ${n.currency}`, n.taxAmount, outcome(n), n.reason]),
        ),
      );
    });

  cn.command('export')
    .description('every credit note (or one tenant\'s) for the books, as CSV or JSON, like invoice export')
    .option('--tenant <id>', 'only this tenant')
    .option('--format <format>', 'csv | json', 'csv')
    .option('--out <file>', 'write to FILE instead of stdout')
    .action(async (opts: { tenant?: string; format: string; out?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      oneOf(opts.format, '--format', ['csv', 'json']);
      const { listCreditNotes } = await import('../../invoice/credit-notes.js');
      const rows = (await withDb(ctx, (db) => listCreditNotes(db, { tenantId: opts.tenant }))).map(noteToJson);
      const columns = NOTE_COLUMNS;
      const text = opts.format === 'json' ? `${JSON.stringify(rows, null, 2)}\n` : toCsv([...columns], rows.map((r) => columns.map((c) => r[c])));
      if (!opts.out) {
        process.stdout.write(text);
        return;
      }
      const { writeFileSync } = await import('node:fs');
      writeFileSync(opts.out, text);
      if (ctx.json) printJson({ creditNotes: rows.length, format: opts.format, out: opts.out, bytes: Buffer.byteLength(text) });
      else printLine(`wrote ${rows.length} credit note(s) as ${opts.format} to ${opts.out}`);
    });

  cn.command('show')
    .description('one credit note')
    .argument('<number>', 'CN-000001 (any case) or its id')
    .action(async (number: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { getCreditNote } = await import('../../invoice/credit-notes.js');
      const n = await withDb(ctx, (db) => getCreditNote(db, number));
      if (ctx.json) {
        printJson(noteToJson(n));
        return;
      }
      printLine(`${n.number}  ${toIso(n.createdAt)}`);
      printLine(`  invoice   ${n.invoiceNumber}${n.lineNo === null ? '' : ` line ${n.lineNo}`} (${n.tenantId})`);
      printLine(`  amount    ${n.amount} ${n.currency} (of which tax ${n.taxAmount})`);
      printLine(`  outcome   ${outcome(n)}`);
      printLine(`  reason    ${n.reason}`);
    });
}
