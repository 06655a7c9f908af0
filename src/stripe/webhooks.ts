import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { isUniqueViolation } from '../invoice/tx.js';
import { classifyStripeError, createStripeClient } from './client.js';
import type { StripeConfig } from './config.js';
import { startDunning } from './dunning-state.js';
import { loadTenantInvoice, recordPaid } from './local.js';

/**
 * Stripe → billing: events from a webhook delivery (`billing stripe webhook`, or an HTTP
 * server calling applyStripeEvent) or pulled with `billing stripe events`. Each event id is
 * applied once, in the transaction that records it.
 */

export interface StripeEventLike {
  id: string;
  type: string;
  created?: number;
  data: { object: any };
}

export type EventOutcome = 'applied' | 'ignored' | 'duplicate';

export interface AppliedEvent {
  eventId: string;
  type: string;
  outcome: EventOutcome;
  detail: string;
}

const DEFAULT_TOLERANCE_SEC = 300;

/** Check the Stripe-Signature header against the raw body; a mismatch applies nothing (exit 2). */
export async function verifyWebhook(
  payload: string | Buffer,
  signature: string,
  opts: { secret: string | null; now: Instant; toleranceSec?: number },
): Promise<StripeEventLike> {
  if (!opts.secret) throw new BillingError('usage', 'STRIPE_WEBHOOK_SECRET is not set: export the signing secret (whsec_…) of the webhook endpoint');
  const { default: StripeSdk } = await import('stripe');
  const tolerance = opts.toleranceSec ?? DEFAULT_TOLERANCE_SEC;
  let event: StripeEventLike;
  try {
    event = StripeSdk.webhooks.constructEvent(payload, signature, opts.secret, tolerance, undefined, opts.now) as unknown as StripeEventLike;
  } catch (e) {
    const reason = ((e as Error).message ?? 'invalid signature').split('\n')[0].trim();
    throw new BillingError('signature_invalid', `webhook signature check failed (${reason}); nothing was applied`);
  }
  // The SDK refuses only old timestamps; one far ahead would let a captured delivery be replayed until then.
  const signedAt = signatureTimestamp(signature);
  if (signedAt !== null && signedAt - Math.floor(opts.now / 1000) > tolerance) {
    throw new BillingError('signature_invalid', `webhook signature check failed (timestamp is more than ${tolerance} s in the future); nothing was applied`);
  }
  return event;
}

/** The t= of a Stripe-Signature header (the last one, as the SDK reads it). */
function signatureTimestamp(header: string): number | null {
  let t: number | null = null;
  for (const item of header.split(',')) {
    const [k, v] = item.split('=');
    if (k?.trim() === 't' && v !== undefined && /^\d+$/.test(v.trim())) t = Number(v.trim());
  }
  return t;
}

/** Earliest time a Stripe event may carry: Stripe did not exist before 2010. */
const EARLIEST_STRIPE_SEC = Date.UTC(2010, 0, 1) / 1000;
/** How far ahead of our clock a Stripe time may be (clock skew). */
const MAX_AHEAD_SEC = 24 * 3600;

/**
 * A time from an event payload (epoch seconds) as an Instant, refused unless it is an
 * integer between 2010 and a day from now: a wild value would be stored and break every
 * later reader of it.
 */
function eventTime(v: unknown, field: string, event: StripeEventLike, now: Instant): Instant {
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < EARLIEST_STRIPE_SEC || n > now / 1000 + MAX_AHEAD_SEC) {
    throw new BillingError(
      'invalid_input',
      `Stripe event ${event.id}: ${field} ${JSON.stringify(v)} is not a time in epoch seconds between 2010 and a day from now; nothing was applied`,
    );
  }
  return n * 1000;
}

type Result = { outcome: 'applied' | 'ignored'; detail: string; tenantId: string | null };

/** The local invoice a Stripe invoice stands for: by our mapping, else by its metadata. */
async function localInvoiceFor(db: Db, si: any) {
  const mapped = await db.knex('stripe_invoices').where({ stripe_invoice_id: si?.id ?? '' }).first();
  const tenantId: string | undefined = mapped?.tenant_id ?? si?.metadata?.tenant_id;
  const invoiceId: string | undefined = mapped?.invoice_id ?? si?.metadata?.billing_invoice_id;
  if (!tenantId || !invoiceId) return null;
  return loadTenantInvoice(db, tenantId, invoiceId);
}

/** db: the transaction that records the event. */
async function apply(db: Db, event: StripeEventLike, opts: { now: Instant; actor: string }): Promise<Result> {
  const obj = event.data?.object ?? {};
  const at = event.created === undefined ? opts.now : eventTime(event.created, 'created', event, opts.now);
  switch (event.type) {
    case 'invoice.paid': {
      const inv = await localInvoiceFor(db, obj);
      if (!inv) return { outcome: 'ignored', detail: `Stripe invoice ${obj.id} is not a billing invoice`, tenantId: null };
      if (inv.status !== 'open' && inv.status !== 'uncollectible') {
        return { outcome: 'ignored', detail: `invoice ${inv.number} is already ${inv.status}`, tenantId: inv.tenantId };
      }
      const rawPaidAt = obj.status_transitions?.paid_at;
      const paidAt = rawPaidAt === undefined || rawPaidAt === null ? at : eventTime(rawPaidAt, 'data.object.status_transitions.paid_at', event, opts.now);
      await recordPaid(db, inv, { ...opts, paidAt, reference: obj.id });
      return { outcome: 'applied', detail: `invoice ${inv.number} paid`, tenantId: inv.tenantId };
    }
    case 'invoice.payment_failed': {
      const inv = await localInvoiceFor(db, obj);
      if (!inv) return { outcome: 'ignored', detail: `Stripe invoice ${obj.id} is not a billing invoice`, tenantId: null };
      if (inv.status !== 'open') return { outcome: 'ignored', detail: `invoice ${inv.number} is ${inv.status}`, tenantId: inv.tenantId };
      const reason = `payment failed (Stripe event ${event.id}, attempt ${obj.attempt_count ?? '?'})`;
      const started = await startDunning(db, { tenantId: inv.tenantId, invoiceId: inv.id, stripeInvoiceId: obj.id, failedAt: at, reason }, opts);
      return started
        ? { outcome: 'applied', detail: `dunning started for invoice ${inv.number}`, tenantId: inv.tenantId }
        : { outcome: 'ignored', detail: `dunning already under way for invoice ${inv.number}`, tenantId: inv.tenantId };
    }
    case 'customer.deleted': {
      const tenant = await db.knex('tenants').where({ stripe_customer_id: obj.id ?? '' }).first();
      if (!tenant) return { outcome: 'ignored', detail: `customer ${obj.id} is not mapped to a tenant`, tenantId: null };
      // The next sync creates a fresh customer for the tenant.
      await db.knex('tenants').where({ id: tenant.id }).update({ stripe_customer_id: null });
      await writeAudit(db.knex, { at: opts.now, actor: opts.actor, tenantId: tenant.id, entity: 'stripe', entityId: tenant.id, action: 'customer.deleted', before: { stripeCustomerId: obj.id }, after: { stripeCustomerId: null } });
      return { outcome: 'applied', detail: `tenant ${tenant.id} no longer has a Stripe customer`, tenantId: tenant.id };
    }
    default:
      return { outcome: 'ignored', detail: `${event.type} is not used by billing`, tenantId: null };
  }
}

/** Apply one Stripe event exactly once (by event id); safe to call for every delivery. */
export async function applyStripeEvent(db: Db, event: StripeEventLike, opts: { now: Instant; actor: string }): Promise<AppliedEvent> {
  if (!event || typeof event.id !== 'string' || typeof event.type !== 'string') {
    throw new BillingError('invalid_input', 'not a Stripe event: expected an object with "id" and "type"');
  }
  try {
    return await db.tx(async (t) => {
      const seen = await t.knex('stripe_events').where({ event_id: event.id }).first();
      if (seen) return { eventId: event.id, type: event.type, outcome: 'duplicate' as const, detail: `already ${seen.outcome}: ${seen.detail ?? ''}`.trim() };
      // Claim the id first: a concurrent delivery of the same event waits here, then finds it.
      await t.knex('stripe_events').insert({
        event_id: event.id,
        type: event.type,
        tenant_id: null,
        created_at: event.created === undefined ? opts.now : eventTime(event.created, 'created', event, opts.now),
        received_at: opts.now,
        outcome: 'applied',
        detail: null,
      });
      const r = await apply(t, event, opts);
      await t.knex('stripe_events').where({ event_id: event.id }).update({ outcome: r.outcome, detail: r.detail, tenant_id: r.tenantId });
      return { eventId: event.id, type: event.type, outcome: r.outcome, detail: r.detail };
    });
  } catch (e) {
    if (isUniqueViolation(e)) return { eventId: event.id, type: event.type, outcome: 'duplicate', detail: 'applied by a concurrent delivery' };
    throw e;
  }
}

const CURSOR_KEY = 'stripe.events.cursor';

export interface PullReport {
  fetched: number;
  applied: number;
  ignored: number;
  duplicates: number;
  cursor: string | null;
  events: AppliedEvent[];
}

async function saveCursor(db: Db, id: string, now: Instant): Promise<void> {
  await db.knex('job_state').insert({ key: CURSOR_KEY, value: id, updated_at: now }).onConflict('key').merge();
}

/**
 * `billing stripe events`: pull events newer than the stored cursor (oldest first) and apply
 * them like webhooks. Without a cursor (or when Stripe no longer has it) everything Stripe
 * still keeps is read; event ids make replays harmless.
 */
export async function pullStripeEvents(db: Db, opts: { now: Instant; actor: string; stripe: StripeConfig }): Promise<PullReport> {
  const stripe = await createStripeClient(opts.stripe);
  const report: PullReport = { fetched: 0, applied: 0, ignored: 0, duplicates: 0, cursor: null, events: [] };
  const row = await db.knex('job_state').where({ key: CURSOR_KEY }).first();
  let cursor: string | null = row?.value ?? null;

  const applyAll = async (oldestFirst: StripeEventLike[]) => {
    for (const ev of oldestFirst) {
      const r = await applyStripeEvent(db, ev, opts);
      report.fetched++;
      report.events.push(r);
      if (r.outcome === 'applied') report.applied++;
      else if (r.outcome === 'ignored') report.ignored++;
      else report.duplicates++;
    }
  };

  if (cursor) {
    try {
      for (;;) {
        // ending_before pages toward newer events, each page newest first.
        const page = await stripe.events.list({ ending_before: cursor, limit: 100 });
        if (page.data.length === 0) break;
        await applyAll([...page.data].reverse() as unknown as StripeEventLike[]);
        cursor = page.data[0].id;
        await saveCursor(db, cursor, opts.now);
        if (!page.has_more) break;
      }
      report.cursor = cursor;
      return report;
    } catch (e) {
      const f = classifyStripeError(e);
      if (f.status !== 404) throw new BillingError('stripe_error', `pulling Stripe events failed: ${f.message}`);
      cursor = null; // the cursor event expired at Stripe: read everything still there
    }
  }
  const all: StripeEventLike[] = [];
  try {
    for await (const ev of stripe.events.list({ limit: 100 })) all.push(ev as unknown as StripeEventLike);
  } catch (e) {
    throw new BillingError('stripe_error', `pulling Stripe events failed: ${classifyStripeError(e).message}`);
  }
  await applyAll(all.reverse());
  if (all.length > 0) {
    cursor = all[all.length - 1].id;
    await saveCursor(db, cursor, opts.now);
  }
  report.cursor = cursor;
  return report;
}
