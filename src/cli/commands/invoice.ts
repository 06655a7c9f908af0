import type { Command } from 'commander';
import { displayInstant } from '../../domain/period.js';
import { invoiceTotalsLines, type Invoice, type InvoiceStatus, type InvoiceSummary } from '../../invoice/types.js';
import { oneOf } from '../options.js';
import { buildContext, withDb, type CliContext } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';
import { formatPeriod } from '../../format/period.js';

const day = (t: number) => displayInstant(t).replace(/T.*/, '');

function invoicesTable(list: Array<Invoice | InvoiceSummary>): string {
  return formatTable(
    ['number', 'id', 'tenant', 'period', 'status', 'total', 'currency', 'lines'],
    list.map((i) => [
      i.number, i.id, i.tenantId, formatPeriod(i.period), i.status, i.total, i.currency,
      'lines' in i ? i.lines.length : i.lineCount,
    ]),
  );
}

function printInvoice(inv: Invoice): void {
  printLine(`${inv.number}  ${inv.status}  ${inv.total} ${inv.currency}`);
  printLine(`  id ${inv.id}, tenant ${inv.tenantId}, subscription ${inv.subscriptionId}`);
  printLine(`  period ${formatPeriod(inv.period)}${inv.billingReason === 'threshold' ? ' (threshold invoice: usage so far)' : ''}`);
  printLine(`  issued ${day(inv.issuedAt)}, due ${day(inv.dueAt)}`);
  if (inv.voidedAt !== null) printLine(`  voided ${displayInstant(inv.voidedAt)}: ${inv.voidReason ?? ''}`);
  if (inv.paidAt !== null) printLine(`  paid ${displayInstant(inv.paidAt)}${inv.paymentRef ? ` (${inv.paymentRef})` : ''}`);
  if (inv.uncollectibleAt !== null) printLine(`  uncollectible since ${displayInstant(inv.uncollectibleAt)}`);
  if (inv.supersedes) printLine(`  reissues ${inv.supersedes}`);
  printLine('');
  printLine(
    formatTable(
      ['#', 'kind', 'description', 'quantity', 'unit price', 'amount'],
      inv.lines.map((l) => [l.lineNo, l.kind, l.description, l.quantity, l.unitPrice, l.amount]),
    ),
  );
  printLine('');
  for (const l of invoiceTotalsLines(inv)) printLine(l);
}

export function register(program: Command): void {
  const invoice = program.command('invoice').description('close billing periods into invoices; list, show, finalize, void, export');
  registerInvoiceGenerate(invoice);
  registerInvoiceList(invoice);
  registerInvoiceShow(invoice);
  registerInvoicePreview(invoice);
  registerInvoiceFinalize(invoice);
  registerInvoiceVoid(invoice);
  registerInvoiceExport(invoice);
}

function registerInvoiceGenerate(invoice: Command): void {
  invoice
    .command('generate')
    .description('invoice every subscription period that has ended (per --now) and has none yet')
    .option('--tenant <id>', 'only this tenant')
    .option('--finalize', 'issue the invoices as open (immutable) instead of draft')
    .option('--dry-run', 'show what would be invoiced; write nothing (number and id show as "(new)", in --json too)')
    .action(async (opts: { tenant?: string; finalize?: boolean; dryRun?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { generateInvoices } = await import('../../invoice/generate.js');
      const r = await withDb(ctx, (db) =>
        generateInvoices(db, {
          now: ctx.now,
          actor: ctx.actor,
          tenantId: opts.tenant,
          finalize: opts.finalize,
          dryRun: opts.dryRun,
          dueDays: ctx.invoiceDueDays(),
        }),
      );
      if (ctx.json) {
        const { invoiceToJson } = await import('../../invoice/types.js');
        printJson({ dryRun: Boolean(opts.dryRun), created: r.created.map(invoiceToJson), skipped: r.skipped });
        return;
      }
      if (r.created.length > 0) printLine(invoicesTable(r.created));
      const verb = opts.dryRun ? 'would create' : 'created';
      const skipped = r.skipped ? `; ${r.skipped} period(s) invoiced concurrently by another run` : '';
      printLine(`${verb} ${r.created.length} invoice(s)${skipped}`);
    });
}

function registerInvoiceList(invoice: Command): void {
  invoice
    .command('list')
    .description('invoices with their totals (--json includes the lines)')
    .option('--tenant <id>', 'only this tenant')
    .option('--status <status>', 'draft | open | paid | void | uncollectible')
    .action(async (opts: { tenant?: string; status?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { listInvoices } = await import('../../invoice/repository.js');
      const list = await withDb(ctx, (db) => listInvoices(db, { tenantId: opts.tenant, status: opts.status as InvoiceStatus | undefined }));
      if (ctx.json) {
        const { invoiceToJson } = await import('../../invoice/types.js');
        printJson(list.map(invoiceToJson));
      } else if (list.length === 0) printLine('no invoices');
      else printLine(invoicesTable(list));
    });
}

function registerInvoiceShow(invoice: Command): void {
  invoice
    .command('show')
    .description('one invoice and its lines')
    .argument('<id>', 'invoice id or number (INV-000123, any case)')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { getInvoice } = await import('../../invoice/repository.js');
      const inv = await withDb(ctx, (db) => getInvoice(db, id));
      if (ctx.json) {
        const { invoiceToJson } = await import('../../invoice/types.js');
        printJson(invoiceToJson(inv));
      } else printInvoice(inv);
    });
}

function registerInvoicePreview(invoice: Command): void {
  invoice
    .command('preview')
    .description("the invoice the tenant's current period would get if it closed now (writes nothing)")
    .argument('<tenant>', 'tenant id')
    .action(async (tenantId: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { previewInvoice } = await import('../../invoice/generate.js');
      const inv = await withDb(ctx, (db) => previewInvoice(db, { now: ctx.now, tenantId, dueDays: ctx.invoiceDueDays() }));
      if (ctx.json) {
        const { invoiceToJson } = await import('../../invoice/types.js');
        printJson(inv && invoiceToJson(inv));
      } else if (!inv) printLine(`tenant ${tenantId} has no subscription at ${displayInstant(ctx.now)}: nothing to invoice`);
      else printInvoice(inv);
    });
}

function registerInvoiceFinalize(invoice: Command): void {
  invoice
    .command('finalize')
    .description('issue a draft: open, immutable, due after INVOICE_DUE_DAYS (7)')
    .argument('<id>', 'invoice id or number (any case)')
    .action(async (id: string, _opts, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { finalizeInvoice } = await import('../../invoice/lifecycle.js');
      const r = await withDb(ctx, (db) => finalizeInvoice(db, id, { now: ctx.now, actor: ctx.actor, dueDays: ctx.invoiceDueDays() }));
      await printTransition(ctx, r, `finalized, due ${day(r.invoice.dueAt)}`);
    });
}

function registerInvoiceVoid(invoice: Command): void {
  invoice
    .command('void')
    .description('void a draft or unpaid invoice; `invoice generate` then reissues the period under a new number')
    .argument('<id>', 'invoice id or number (any case)')
    .requiredOption('--reason <text>', 'why (kept on the invoice and in the audit log)')
    .action(async (id: string, opts: { reason: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { voidInvoice } = await import('../../invoice/lifecycle.js');
      const r = await withDb(ctx, (db) => voidInvoice(db, id, { now: ctx.now, actor: ctx.actor, reason: opts.reason }));
      await printTransition(ctx, r, 'voided');
    });
}

function registerInvoiceExport(invoice: Command): void {
  invoice
    .command('export')
    .description('one invoice as JSON, CSV or a printable self-contained HTML page')
    .argument('<id>', 'invoice id or number (any case)')
    .option('--format <format>', 'json | csv | html', 'json')
    .option('--out <file>', 'write to this file instead of stdout')
    .action(async (id: string, opts: { format: string; out?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { EXPORT_FORMATS, renderInvoice } = await import('../../invoice/export.js');
      oneOf(opts.format, '--format', EXPORT_FORMATS);
      const { getInvoice } = await import('../../invoice/repository.js');
      const { loadTenant } = await import('../../subscriptions/repository.js');
      const { sellerDetails } = await import('../../invoice/seller.js');
      const { inv, tenant } = await withDb(ctx, async (db) => {
        const inv = await getInvoice(db, id);
        return { inv, tenant: await loadTenant(db.knex, inv.tenantId) };
      });
      const text = renderInvoice(inv, opts.format, { tenantName: tenant?.name ?? null, seller: sellerDetails(process.env, ctx.seller()) });
      if (!opts.out) {
        process.stdout.write(text);
        return;
      }
      const { writeFileSync } = await import('node:fs');
      writeFileSync(opts.out, text);
      if (ctx.json) printJson({ invoice: inv.number, format: opts.format, out: opts.out, bytes: Buffer.byteLength(text) });
      else printLine(`wrote ${inv.number} as ${opts.format} to ${opts.out}`);
    });
}

async function printTransition(ctx: CliContext, r: { invoice: Invoice; changed: boolean }, done: string): Promise<void> {
  if (ctx.json) {
    const { invoiceToJson } = await import('../../invoice/types.js');
    printJson({ changed: r.changed, invoice: invoiceToJson(r.invoice) });
  } else printLine(r.changed ? `${r.invoice.number} ${done}` : `${r.invoice.number} is already ${r.invoice.status}; nothing to do`);
}
