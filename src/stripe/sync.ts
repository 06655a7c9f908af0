import type { Instant } from '../domain/period.js';
import { toIso } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { classifyStripeError, createStripeClient, type StripeClient } from './client.js';
import type { StripeConfig } from './config.js';
import { deliver, emptyDeliveryReport, type DeliveryError, type DeliveryReport } from './deliver.js';
import { enqueueMissing, findPending, invoiceRows } from './enqueue.js';
import { METER_WINDOW } from './mapper.js';
import {
  DEFAULT_MAX_ATTEMPTS,
  KIND_ORDER,
  dueRows,
  outboxProblems,
  requeue,
  rowFromDb,
  type NewOutboxRow,
  type OutboxKind,
  type OutboxProblems,
  type OutboxRow,
  type OutboxStatus,
} from './outbox.js';
import { createLimiter } from './pool.js';

export type { StripeConfig } from './config.js';

/**
 * `billing stripe sync`: queue what is missing (a customer per tenant, every open invoice,
 * usage of features with a Stripe meter), then deliver the outbox. `billing stripe retry`
 * re-drives refused rows. Both are idempotent and safe to rerun after any crash.
 */

export interface SyncOptions {
  now: Instant;
  actor: string;
  tenantId?: string;
  /** Print what would be sent; change nothing, call nothing. */
  dryRun?: boolean;
  stripe: StripeConfig;
  /** A row failing this many times becomes dead (default 8). */
  maxAttempts?: number;
  /** Jitter source for backoff (tests pass a fixed one). */
  random?: () => number;
  /** Wait between in-run retries (tests may shorten it). */
  sleep?: (ms: number) => Promise<void>;
}

export interface PlannedCall {
  tenantId: string;
  kind: OutboxKind;
  method: 'POST' | 'DELETE';
  path: string;
  idempotencyKey: string;
  params: Record<string, unknown>;
}

export interface SyncReport extends DeliveryReport {
  dryRun: boolean;
  /** Rows added to the outbox by this run. */
  queued: { customers: number; invoices: number; voids: number; creditNotes: number; meterEvents: number; rows: number };
  /** Failed/dead rows made pending again (retry only). */
  requeued: number;
  /** Dry run: the calls that would be made, in order. */
  planned: PlannedCall[];
  /** After this run, in its scope: what still needs a person (any of it makes the CLI exit 3). */
  outstanding: OutboxProblems;
}

const sleepReal = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function report(dryRun: boolean): SyncReport {
  return {
    ...emptyDeliveryReport(),
    dryRun,
    queued: { customers: 0, invoices: 0, voids: 0, creditNotes: 0, meterEvents: 0, rows: 0 },
    requeued: 0,
    planned: [],
    outstanding: { failed: 0, dead: 0, stalledDrafts: 0 },
  };
}

async function checkMeters(db: Db, stripe: StripeClient, tenantId: string | undefined, warnings: string[]): Promise<void> {
  const features = await db.knex('features').whereNotNull('stripe_meter').select('key', 'stripe_meter');
  if (features.length === 0) return;
  const due = db.knex('stripe_outbox').where({ kind: 'meter_event', status: 'pending' });
  if (tenantId) due.andWhere('tenant_id', tenantId);
  if (!(await due.first())) return;
  try {
    const active = new Set<string>();
    for await (const m of stripe.billing.meters.list({ limit: 100 })) if (m.status === 'active') active.add(m.event_name);
    for (const f of features) {
      if (!active.has(f.stripe_meter)) {
        warnings.push(`feature ${f.key} reports to Stripe meter "${f.stripe_meter}", but Stripe has no active meter with that event_name: create it (Billing → Meters) or Stripe will not count these events`);
      }
    }
  } catch (e) {
    warnings.push(`could not list Stripe meters to check feature mappings: ${classifyStripeError(e).message}`);
  }
}

function deliverOptions(opts: SyncOptions, kinds: OutboxKind[]) {
  return {
    now: opts.now,
    actor: opts.actor,
    tenantId: opts.tenantId,
    kinds,
    maxAttempts: opts.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
    inRunRetries: 2,
    random: opts.random ?? Math.random,
    sleep: opts.sleep ?? sleepReal,
    limit: createLimiter({ concurrency: opts.stripe.concurrency, perSecond: opts.stripe.maxRequestsPerSecond }),
  };
}

export async function stripeSync(db: Db, opts: SyncOptions): Promise<SyncReport> {
  if (opts.dryRun) return planSync(db, opts);
  const stripe = await createStripeClient(opts.stripe);
  const out = report(false);
  const queued = await enqueueMissing(db, opts);
  out.queued = { customers: queued.customers, invoices: queued.invoices, voids: queued.voids, creditNotes: queued.creditNotes, meterEvents: queued.meterEvents, rows: queued.rows };
  await checkMeters(db, stripe, opts.tenantId, out.warnings);
  await deliver(db, stripe, deliverOptions(opts, KIND_ORDER), out);
  out.outstanding = await outboxProblems(db, opts.tenantId);
  return out;
}

/** Make failed rows (and dead ones with includeDead) due again, then deliver everything due. */
export async function stripeRetry(db: Db, opts: SyncOptions & { includeDead?: boolean }): Promise<SyncReport> {
  const stripe = await createStripeClient(opts.stripe);
  const out = report(false);
  out.requeued = await db.tx(async (t) => {
    const n = await requeue(t, opts.now, { tenantId: opts.tenantId, includeDead: opts.includeDead });
    if (n > 0) {
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: opts.tenantId ?? null, entity: 'stripe', entityId: opts.tenantId ?? '*', action: 'outbox.requeued', after: { rows: n, includeDead: Boolean(opts.includeDead) } });
    }
    return n;
  });
  await deliver(db, stripe, deliverOptions(opts, KIND_ORDER), out);
  out.outstanding = await outboxProblems(db, opts.tenantId);
  return out;
}

const PATHS: Record<OutboxKind, (sid: string) => string> = {
  customer: () => '/v1/customers',
  invoice: () => '/v1/invoices',
  invoice_item: () => '/v1/invoiceitems',
  invoice_finalize: (sid) => `/v1/invoices/${sid}/finalize`,
  credit_note: () => '/v1/credit_notes',
  invoice_pay: (sid) => `/v1/invoices/${sid}/pay`,
  invoice_uncollectible: (sid) => `/v1/invoices/${sid}/mark_uncollectible`,
  invoice_void: (sid) => `/v1/invoices/${sid}/void`,
  meter_event: () => '/v1/billing/meter_events',
};

/** The dry run: every call a sync would make now, with ids not known yet shown as <placeholders>. */
async function planSync(db: Db, opts: SyncOptions): Promise<SyncReport> {
  const out = report(true);
  const pending = await findPending(db, { tenantId: opts.tenantId });
  const fresh: NewOutboxRow[] = [...pending.customers, ...pending.invoices.flatMap(invoiceRows), ...pending.voids, ...pending.creditNotes, ...pending.meterEvents];
  out.queued = {
    customers: pending.customers.length,
    invoices: pending.invoices.length,
    voids: pending.voids.length,
    creditNotes: pending.creditNotes.length,
    meterEvents: pending.meterEvents.length,
    rows: fresh.length,
  };
  const rows: Array<Pick<OutboxRow, 'tenantId' | 'kind' | 'localRef' | 'idempotencyKey' | 'payload'>> = [];
  for (const kind of KIND_ORDER) {
    let after: OutboxRow | null = null;
    for (;;) {
      const page = await dueRows(db, kind, opts.now, { tenantId: opts.tenantId, after });
      if (page.length === 0) break;
      rows.push(...page);
      after = page[page.length - 1];
    }
    rows.push(...fresh.filter((r) => r.kind === kind));
  }

  const customers = new Map<string, string | null>();
  const customerOf = async (t: string) => {
    if (!customers.has(t)) customers.set(t, (await db.knex('tenants').where({ id: t }).first())?.stripe_customer_id ?? null);
    return customers.get(t) ?? `<Stripe customer of tenant ${t}>`;
  };
  const invoiceOf = async (t: string, invoiceId: string) => {
    const m = await db.knex('stripe_invoices').where({ tenant_id: t, invoice_id: invoiceId }).first();
    return (m?.stripe_invoice_id as string | undefined) ?? `<Stripe invoice for ${invoiceId}>`;
  };
  const fail = (r: (typeof rows)[number], message: string) => {
    const e: DeliveryError = { tenantId: r.tenantId, kind: r.kind, ref: r.localRef, idempotencyKey: r.idempotencyKey, outcome: 'dead', message };
    out.errors.push(e);
    out.dead++;
  };

  out.outstanding = await outboxProblems(db, opts.tenantId);
  for (const r of rows) {
    const invoiceId = r.kind === 'invoice_item' ? r.localRef.slice(0, r.localRef.lastIndexOf(':')) : r.localRef;
    let sid = '';
    let method: PlannedCall['method'] = 'POST';
    let path: string | null = null;
    let params: Record<string, unknown> = { ...r.payload };
    switch (r.kind) {
      case 'invoice':
        params = { ...params, customer: await customerOf(r.tenantId) };
        break;
      case 'invoice_item':
        if (r.payload.unsendable) {
          out.errors.push({ tenantId: r.tenantId, kind: r.kind, ref: r.localRef, idempotencyKey: r.idempotencyKey, outcome: 'failed', message: r.payload.unsendable });
          out.failed++;
          continue;
        }
        params = { ...params, customer: await customerOf(r.tenantId), invoice: await invoiceOf(r.tenantId, invoiceId) };
        break;
      case 'invoice_finalize':
      case 'invoice_pay':
      case 'invoice_uncollectible':
        sid = await invoiceOf(r.tenantId, invoiceId);
        break;
      case 'invoice_void': {
        const m = await db.knex('stripe_invoices').where({ tenant_id: r.tenantId, invoice_id: invoiceId }).first();
        sid = m?.stripe_invoice_id ?? `<Stripe invoice for ${invoiceId}>`;
        if (m?.stripe_status === 'draft') {
          method = 'DELETE';
          path = `/v1/invoices/${sid}`;
        }
        break;
      }
      case 'credit_note': {
        const p = r.payload;
        if (p.unsendable) {
          out.errors.push({ tenantId: r.tenantId, kind: r.kind, ref: r.localRef, idempotencyKey: r.idempotencyKey, outcome: 'failed', message: p.unsendable });
          out.failed++;
          continue;
        }
        // The amounts depend on the Stripe invoice's status at delivery (deliver.ts): as it stands now.
        const m = await db.knex('stripe_invoices').where({ tenant_id: r.tenantId, invoice_id: p.invoice_id }).first();
        const paid = (m?.stripe_status ?? (p.pre > 0 ? 'open' : 'paid')) === 'paid';
        const amounts = paid ? { amount: p.post, [p.refund ? 'refund_amount' : 'out_of_band_amount']: p.post } : { amount: p.pre };
        params = { invoice: m?.stripe_invoice_id ?? `<Stripe invoice for ${p.invoice_id}>`, ...amounts, memo: p.memo, ...(p.reason ? { reason: p.reason } : {}), metadata: p.metadata };
        break;
      }
      case 'meter_event': {
        const p = r.payload;
        const what = `usage event seq ${r.localRef}${p.event_id ? ` (event_id ${p.event_id})` : ''} of tenant ${r.tenantId}`;
        if (p.unsendable) {
          fail(r, `${what}: ${p.unsendable}`);
          continue;
        }
        if (Number(p.timestamp) * 1000 < opts.now - METER_WINDOW.pastMs) {
          fail(r, `${what} occurred at ${toIso(Number(p.timestamp) * 1000)}, more than 35 days before now: Stripe no longer accepts it as a meter event`);
          continue;
        }
        if (Number(p.timestamp) * 1000 > opts.now + METER_WINDOW.futureMs) {
          out.postponed++;
          continue;
        }
        params = { event_name: p.event_name, identifier: p.identifier, timestamp: p.timestamp, payload: { stripe_customer_id: await customerOf(r.tenantId), value: p.payload.value } };
        break;
      }
      case 'customer':
        break;
    }
    out.planned.push({ tenantId: r.tenantId, kind: r.kind, method, path: path ?? PATHS[r.kind](sid), idempotencyKey: r.idempotencyKey, params });
  }
  return out;
}

export interface OutboxStatusRow {
  tenantId: string;
  kind: OutboxKind;
  ref: string;
  status: OutboxStatus;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  idempotencyKey: string;
}

export interface StripeStatus {
  counts: Record<OutboxStatus, number>;
  /** Pending rows whose next attempt is due now. */
  due: number;
  /** Rows not yet sent (pending, failed, dead), oldest first (at most 500). */
  rows: OutboxStatusRow[];
  dunning: Array<{ tenantId: string; invoiceId: string; status: string; retriesDone: number; nextAttemptAt: string | null; lastError: string | null }>;
}

/** `billing stripe status`: what is still to be sent, what Stripe refused, and dunning under way. */
export async function stripeStatus(db: Db, opts: { now: Instant; tenantId?: string }): Promise<StripeStatus> {
  const q = db.knex;
  const outbox = () => (opts.tenantId ? q('stripe_outbox').where('tenant_id', opts.tenantId) : q('stripe_outbox'));
  const counts: Record<OutboxStatus, number> = { pending: 0, sent: 0, failed: 0, dead: 0 };
  const byStatus: Array<{ status: OutboxStatus; n: number | string }> = await outbox().select('status').count({ n: '*' }).groupBy('status');
  for (const r of byStatus) counts[r.status] = Number(r.n);
  const [dueRow] = await outbox().where({ status: 'pending' }).andWhere('next_attempt_at', '<=', opts.now).count({ n: '*' });
  const rows = (await outbox().whereIn('status', ['pending', 'failed', 'dead']).orderBy(['created_at', 'tenant_id', 'idempotency_key']).limit(500)).map(rowFromDb);
  const dunningQuery = q('stripe_dunning').where('status', 'active').orderBy(['next_attempt_at', 'tenant_id']);
  if (opts.tenantId) dunningQuery.andWhere('tenant_id', opts.tenantId);
  const dunning = await dunningQuery;
  return {
    counts,
    due: Number(dueRow?.n ?? 0),
    rows: rows.map((r) => ({
      tenantId: r.tenantId,
      kind: r.kind,
      ref: r.localRef,
      status: r.status,
      attempts: r.attempts,
      nextAttemptAt: r.status === 'pending' ? toIso(r.nextAttemptAt) : null,
      lastError: r.lastError,
      idempotencyKey: r.idempotencyKey,
    })),
    dunning: dunning.map((d) => ({
      tenantId: d.tenant_id,
      invoiceId: d.invoice_id,
      status: d.status,
      retriesDone: Number(d.retries_done),
      nextAttemptAt: d.next_attempt_at === null ? null : toIso(Number(d.next_attempt_at)),
      lastError: d.last_error ?? null,
    })),
  };
}
