import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import { invoiceTotals } from '../rate/totals.js';
import type { Db } from '../storage/db.js';
import { INVOICE_STATUSES, type Invoice, type InvoiceCreditNote, type InvoiceLine, type InvoiceStatus } from './types.js';

type Q = Knex | Knex.Transaction;

const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
/** Stored JSON; unparsable text is handed back as is, for `billing verify` to report. */
function json(v: unknown): any {
  if (v === null || v === undefined || v === '') return null;
  try {
    return JSON.parse(String(v));
  } catch {
    return String(v);
  }
}

// Integer money columns come back as text so nothing is squeezed through a JS number.
function invoiceColumns(q: Q) {
  return ['*', q.raw('CAST(total_minor AS TEXT) AS total_minor_text')];
}
function lineColumns(q: Q) {
  return ['*', q.raw('CAST(amount_minor AS TEXT) AS amount_minor_text')];
}

export function invoiceFromRow(r: Record<string, any>, lines: InvoiceLine[], creditNotes: InvoiceCreditNote[] = []): Invoice {
  const derived = invoiceTotals(lines, r.currency);
  return {
    id: r.id,
    number: r.number,
    tenantId: r.tenant_id,
    subscriptionId: r.subscription_id,
    period: { start: Number(r.period_start), end: Number(r.period_end) },
    status: r.status,
    currency: r.currency,
    subtotal: r.subtotal,
    // Which discounts and taxes: from the lines; the totals are the stored columns.
    discounts: derived.discounts,
    discountTotal: r.discount_total,
    taxes: derived.taxes,
    taxTotal: r.tax_total,
    total: r.total,
    totalMinor: String(r.total_minor_text ?? r.total_minor),
    creditsApplied: r.credits_applied,
    creditNotes,
    amountDue: r.amount_due,
    issuedAt: Number(r.issued_at),
    dueAt: Number(r.due_at),
    finalizedAt: num(r.finalized_at),
    voidedAt: num(r.voided_at),
    voidReason: r.void_reason ?? null,
    paidAt: num(r.paid_at),
    paymentRef: r.payment_ref ?? null,
    uncollectibleAt: num(r.uncollectible_at),
    supersedes: r.supersedes ?? null,
    billingReason: r.billing_reason ?? 'period',
    createdAt: Number(r.created_at),
    lines,
  };
}

export function lineFromRow(r: Record<string, any>): InvoiceLine {
  return {
    lineNo: Number(r.line_no),
    kind: r.kind,
    featureKey: r.feature_key ?? null,
    description: r.description,
    quantity: r.quantity ?? null,
    unitPrice: r.unit_price ?? null,
    amountPrecise: r.amount_precise,
    amount: r.amount,
    amountMinor: String(r.amount_minor_text ?? r.amount_minor),
    period: { start: Number(r.period_start), end: Number(r.period_end) },
    planKey: r.plan_key ?? null,
    planVersion: num(r.plan_version),
    priceSnapshot: json(r.price_snapshot),
    details: json(r.details),
    ...(r.dimension_value !== null && r.dimension_value !== undefined ? { dimensionValue: String(r.dimension_value) } : {}),
  };
}

/** Attach lines to invoice rows with one query per batch of invoices. */
async function withLines(q: Q, rows: Array<Record<string, any>>): Promise<Invoice[]> {
  const byInvoice = new Map<string, InvoiceLine[]>();
  const notes = new Map<string, InvoiceCreditNote[]>();
  for (let i = 0; i < rows.length; i += 500) {
    const batch = rows.slice(i, i + 500);
    const tenants = [...new Set(batch.map((r) => r.tenant_id))];
    const lines = await q('invoice_lines')
      .select(lineColumns(q))
      .whereIn('tenant_id', tenants)
      .whereIn('invoice_id', batch.map((r) => r.id))
      .orderBy(['invoice_id', 'line_no']);
    for (const l of lines) {
      const list = byInvoice.get(l.invoice_id) ?? [];
      list.push(lineFromRow(l));
      byInvoice.set(l.invoice_id, list);
    }
    const withNotes = batch.filter((r) => r.credit_note_total !== null && r.credit_note_total !== undefined);
    if (withNotes.length > 0) {
      const cns = await q('credit_notes')
        .select('invoice_id', 'number', 'amount', 'due_reduction')
        .whereIn('tenant_id', [...new Set(withNotes.map((r) => r.tenant_id))])
        .whereIn('invoice_id', withNotes.map((r) => r.id))
        .orderByRaw('LENGTH(number), number');
      for (const c of cns) notes.set(c.invoice_id, [...(notes.get(c.invoice_id) ?? []), { number: c.number, amount: c.amount, dueReduction: c.due_reduction }]);
    }
  }
  return rows.map((r) => invoiceFromRow(r, byInvoice.get(r.id) ?? [], notes.get(r.id) ?? []));
}

export interface InvoiceFilter {
  tenantId?: string;
  status?: InvoiceStatus;
}

/** Invoices with their lines, by tenant then number. */
export async function listInvoices(db: Db, filter: InvoiceFilter = {}): Promise<Invoice[]> {
  if (filter.status && !INVOICE_STATUSES.includes(filter.status)) {
    throw new BillingError('usage', `unknown invoice status "${filter.status}" (use ${INVOICE_STATUSES.join(', ')})`);
  }
  const q = db.knex;
  const query = q('invoices').select(invoiceColumns(q)).orderByRaw('tenant_id, LENGTH(number), number');
  if (filter.tenantId) query.where('tenant_id', filter.tenantId);
  if (filter.status) query.where('status', filter.status);
  const rows = await query;
  // No invoices for a tenant that does not exist is a mistake, not an empty list (as in report).
  if (rows.length === 0 && filter.tenantId && !(await q('tenants').where({ id: filter.tenantId }).first('id'))) {
    throw new BillingError('not_found', `unknown tenant "${filter.tenantId}"; list them with \`billing tenant list\``);
  }
  return withLines(q, rows);
}

export async function findInvoice(q: Q, id: string, opts: { forUpdate?: boolean } = {}): Promise<Invoice | null> {
  // Numbers are issued upper case (INV-000001) and looked up in any case; ids are exact.
  const query = q('invoices').select(invoiceColumns(q)).where('id', id).orWhere('number', id.toUpperCase());
  if (opts.forUpdate) query.forUpdate(); // PostgreSQL row lock; ignored by SQLite (writer lock held)
  const rows = await query;
  if (rows.length === 0) return null;
  return (await withLines(q, [rows[0]]))[0];
}

/** One invoice by id (or by number, INV-000123), or a not_found error. */
export async function getInvoice(db: Db, id: string): Promise<Invoice> {
  const inv = await findInvoice(db.knex, id);
  if (!inv) throw new BillingError('not_found', `no invoice "${id}"; list them with \`billing invoice list\``);
  return inv;
}

export function invoiceRow(inv: Omit<Invoice, 'lines'>, now: number): Record<string, unknown> {
  return {
    tenant_id: inv.tenantId,
    id: inv.id,
    number: inv.number,
    subscription_id: inv.subscriptionId,
    period_start: inv.period.start,
    period_end: inv.period.end,
    status: inv.status,
    currency: inv.currency,
    subtotal: inv.subtotal,
    discount_total: inv.discountTotal,
    tax_total: inv.taxTotal,
    total: inv.total,
    total_minor: inv.totalMinor,
    credits_applied: inv.creditsApplied,
    amount_due: inv.amountDue,
    issued_at: inv.issuedAt,
    due_at: inv.dueAt,
    finalized_at: inv.finalizedAt,
    voided_at: inv.voidedAt,
    void_reason: inv.voidReason,
    paid_at: inv.paidAt,
    payment_ref: inv.paymentRef,
    uncollectible_at: inv.uncollectibleAt,
    supersedes: inv.supersedes,
    billing_reason: inv.billingReason,
    created_at: inv.createdAt,
    updated_at: now,
  };
}

/**
 * The only way lines are written. Lines belong to a draft: once an invoice is open (or
 * beyond) they are immutable, and a correction is a void and reissue.
 */
export async function insertLines(trx: Knex.Transaction, invoiceId: string, lines: InvoiceLine[]): Promise<void> {
  const inv = await trx('invoices').where('id', invoiceId).forUpdate().first();
  if (!inv) throw new BillingError('not_found', `no invoice "${invoiceId}"`);
  if (inv.status !== 'draft') {
    throw new BillingError(
      'conflict',
      `invoice ${inv.number} is ${inv.status}: its lines are immutable; void it and run \`billing invoice generate\` to reissue`,
    );
  }
  const rows = lines.map((l) => ({
    tenant_id: inv.tenant_id,
    invoice_id: invoiceId,
    line_no: l.lineNo,
    kind: l.kind,
    feature_key: l.featureKey,
    description: l.description,
    quantity: l.quantity,
    unit_price: l.unitPrice,
    amount_precise: l.amountPrecise,
    amount: l.amount,
    amount_minor: l.amountMinor,
    period_start: l.period.start,
    period_end: l.period.end,
    plan_key: l.planKey,
    plan_version: l.planVersion,
    price_snapshot: l.priceSnapshot === null ? null : JSON.stringify(l.priceSnapshot),
    details: l.details === null ? null : JSON.stringify(l.details),
    dimension_value: l.dimensionValue ?? null,
  }));
  for (let i = 0; i < rows.length; i += 200) await trx('invoice_lines').insert(rows.slice(i, i + 200));
}
