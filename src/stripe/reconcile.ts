import type Stripe from 'stripe';
import { BillingError } from '../domain/errors.js';
import { dec } from '../domain/decimal.js';
import { minorToMajor } from '../domain/money.js';
import type { Invoice } from '../invoice/types.js';
import type { Db } from '../storage/db.js';
import { createStripeClient, classifyStripeError, isStripeError } from './client.js';
import type { StripeConfig } from './config.js';
import { fromStripeUnits, toStripeUnits } from './currency.js';
import { loadTenantInvoice } from './local.js';

/**
 * Local invoices against their Stripe copies, always in Stripe's units for the currency:
 * each line (matched by `metadata.billing_line_no`), the total, and `amount_due` (Stripe moves
 * a negative or below-minimum amount to the customer balance, so it can differ from a right
 * total).
 */

export interface Drift {
  tenantId: string;
  invoice: string;
  stripeInvoiceId: string;
  /** total | amount_due | currency | line N | invoice */
  field: string;
  /** Stripe units (integers as strings), or a word (missing, twice). */
  ours: string;
  stripe: string;
  message: string;
}

interface StripeInvoiceLike {
  id: string;
  currency: string;
  total: number;
  amount_due: number;
}

interface StripeLineLike {
  amount: number;
  metadata?: Record<string, string> | null;
}

/**
 * What our credit notes took off an invoice's amount due that Stripe has not been told yet
 * (major units): Stripe's amount_due is ours plus this until those notes are delivered.
 */
export async function unsyncedDueReduction(db: Db, tenantId: string, invoiceId: string): Promise<string> {
  const rows = await db.knex('credit_notes as c')
    .where({ 'c.tenant_id': tenantId, 'c.invoice_id': invoiceId })
    .whereNotExists(
      db.knex('stripe_outbox as o')
        .select(db.knex.raw('1'))
        .whereRaw('o.tenant_id = c.tenant_id')
        .andWhere({ 'o.kind': 'credit_note', 'o.status': 'sent' })
        .andWhereRaw('o.local_ref = c.id'),
    )
    .select('c.due_reduction');
  return rows.reduce((s, r) => s.plus(r.due_reduction), dec(0)).toFixed();
}

/**
 * What differs between a local invoice and Stripe's copy; lines only when given. amount_due is
 * compared after credit notes: ours plus what notes not yet delivered took off (`unsynced`).
 */
export function invoiceDrift(inv: Invoice, si: StripeInvoiceLike, lines?: StripeLineLike[], unsynced = '0'): Drift[] {
  const out: Drift[] = [];
  const cur = inv.currency.toUpperCase();
  const unit = `${cur}, Stripe units of ${fromStripeUnits(1, cur)}`;
  const add = (field: string, ours: string, stripe: string, note = '') =>
    out.push({ tenantId: inv.tenantId, invoice: inv.number, stripeInvoiceId: si.id, field, ours, stripe, message: `${inv.number} ${field}: ours ${ours}, Stripe's ${stripe} (${unit})${note}` });
  if (si.currency.toUpperCase() !== cur) {
    out.push({ tenantId: inv.tenantId, invoice: inv.number, stripeInvoiceId: si.id, field: 'currency', ours: cur, stripe: si.currency.toUpperCase(), message: `${inv.number} currency: ours ${cur}, Stripe's ${si.currency.toUpperCase()}` });
    return out;
  }
  // Stripe's total is the sum of the items it was sent: every line, prepaid credit and cash rounding included.
  const total = String(toStripeUnits(minorToMajor(inv.totalMinor, cur), cur));
  if (String(si.total) !== total) add('total', total, String(si.total));
  const due = String(toStripeUnits(dec(inv.amountDue ?? inv.total).plus(unsynced).toFixed(), cur));
  if (String(si.amount_due) !== due) {
    add('amount_due', due, String(si.amount_due), String(si.total) === total ? ': Stripe moved the difference to the customer balance (negative or below its minimum charge) or applied a balance' : '');
  }
  if (!lines) return out;
  const byNo = new Map<string, StripeLineLike[]>();
  for (const l of lines) {
    const no = l.metadata?.billing_line_no ?? '';
    byNo.set(no, [...(byNo.get(no) ?? []), l]);
  }
  for (const l of inv.lines) {
    let ours: string;
    try {
      ours = String(toStripeUnits(l.amount, cur));
    } catch {
      ours = `${l.amount} (not representable)`;
    }
    const theirs = byNo.get(String(l.lineNo)) ?? [];
    byNo.delete(String(l.lineNo));
    if (theirs.length === 0) add(`line ${l.lineNo}`, ours, 'missing');
    else if (theirs.length > 1) add(`line ${l.lineNo}`, ours, theirs.map((t) => t.amount).join(' + '), ` (${theirs.length} copies)`);
    else if (String(theirs[0].amount) !== ours) add(`line ${l.lineNo}`, ours, String(theirs[0].amount));
  }
  for (const [no, extra] of byNo) {
    for (const l of extra) add(no ? `line ${no}` : 'line ?', 'none', String(l.amount), ' (a Stripe line with no local counterpart)');
  }
  return out;
}

export interface StripeVerifyReport {
  invoices: number;
  drift: Drift[];
}

/** Every invoice synced to Stripe (not deleted there) against Stripe's copy, lines included. */
export async function verifyAgainstStripe(db: Db, config: StripeConfig, opts: { tenantId?: string } = {}): Promise<StripeVerifyReport> {
  const stripe = await createStripeClient(config);
  const q = db.knex('stripe_invoices').whereNot('stripe_status', 'deleted').orderBy(['tenant_id', 'invoice_id']).select('tenant_id', 'invoice_id', 'stripe_invoice_id');
  if (opts.tenantId) q.where('tenant_id', opts.tenantId);
  const report: StripeVerifyReport = { invoices: 0, drift: [] };
  for (const row of await q) {
    const inv = await loadTenantInvoice(db, row.tenant_id, row.invoice_id);
    if (!inv) continue;
    report.invoices++;
    const sid: string = row.stripe_invoice_id;
    let si: Stripe.Invoice;
    const lines: Stripe.InvoiceLineItem[] = [];
    try {
      si = await stripe.invoices.retrieve(sid);
      for await (const l of stripe.invoices.listLineItems(sid, { limit: 100 })) lines.push(l);
    } catch (e) {
      if (isStripeError(e) && (e as { statusCode?: number }).statusCode === 404) {
        report.drift.push({ tenantId: inv.tenantId, invoice: inv.number, stripeInvoiceId: sid, field: 'invoice', ours: inv.status, stripe: 'missing', message: `${inv.number} invoice: Stripe has no invoice ${sid}` });
        continue;
      }
      if (isStripeError(e)) throw new BillingError('stripe_error', `reading Stripe invoice ${sid} (${inv.number}) failed: ${classifyStripeError(e).message}`);
      throw e;
    }
    report.drift.push(...invoiceDrift(inv, si as unknown as StripeInvoiceLike, lines, await unsyncedDueReduction(db, inv.tenantId, inv.id)));
  }
  return report;
}
