import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { Decimal, dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { cashStepMinor, currencyDigits, formatMoney, roundMoney } from '../domain/money.js';
import type { Instant } from '../domain/period.js';
import { SUBTOTAL_KINDS } from '../rate/lines.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { grantCredit } from '../subscriptions/credits.js';
import { takeCreditNoteNumber } from './numbering.js';
import { findInvoice } from './repository.js';
import type { Invoice } from './types.js';

type Q = Knex | Knex.Transaction;

// Credit notes (DESIGN.md §13): a gross amount off an issued invoice, never more than its total
// minus earlier notes. On an open invoice it first lowers the amount due; what the amount due
// cannot absorb (or all of it, on a paid invoice) becomes a prepaid credit grant, or is marked
// for refund. Immutable once written, numbered CN-000001 in their own gapless sequence.

export interface CreditNote {
  id: string;
  number: string;
  tenantId: string;
  invoiceId: string;
  invoiceNumber: string;
  lineNo: number | null;
  currency: string;
  amount: string;
  taxAmount: string;
  dueReduction: string;
  credited: string;
  grantId: string | null;
  refund: boolean;
  reason: string;
  createdAt: Instant;
}

export interface CreditNoteInput {
  invoice: string;
  amount?: string;
  line?: number;
  reason: string;
  refund?: boolean;
}

const AMOUNT = /^\d{1,15}(\.\d{1,6})?$/;

function noteFromRow(r: Record<string, any>): CreditNote {
  return {
    id: r.id,
    number: r.number,
    tenantId: r.tenant_id,
    invoiceId: r.invoice_id,
    invoiceNumber: r.invoice_number,
    lineNo: r.line_no === null || r.line_no === undefined ? null : Number(r.line_no),
    currency: r.currency,
    amount: r.amount,
    taxAmount: r.tax_amount,
    dueReduction: r.due_reduction,
    credited: r.credited,
    grantId: r.grant_id ?? null,
    refund: r.refund === true || r.refund === 1,
    reason: r.reason,
    createdAt: Number(r.created_at),
  };
}

/** A line's share of the invoice total: its amount scaled by total / subtotal (discounts and taxes pro rata). */
function lineGross(inv: Invoice, lineNo: number): string {
  const line = inv.lines.find((l) => l.lineNo === lineNo);
  if (!line) throw new BillingError('not_found', `invoice ${inv.number} has no line ${lineNo}; see \`billing invoice show ${inv.number}\``);
  if (!SUBTOTAL_KINDS.includes(line.kind as never) || dec(line.amount).lte(0)) {
    throw new BillingError('invalid_input', `line ${lineNo} of ${inv.number} is a ${line.kind} line of ${line.amount}: only a charge (base fee, usage, commitment) can be credited by line`);
  }
  if (dec(inv.subtotal).lte(0)) return '0';
  return roundMoney(dec(line.amount).times(inv.total).div(inv.subtotal), inv.currency).amount;
}

/** `billing credit-note create`. */
export async function createCreditNote(db: Db, input: CreditNoteInput, opts: { now: Instant; actor: string }): Promise<CreditNote> {
  const reason = input.reason?.trim();
  if (!reason) throw new BillingError('usage', 'a credit note needs a reason (--reason TEXT)');
  if (input.amount === undefined && input.line === undefined) throw new BillingError('usage', 'give --amount X, or --line N (optionally with --amount X)');
  if (input.amount !== undefined && (!AMOUNT.test(input.amount) || dec(input.amount).lte(0))) {
    throw new BillingError('invalid_input', `amount "${input.amount}" must be a positive decimal, like "20.00"`);
  }
  return withTx(db, async (trx) => {
    const inv = await findInvoice(trx, input.invoice, { forUpdate: true });
    if (!inv) throw new BillingError('not_found', `no invoice "${input.invoice}"; list them with \`billing invoice list\``);
    if (inv.status !== 'open' && inv.status !== 'paid') {
      const why = inv.status === 'draft' ? 'a draft is corrected by regenerating it' : 'there is nothing left to credit';
      throw new BillingError('conflict', `invoice ${inv.number} is ${inv.status}: only an open or paid invoice takes a credit note (${why})`);
    }
    const earlier = inv.creditNotes.reduce((s, c) => s.plus(c.amount), dec(0));
    const creditable = Decimal.max(dec(inv.total).minus(earlier), 0);
    const cap = input.line === undefined ? creditable : Decimal.min(creditable, lineGross(inv, input.line));
    const amount = dec(input.amount ?? cap);
    if (amount.decimalPlaces() > currencyDigits(inv.currency)) {
      throw new BillingError('invalid_input', `amount "${input.amount}" has more decimals than ${inv.currency} has (${currencyDigits(inv.currency)})`);
    }
    if (amount.lte(0) || amount.gt(cap)) {
      const what = input.line === undefined ? `${inv.number}'s total ${inv.total} less earlier credit notes` : `line ${input.line}'s share of the total, within what is creditable`;
      throw new BillingError('invalid_input', `at most ${formatMoney(cap, inv.currency)} ${inv.currency} can be credited (${what}); asked ${formatMoney(amount, inv.currency)}`);
    }
    const taxAmount = dec(inv.total).gt(0) ? roundMoney(amount.times(inv.taxTotal).div(inv.total), inv.currency).amount : '0';
    // On a cash-rounded currency (KWD...) only whole cash steps come off the amount due, so it
    // stays collectible; the rest of the note becomes prepaid credit like any remainder.
    const step = dec(cashStepMinor(inv.currency)).div(dec(10).pow(currencyDigits(inv.currency)));
    const dueReduction = inv.status === 'open' ? Decimal.min(amount, Decimal.max(dec(inv.amountDue), 0)).div(step).floor().times(step) : dec(0);
    const credited = amount.minus(dueReduction);
    const number = await takeCreditNoteNumber(trx);
    let grantId: string | null = null;
    if (credited.gt(0) && !input.refund) {
      const g = await grantCredit(
        trx,
        { tenantId: inv.tenantId, amount: formatMoney(credited, inv.currency), currency: inv.currency, source: 'credit_note', name: `Credit note ${number}` },
        opts,
      );
      grantId = g.id;
    }
    const row = {
      tenant_id: inv.tenantId,
      id: `cn_${randomBytes(8).toString('hex')}`,
      number,
      invoice_id: inv.id,
      line_no: input.line ?? null,
      currency: inv.currency,
      amount: formatMoney(amount, inv.currency),
      tax_amount: formatMoney(taxAmount, inv.currency),
      due_reduction: formatMoney(dueReduction, inv.currency),
      credited: formatMoney(credited, inv.currency),
      grant_id: grantId,
      refund: input.refund === true,
      reason,
      created_at: opts.now,
    };
    await trx('credit_notes').insert(row);
    await trx('invoices')
      .where({ tenant_id: inv.tenantId, id: inv.id })
      .update({
        credit_note_total: formatMoney(earlier.plus(amount), inv.currency),
        amount_due: formatMoney(dec(inv.amountDue).minus(dueReduction), inv.currency),
        updated_at: opts.now,
      });
    const note = noteFromRow({ ...row, invoice_number: inv.number });
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: inv.tenantId, entity: 'credit_note', entityId: note.id, action: 'create', after: note });
    return note;
  });
}

function notesQuery(q: Q) {
  return q('credit_notes as c')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'c.tenant_id').andOn('i.id', 'c.invoice_id');
    })
    .select('c.*', 'i.number as invoice_number');
}

/** `billing credit-note list [--tenant T]`, in number order. */
export async function listCreditNotes(db: Db, filter: { tenantId?: string } = {}): Promise<CreditNote[]> {
  const query = notesQuery(db.knex).orderByRaw('LENGTH(c.number), c.number');
  if (filter.tenantId !== undefined) {
    const t = await db.knex('tenants').where({ id: filter.tenantId }).first('id');
    if (!t) throw new BillingError('not_found', `unknown tenant "${filter.tenantId}"; list them with \`billing tenant list\``);
    query.where('c.tenant_id', filter.tenantId);
  }
  return (await query).map(noteFromRow);
}

/** `billing credit-note show CN-000001` (case-insensitive). */
export async function getCreditNote(db: Db, number: string): Promise<CreditNote> {
  const row = await notesQuery(db.knex).where('c.number', number.toUpperCase()).orWhere('c.id', number).first();
  if (!row) throw new BillingError('not_found', `no credit note "${number}"; list them with \`billing credit-note list\``);
  return noteFromRow(row);
}
