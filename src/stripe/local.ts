import type { Instant } from '../domain/period.js';
import { markInvoicePaid, markInvoiceUncollectible } from '../invoice/lifecycle.js';
import { findInvoice } from '../invoice/repository.js';
import type { Invoice } from '../invoice/types.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';

/**
 * What Stripe's answers change locally, always inside the caller's transaction: `db` is the
 * handle bound to it (from db.tx), so the invoice engineer's transitions nest as savepoints
 * and a Stripe outcome and its outbox/event bookkeeping commit together or not at all.
 */

type Opts = { now: Instant; actor: string };

/** The tenant's invoice with this id, or null (ids are scoped by tenant, never trusted alone). */
export async function loadTenantInvoice(db: Db, tenantId: string, invoiceId: string): Promise<Invoice | null> {
  const inv = await findInvoice(db.knex, invoiceId);
  return inv && inv.tenantId === tenantId && inv.id === invoiceId ? inv : null;
}

/** Record a Stripe payment; also ends dunning and lifts past_due when nothing else is outstanding. */
export async function recordPaid(
  db: Db,
  inv: Invoice,
  opts: Opts & { paidAt: Instant; reference: string },
): Promise<boolean> {
  const { changed } = await markInvoicePaid(db, inv.id, { ...opts, paidAt: opts.paidAt, reference: opts.reference });
  await db.knex('stripe_invoices').where({ tenant_id: inv.tenantId, invoice_id: inv.id }).update({ stripe_status: 'paid', updated_at: opts.now });
  const dunning = await db.knex('stripe_dunning').where({ tenant_id: inv.tenantId, invoice_id: inv.id }).first();
  if (dunning && dunning.status !== 'recovered') {
    await db.knex('stripe_dunning')
      .where({ tenant_id: inv.tenantId, invoice_id: inv.id })
      .update({ status: 'recovered', next_attempt_at: null, updated_at: opts.now });
    await writeAudit(db.knex, {
      at: opts.now,
      actor: opts.actor,
      tenantId: inv.tenantId,
      entity: 'stripe',
      entityId: inv.id,
      action: 'dunning.recovered',
      before: { status: dunning.status, retriesDone: Number(dunning.retries_done) },
      after: { status: 'recovered' },
    });
  }
  await restoreIfSettled(db, inv, opts);
  return changed;
}

/** Dunning exhausted: the invoice is uncollectible and its subscription past due. */
export async function recordUncollectible(db: Db, inv: Invoice, opts: Opts): Promise<void> {
  await markInvoiceUncollectible(db, inv.id, opts);
  const sub = await db.knex('subscriptions').where({ tenant_id: inv.tenantId, id: inv.subscriptionId }).first();
  if (!sub || sub.status === 'canceled' || sub.status === 'past_due') return;
  await db.knex('subscriptions').where({ tenant_id: inv.tenantId, id: inv.subscriptionId }).update({ status: 'past_due', updated_at: opts.now });
  await writeAudit(db.knex, {
    at: opts.now,
    actor: opts.actor,
    tenantId: inv.tenantId,
    entity: 'subscription',
    entityId: inv.subscriptionId,
    action: 'past_due',
    before: { status: sub.status },
    after: { status: 'past_due', invoice: inv.number },
  });
}

/** A past-due subscription becomes active again once none of its invoices is uncollectible. */
async function restoreIfSettled(db: Db, inv: Invoice, opts: Opts): Promise<void> {
  const sub = await db.knex('subscriptions').where({ tenant_id: inv.tenantId, id: inv.subscriptionId }).first();
  if (!sub || sub.status !== 'past_due') return;
  const outstanding = await db.knex('invoices')
    .where({ tenant_id: inv.tenantId, subscription_id: inv.subscriptionId, status: 'uncollectible' })
    .first();
  if (outstanding) return;
  await db.knex('subscriptions').where({ tenant_id: inv.tenantId, id: inv.subscriptionId }).update({ status: 'active', updated_at: opts.now });
  await writeAudit(db.knex, {
    at: opts.now,
    actor: opts.actor,
    tenantId: inv.tenantId,
    entity: 'subscription',
    entityId: inv.subscriptionId,
    action: 'reactivate',
    before: { status: 'past_due' },
    after: { status: 'active', paidInvoice: inv.number },
  });
}
