import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { checkDueDays } from './generate.js';
import { findInvoice } from './repository.js';
import { invoiceToJson, type Invoice, type InvoiceStatus } from './types.js';
import { emitEvent, type EventType } from '../webhooks/events.js';

/** Transitions receivers are told about (DESIGN.md §15). */
const EVENT_OF: Partial<Record<InvoiceStatus, EventType>> = { open: 'invoice.finalized', paid: 'invoice.paid' };

const DAY_MS = 86_400_000;

type Opts = { now: Instant; actor: string };

/** changed: false when the invoice already was in the target state (webhook retries, reruns). */
export interface TransitionResult {
  invoice: Invoice;
  changed: boolean;
}

/**
 * draft → open → paid | void | uncollectible (DESIGN.md §8). `from` lists the states the
 * transition leaves; being already in `to` is a no-op, anything else a conflict.
 */
async function transition(
  db: Db,
  id: string,
  to: InvoiceStatus,
  from: InvoiceStatus[],
  opts: Opts,
  columns: (inv: Invoice) => Record<string, unknown>,
  hint: string,
): Promise<TransitionResult> {
  return withTx(db, async (trx) => {
    const inv = await findInvoice(trx, id, { forUpdate: true });
    if (!inv) throw new BillingError('not_found', `no invoice "${id}"; list them with \`billing invoice list\``);
    if (inv.status === to) return { invoice: inv, changed: false };
    if (!from.includes(inv.status)) {
      throw new BillingError('conflict', `invoice ${inv.number} is ${inv.status}; cannot make it ${to} (${hint})`);
    }
    const cols = columns(inv);
    await trx('invoices').where({ tenant_id: inv.tenantId, id: inv.id }).update({ status: to, ...cols, updated_at: opts.now });
    const after = (await findInvoice(trx, inv.id))!;
    await writeAudit(trx, {
      at: opts.now,
      actor: opts.actor,
      tenantId: inv.tenantId,
      entity: 'invoice',
      entityId: inv.id,
      action: to === 'open' ? 'finalize' : to,
      before: { status: inv.status },
      after: { status: to, number: inv.number, total: inv.total, ...cols },
    });
    const type = EVENT_OF[to];
    if (type) await emitEvent(trx, { type, tenantId: inv.tenantId, data: invoiceToJson(after), at: opts.now });
    return { invoice: after, changed: true };
  });
}

/** Issue a draft: its lines become immutable; issued now, due after dueDays (default 7). */
export async function finalizeInvoice(db: Db, id: string, opts: Opts & { dueDays?: number }): Promise<TransitionResult> {
  const dueDays = checkDueDays(opts.dueDays);
  return transition(db, id, 'open', ['draft'], opts, () => ({
    finalized_at: opts.now,
    issued_at: opts.now,
    due_at: opts.now + dueDays * DAY_MS,
  }), 'only a draft can be finalized');
}

/** Void a draft or unpaid invoice; `billing invoice generate` then reissues its period under a new number. */
export async function voidInvoice(db: Db, id: string, opts: Opts & { reason: string }): Promise<TransitionResult> {
  const reason = opts.reason?.trim();
  if (!reason) throw new BillingError('usage', 'voiding an invoice needs a reason (--reason TEXT)');
  return transition(db, id, 'void', ['draft', 'open', 'uncollectible'], opts, () => ({
    voided_at: opts.now,
    void_reason: reason,
  }), 'a paid invoice is corrected with a credit, not voided');
}

/** Record payment (e.g. from a Stripe webhook); an uncollectible invoice may still be paid later. */
export async function markInvoicePaid(
  db: Db,
  id: string,
  opts: Opts & { paidAt?: Instant; reference?: string },
): Promise<TransitionResult> {
  return transition(db, id, 'paid', ['open', 'uncollectible'], opts, () => ({
    paid_at: opts.paidAt ?? opts.now,
    payment_ref: opts.reference ?? null,
  }), 'finalize a draft before recording payment');
}

/** Give up collecting (dunning exhausted). */
export async function markInvoiceUncollectible(db: Db, id: string, opts: Opts): Promise<TransitionResult> {
  return transition(db, id, 'uncollectible', ['open'], opts, () => ({ uncollectible_at: opts.now }), 'only an open invoice can become uncollectible');
}
