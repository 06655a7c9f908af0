import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { findInvoice } from '../invoice/repository.js';
import { invoiceToJson } from '../invoice/types.js';
import { emitEvent } from '../webhooks/events.js';

/**
 * Dunning schedule (DESIGN.md §9): after a payment failure, retries at +0 h, +72 h and
 * +144 h from that failure; when the last one fails the invoice becomes uncollectible and
 * its subscription past due.
 */
export const DUNNING_RETRY_OFFSETS_MS = [0, 72 * 3_600_000, 144 * 3_600_000] as const;

/** Start dunning for an invoice whose payment failed (no-op if it already started); db: the caller's transaction. */
export async function startDunning(
  db: Db,
  input: { tenantId: string; invoiceId: string; stripeInvoiceId: string; failedAt: Instant; reason: string },
  opts: { now: Instant; actor: string },
): Promise<boolean> {
  const existing = await db.knex('stripe_dunning').where({ tenant_id: input.tenantId, invoice_id: input.invoiceId }).first();
  if (existing) return false;
  await db.knex('stripe_dunning').insert({
    tenant_id: input.tenantId,
    invoice_id: input.invoiceId,
    stripe_invoice_id: input.stripeInvoiceId,
    status: 'active',
    started_at: input.failedAt,
    retries_done: 0,
    next_attempt_at: input.failedAt + DUNNING_RETRY_OFFSETS_MS[0],
    last_error: input.reason,
    updated_at: opts.now,
  });
  await writeAudit(db.knex, {
    at: opts.now,
    actor: opts.actor,
    tenantId: input.tenantId,
    entity: 'stripe',
    entityId: input.invoiceId,
    action: 'dunning.started',
    after: { failedAt: input.failedAt, reason: input.reason, retriesAt: DUNNING_RETRY_OFFSETS_MS.map((o) => input.failedAt + o) },
  });
  await paymentFailed(db, input.tenantId, input.invoiceId, opts.now);
  return true;
}

/** invoice.payment_failed, in the transaction that records the declined attempt. */
export async function paymentFailed(db: Db, tenantId: string, invoiceId: string, at: Instant): Promise<void> {
  const inv = await findInvoice(db.knex, invoiceId);
  if (!inv || inv.tenantId !== tenantId) return;
  await emitEvent(db.knex, { type: 'invoice.payment_failed', tenantId, data: invoiceToJson(inv), at });
}
