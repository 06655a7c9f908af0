import { dec } from '../domain/decimal.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { classifyStripeError, createStripeClient, type StripeClient } from './client.js';
import type { StripeConfig } from './config.js';
import { deliver, emptyDeliveryReport } from './deliver.js';
import { DUNNING_RETRY_OFFSETS_MS, paymentFailed } from './dunning-state.js';
import { enqueueCreditNotes } from './enqueue.js';
import { loadTenantInvoice, recordPaid, recordUncollectible } from './local.js';
import { idempotencyKeys } from './mapper.js';
import { unsyncedDueReduction } from './reconcile.js';
import { DEFAULT_MAX_ATTEMPTS, enqueue } from './outbox.js';
import { createLimiter, settleAll } from './pool.js';

export { DUNNING_RETRY_OFFSETS_MS, startDunning } from './dunning-state.js';

/**
 * `billing stripe dunning` (hourly from the daemon): retries the payment of every invoice
 * whose retry is due as of `now`, one attempt per invoice per run, each with its own
 * idempotency key. Paid → recovered. Declined → next retry at the failure + 72 h / + 144 h.
 * The last retry declined → the invoice is uncollectible (here and at Stripe) and its
 * subscription past due; a later payment (webhook) makes it active again.
 */

export interface DunningOptions {
  now: Instant;
  actor: string;
  stripe: StripeConfig;
  tenantId?: string;
  random?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

export interface DunningReport {
  /** Retries due and attempted. */
  attempted: number;
  recovered: number;
  declined: number;
  exhausted: number;
  /** Dunning ended because the invoice is no longer open (paid elsewhere, voided). */
  closed: number;
  errors: Array<{ tenantId: string; invoiceId: string; message: string }>;
}

interface Ctx {
  db: Db;
  stripe: StripeClient;
  opts: DunningOptions;
  report: DunningReport;
}

/** t: the transaction to close it in. */
async function close(ctx: Ctx, t: Db, row: Record<string, any>, status: 'recovered' | 'closed', why: string): Promise<void> {
  await t.knex('stripe_dunning')
    .where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id })
    .update({ status, next_attempt_at: null, updated_at: ctx.opts.now });
  await writeAudit(t.knex, {
    at: ctx.opts.now,
    actor: ctx.opts.actor,
    tenantId: row.tenant_id,
    entity: 'stripe',
    entityId: row.invoice_id,
    action: `dunning.${status}`,
    before: { status: row.status },
    after: { status, why },
  });
}

async function retryPayment(ctx: Ctx, row: Record<string, any>, limit: <T>(fn: () => Promise<T>) => Promise<T>): Promise<void> {
  const { db, opts, report } = ctx;
  const inv = await loadTenantInvoice(db, row.tenant_id, row.invoice_id);
  if (!inv || inv.status !== 'open') {
    await db.tx((t) => close(ctx, t, row, inv?.status === 'paid' ? 'recovered' : 'closed', `local invoice is ${inv?.status ?? 'gone'}`));
    report.closed++;
    return;
  }
  // Stripe would collect what a credit note took off: this retry waits (same retry, next run).
  const unsynced = await unsyncedDueReduction(db, row.tenant_id, row.invoice_id);
  if (dec(unsynced).gt(0)) {
    const message = `a credit note lowered ${inv.number}'s amount due by ${unsynced} ${inv.currency}, and Stripe does not have it yet: payment retry held until it is delivered (\`billing stripe status\`)`;
    await db.knex('stripe_dunning').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).update({ last_error: message, updated_at: opts.now });
    report.errors.push({ tenantId: inv.tenantId, invoiceId: inv.id, message });
    return;
  }
  const retry = Number(row.retries_done) + 1;
  report.attempted++;
  let invoice: { id: string; status: string | null; status_transitions?: { paid_at?: number | null } } | null = null;
  let failure: string | null = null;
  const mapped = await db.knex('stripe_invoices').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).first();
  try {
    // Stripe finalizes a draft it is asked to charge: look before paying one that was seen as a draft.
    if (mapped?.stripe_status === 'draft') {
      invoice = await limit(() => ctx.stripe.invoices.retrieve(row.stripe_invoice_id));
      if (invoice.status !== 'draft') {
        await db.knex('stripe_invoices').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).update({ stripe_status: invoice.status, updated_at: opts.now });
      }
    }
    if (invoice?.status !== 'draft') invoice = await limit(() => ctx.stripe.invoices.pay(row.stripe_invoice_id, {}, { idempotencyKey: idempotencyKeys.dunning(inv.tenantId, inv.id, retry) }));
  } catch (e) {
    const f = classifyStripeError(e);
    if (f.kind === 'retry') {
      // Not an answer about the card: the same retry (same key) runs again next time.
      await db.knex('stripe_dunning').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).update({ last_error: f.message, updated_at: opts.now });
      report.errors.push({ tenantId: inv.tenantId, invoiceId: inv.id, message: f.message });
      return;
    }
    failure = f.message;
    if (f.kind === 'rejected') {
      // e.g. "already paid": ask Stripe what state the invoice is really in.
      invoice = await ctx.stripe.invoices.retrieve(row.stripe_invoice_id).catch(() => null);
    }
  }
  if (invoice?.status === 'paid') {
    const paidAt = invoice.status_transitions?.paid_at ? Number(invoice.status_transitions.paid_at) * 1000 : opts.now;
    await db.tx((t) => recordPaid(t, inv, { now: opts.now, actor: opts.actor, paidAt, reference: invoice!.id }));
    report.recovered++;
    return;
  }
  if (invoice?.status === 'draft') {
    // Nothing was charged and the invoice is still owed: dunning stays open (same retry, next run);
    // the draft shows in `billing status --strict` until it is finalized.
    const message = `Stripe invoice ${row.stripe_invoice_id} is a draft: it must be finalized before its payment can be retried; dunning stays open`;
    await db.tx(async (t) => {
      await t.knex('stripe_dunning').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).update({ last_error: message, updated_at: opts.now });
      await t.knex('stripe_invoices').where({ tenant_id: row.tenant_id, invoice_id: row.invoice_id }).update({ stripe_status: 'draft', updated_at: opts.now });
    });
    report.errors.push({ tenantId: inv.tenantId, invoiceId: inv.id, message });
    return;
  }
  if (invoice && invoice.status !== 'open') {
    await db.tx((t) => close(ctx, t, row, 'closed', `Stripe invoice is ${invoice!.status}`));
    report.closed++;
    return;
  }
  const message = failure ?? `payment attempt left Stripe invoice ${row.stripe_invoice_id} open`;
  await db.tx(async (t) => {
    const key = { tenant_id: row.tenant_id, invoice_id: row.invoice_id };
    // Every declined retry is a payment failure; the event shows the invoice after this attempt's effects.
    if (retry >= DUNNING_RETRY_OFFSETS_MS.length) {
      await t.knex('stripe_dunning').where(key).update({ status: 'exhausted', retries_done: retry, next_attempt_at: null, last_error: message, updated_at: opts.now });
      await recordUncollectible(t, inv, opts);
      // Stripe's copy follows through the outbox, in this same transaction.
      await enqueue(t, [{
        tenantId: inv.tenantId,
        idempotencyKey: idempotencyKeys.uncollectible(inv.tenantId, inv.id),
        kind: 'invoice_uncollectible',
        localRef: inv.id,
        payload: {},
      }], opts.now);
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: inv.tenantId, entity: 'stripe', entityId: inv.id, action: 'dunning.exhausted', after: { retries: retry, lastError: message } });
      await paymentFailed(t, inv.tenantId, inv.id, opts.now);
      report.exhausted++;
    } else {
      const next = Number(row.started_at) + DUNNING_RETRY_OFFSETS_MS[retry];
      await t.knex('stripe_dunning').where(key).update({ retries_done: retry, next_attempt_at: next, last_error: message, updated_at: opts.now });
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: inv.tenantId, entity: 'stripe', entityId: inv.id, action: 'dunning.retry_failed', after: { retry, nextAttemptAt: next, error: message } });
      await paymentFailed(t, inv.tenantId, inv.id, opts.now);
      report.declined++;
    }
  });
}

export async function runDunning(db: Db, opts: DunningOptions): Promise<DunningReport> {
  const report: DunningReport = { attempted: 0, recovered: 0, declined: 0, exhausted: 0, closed: 0, errors: [] };
  const query = db.knex('stripe_dunning').where('status', 'active').andWhere('next_attempt_at', '<=', opts.now).orderBy(['next_attempt_at', 'tenant_id', 'invoice_id']);
  if (opts.tenantId) query.andWhere('tenant_id', opts.tenantId);
  const due = await query;
  const pendingMarks = db.knex('stripe_outbox').where({ kind: 'invoice_uncollectible', status: 'pending' });
  if (opts.tenantId) pendingMarks.andWhere('tenant_id', opts.tenantId);
  if (due.length === 0 && !(await pendingMarks.first())) return report;

  const stripe = await createStripeClient(opts.stripe);
  const limit = createLimiter({ concurrency: opts.stripe.concurrency, perSecond: opts.stripe.maxRequestsPerSecond });
  const ctx: Ctx = { db, stripe, opts, report };
  // Credit notes first, so a retry charges only what is still due.
  await enqueueCreditNotes(db, opts);
  const deliverKind = (kind: 'credit_note' | 'invoice_uncollectible') =>
    deliver(db, stripe, {
      now: opts.now,
      actor: opts.actor,
      tenantId: opts.tenantId,
      kinds: [kind],
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
      inRunRetries: 2,
      random: opts.random ?? Math.random,
      sleep: opts.sleep ?? ((ms) => new Promise((r) => setTimeout(r, ms))),
      limit,
    }, emptyDeliveryReport());
  const notes = await deliverKind('credit_note');
  for (const e of notes.errors) report.errors.push({ tenantId: e.tenantId, invoiceId: e.ref, message: `credit note at Stripe: ${e.message}` });
  await settleAll(due, (row) => retryPayment(ctx, row, limit));
  const marks = await deliverKind('invoice_uncollectible');
  for (const e of marks.errors) report.errors.push({ tenantId: e.tenantId, invoiceId: e.ref, message: `marking uncollectible at Stripe: ${e.message}` });
  return report;
}
