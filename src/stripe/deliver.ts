import type Stripe from 'stripe';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { toIso } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { classifyStripeError, type CallFailure } from './client.js';
import { startDunning } from './dunning-state.js';
import { invoiceDrift, unsyncedDueReduction } from './reconcile.js';
import { loadTenantInvoice, recordPaid } from './local.js';
import { METER_WINDOW } from './mapper.js';
import {
  dueRows,
  markAttemptStarted,
  markDead,
  markFailed,
  markSent,
  postpone,
  restartKeyWindow,
  type FailureOutcome,
  type OutboxKind,
  type OutboxRow,
} from './outbox.js';
import { settleAll } from './pool.js';

/**
 * Delivery: takes due outbox rows kind by kind (customers before invoices before items …),
 * resolves the Stripe ids they depend on, makes the call with the row's idempotency key and
 * records the answer in the same transaction as its local effect. A crash after Stripe
 * answered and before the commit is healed by the next run: same key, same answer (and,
 * once Stripe has forgotten a key after 24 h, by finding the object before creating again).
 */

const KEY_TTL_MS = 24 * 3_600_000;

export interface DeliveryError {
  tenantId: string;
  kind: OutboxKind;
  ref: string;
  idempotencyKey: string;
  outcome: FailureOutcome;
  message: string;
}

export interface DeliveryReport {
  sent: Partial<Record<OutboxKind, number>>;
  /** Invoices Stripe reported paid during this run. */
  paid: number;
  /** Payment attempts declined (dunning started). */
  paymentFailures: number;
  retryLater: number;
  failed: number;
  dead: number;
  /** Rows waiting for another row (e.g. items for their invoice). */
  blocked: number;
  /** Usage not yet inside Stripe's timestamp window. */
  postponed: number;
  errors: DeliveryError[];
  warnings: string[];
}

export function emptyDeliveryReport(): DeliveryReport {
  return { sent: {}, paid: 0, paymentFailures: 0, retryLater: 0, failed: 0, dead: 0, blocked: 0, postponed: 0, errors: [], warnings: [] };
}

export type Limiter = <T>(fn: () => Promise<T>) => Promise<T>;

export interface DeliverOptions {
  now: Instant;
  actor: string;
  tenantId?: string;
  kinds: OutboxKind[];
  maxAttempts: number;
  /** Retries of a retryable failure within this run, before leaving it to the backoff. */
  inRunRetries: number;
  random: () => number;
  sleep: (ms: number) => Promise<void>;
  limit: Limiter;
}

interface Ctx extends DeliverOptions {
  db: Db;
  stripe: Stripe;
  report: DeliveryReport;
  /** Customer ids seen this run (they only ever go from none to one within a run). */
  customers: Map<string, string>;
}

type Outcome =
  | { type: 'call'; call: () => Promise<any> }
  | { type: 'done'; stripeId: string | null; object?: any; note?: string }
  | { type: 'blocked' }
  | { type: 'dead'; reason: string }
  /** Refused here (not by Stripe): failed with this reason, re-driven by `billing stripe retry`. */
  | { type: 'failed'; reason: string }
  | { type: 'postpone'; until: Instant };

interface Handler {
  prepare(ctx: Ctx, row: OutboxRow): Promise<Outcome>;
  /** After a refusal: does it mean the work is already done (e.g. "already exists")? */
  recover?(ctx: Ctx, row: OutboxRow, failure: CallFailure): Promise<Outcome | null>;
  /** Local effect of a delivered call, on t: the transaction that marks the row sent. */
  applied?(ctx: Ctx, t: Db, row: OutboxRow, object: any): Promise<void>;
  /** A declined payment (invoice_pay only), on t: the transaction that marks the row sent. */
  declined?(ctx: Ctx, t: Db, row: OutboxRow, failure: CallFailure): Promise<void>;
  idOf(object: any): string | null;
}

const call = (fn: () => Promise<any>): Outcome => ({ type: 'call', call: fn });
const done = (stripeId: string | null, object?: any, note?: string): Outcome => ({ type: 'done', stripeId, object, note });
const dead = (reason: string): Outcome => ({ type: 'dead', reason });
const failed = (reason: string): Outcome => ({ type: 'failed', reason });
const BLOCKED: Outcome = { type: 'blocked' };

/** Thrown inside a call when this side cannot safely go on (e.g. an ambiguous recovery): the row fails with the message. */
class Refusal extends Error {}

/**
 * Of the objects a search or list returned, the one that is ours by metadata: a search may
 * return anything (stale, canned or another tenant's), so a result is never taken on trust.
 * None: not found (create anew). Several: refuse rather than guess.
 */
function exactlyOurs<T extends { id: string; metadata?: Record<string, string> | null }>(found: T[], want: Record<string, string>, what: string): T | null {
  const mine = found.filter((o) => Object.entries(want).every(([k, v]) => o.metadata?.[k] === v));
  if (mine.length > 1) {
    throw new Refusal(`${mine.length} Stripe ${what}s carry metadata ${JSON.stringify(want)} (${mine.map((o) => o.id).join(', ')}): cannot tell which is ours; remove the extra one at Stripe, then run \`billing stripe retry\``);
  }
  return mine[0] ?? null;
}

function keyExpired(ctx: Ctx, row: OutboxRow): boolean {
  return row.firstAttemptAt !== null && ctx.now - row.firstAttemptAt >= KEY_TTL_MS;
}

/** A value for Stripe's search query language ('…' with quotes escaped). */
function quoted(s: string): string {
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
}

async function customerOf(ctx: Ctx, tenantId: string): Promise<string | null> {
  const known = ctx.customers.get(tenantId);
  if (known) return known;
  const id: string | null = (await ctx.db.knex('tenants').where({ id: tenantId }).first())?.stripe_customer_id ?? null;
  if (id) ctx.customers.set(tenantId, id);
  return id;
}

async function mappedInvoice(db: Db, tenantId: string, invoiceId: string) {
  return db.knex('stripe_invoices').where({ tenant_id: tenantId, invoice_id: invoiceId }).first();
}

/** The Stripe invoice a row depends on; dead when the local invoice went away unsent. */
async function requireMapped(ctx: Ctx, row: OutboxRow, invoiceId: string): Promise<{ mapped: any } | { outcome: Outcome }> {
  const mapped = await mappedInvoice(ctx.db, row.tenantId, invoiceId);
  if (mapped) return { mapped };
  const inv = await loadTenantInvoice(ctx.db, row.tenantId, invoiceId);
  if (!inv || inv.status !== 'open') return { outcome: dead(`local invoice ${inv?.number ?? invoiceId} is ${inv?.status ?? 'gone'}; it was not sent to Stripe`) };
  return { outcome: BLOCKED };
}

/** The credit note rows of an invoice, with their note numbers. */
async function creditNoteRows(db: Db, tenantId: string, invoiceId: string): Promise<Array<{ status: string; last_error: string | null; number: string }>> {
  return db.knex('stripe_outbox as o')
    .join('credit_notes as c', (j) => j.on('c.tenant_id', 'o.tenant_id').andOn('c.id', 'o.local_ref'))
    .where({ 'o.tenant_id': tenantId, 'o.kind': 'credit_note', 'c.invoice_id': invoiceId })
    .select('o.status', 'o.last_error', 'c.number');
}

async function audit(ctx: Ctx, t: Db, row: OutboxRow, entityId: string, action: string, after: unknown): Promise<void> {
  await writeAudit(t.knex, { at: ctx.now, actor: ctx.actor, tenantId: row.tenantId, entity: 'stripe', entityId, action, after });
}

const HANDLERS: Record<OutboxKind, Handler> = {
  customer: {
    async prepare(ctx, row) {
      const tenant = await ctx.db.knex('tenants').where({ id: row.tenantId }).first();
      if (!tenant) return dead(`tenant ${row.tenantId} no longer exists`);
      if (tenant.stripe_customer_id) return done(tenant.stripe_customer_id, undefined, 'tenant already had a Stripe customer');
      return call(async () => {
        if (keyExpired(ctx, row)) {
          const found = await ctx.stripe.customers.search({ query: `metadata['tenant_id']:${quoted(row.tenantId)}`, limit: 10 });
          const mine = exactlyOurs(found.data, { tenant_id: row.tenantId }, 'customer');
          if (mine) return mine;
        }
        return ctx.stripe.customers.create(row.payload, { idempotencyKey: row.idempotencyKey });
      });
    },
    async applied(ctx, t, row, customer) {
      if (!customer) return;
      await t.knex('tenants').where({ id: row.tenantId }).whereNull('stripe_customer_id').update({ stripe_customer_id: customer.id });
      await audit(ctx, t, row, row.tenantId, 'customer.created', { stripeCustomerId: customer.id });
    },
    idOf: (c) => c.id,
  },

  invoice: {
    async prepare(ctx, row) {
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      if (mapped) return done(mapped.stripe_invoice_id);
      const inv = await loadTenantInvoice(ctx.db, row.tenantId, row.localRef);
      if (!inv || inv.status !== 'open') return dead(`local invoice ${inv?.number ?? row.localRef} is ${inv?.status ?? 'gone'}; not sent to Stripe`);
      const customer = await customerOf(ctx, row.tenantId);
      if (!customer) return BLOCKED;
      return call(async () => {
        if (keyExpired(ctx, row)) {
          const query = `metadata['billing_invoice_id']:${quoted(inv.id)} AND metadata['tenant_id']:${quoted(row.tenantId)}`;
          const found = await ctx.stripe.invoices.search({ query, limit: 10 });
          const mine = exactlyOurs(found.data, { tenant_id: row.tenantId, billing_invoice_id: inv.id }, 'invoice');
          if (mine) return mine;
        }
        return ctx.stripe.invoices.create({ ...row.payload, customer }, { idempotencyKey: row.idempotencyKey });
      });
    },
    async applied(ctx, t, row, si) {
      if (!si) return;
      await t.knex('stripe_invoices')
        .insert({
          tenant_id: row.tenantId,
          invoice_id: row.localRef,
          stripe_invoice_id: si.id,
          stripe_status: si.status,
          stripe_number: si.number ?? null,
          amount_due: null,
          created_at: ctx.now,
          updated_at: ctx.now,
        })
        .onConflict(['tenant_id', 'invoice_id'])
        .ignore();
      await audit(ctx, t, row, row.localRef, 'invoice.created', { stripeInvoiceId: si.id, status: si.status });
    },
    idOf: (i) => i.id,
  },

  invoice_item: {
    async prepare(ctx, row) {
      if (row.payload.unsendable) return failed(row.payload.unsendable);
      const cut = row.localRef.lastIndexOf(':');
      const invoiceId = row.localRef.slice(0, cut);
      const lineNo = row.localRef.slice(cut + 1);
      const r = await requireMapped(ctx, row, invoiceId);
      if ('outcome' in r) return r.outcome;
      if (r.mapped.stripe_status !== 'draft') {
        return dead(`Stripe invoice ${r.mapped.stripe_invoice_id} is already ${r.mapped.stripe_status}; line ${lineNo} cannot be added`);
      }
      const customer = await customerOf(ctx, row.tenantId);
      if (!customer) return BLOCKED;
      const stripeInvoice: string = r.mapped.stripe_invoice_id;
      return call(async () => {
        if (keyExpired(ctx, row)) {
          const listed: Stripe.InvoiceItem[] = [];
          for await (const ii of ctx.stripe.invoiceItems.list({ invoice: stripeInvoice, limit: 100 })) listed.push(ii);
          const mine = exactlyOurs(listed, { tenant_id: row.tenantId, billing_invoice_id: invoiceId, billing_line_no: lineNo }, 'invoice item');
          if (mine) return mine;
        }
        return ctx.stripe.invoiceItems.create({ ...row.payload, customer, invoice: stripeInvoice }, { idempotencyKey: row.idempotencyKey });
      });
    },
    async applied(ctx, t, row, ii) {
      if (ii) await audit(ctx, t, row, row.localRef, 'invoice_item.created', { stripeInvoiceItemId: ii.id, amount: ii.amount, currency: ii.currency });
    },
    idOf: (ii) => ii.id,
  },

  invoice_finalize: {
    async prepare(ctx, row) {
      const r = await requireMapped(ctx, row, row.localRef);
      if ('outcome' in r) return r.outcome;
      const sid: string = r.mapped.stripe_invoice_id;
      if (r.mapped.stripe_status !== 'draft') return done(sid, undefined, `already ${r.mapped.stripe_status}`);
      const inv = await loadTenantInvoice(ctx.db, row.tenantId, row.localRef);
      if (!inv || inv.status !== 'open') return dead(`local invoice ${inv?.number ?? row.localRef} is ${inv?.status ?? 'gone'}; Stripe draft ${sid} left unfinalized`);
      const items = await ctx.db.knex('stripe_outbox')
        .where({ tenant_id: row.tenantId, kind: 'invoice_item' })
        .whereIn('local_ref', inv.lines.map((l) => `${inv.id}:${l.lineNo}`))
        .select('status');
      if (items.length < inv.lines.length || items.some((i) => i.status !== 'sent')) return BLOCKED;
      return call(() => ctx.stripe.invoices.finalizeInvoice(sid, row.payload, { idempotencyKey: row.idempotencyKey }));
    },
    async recover(ctx, row, failure) {
      if (failure.kind !== 'rejected') return null;
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      const si = await ctx.stripe.invoices.retrieve(mapped.stripe_invoice_id);
      return si.status !== 'draft' ? done(si.id, si, 'was already finalized') : null;
    },
    async applied(ctx, t, row, si) {
      if (!si) return;
      await t.knex('stripe_invoices')
        .where({ tenant_id: row.tenantId, invoice_id: row.localRef })
        .update({ stripe_status: si.status, stripe_number: si.number ?? null, amount_due: si.amount_due, updated_at: ctx.now });
      const inv = await loadTenantInvoice(t, row.tenantId, row.localRef);
      await audit(ctx, t, row, row.localRef, 'invoice.finalized', { stripeInvoiceId: si.id, number: si.number, total: si.total, currency: si.currency });
      if (inv) {
        const unsynced = await unsyncedDueReduction(t, inv.tenantId, inv.id);
        for (const d of invoiceDrift(inv, si, si.lines && !si.lines.has_more ? si.lines.data : undefined, unsynced)) {
          ctx.report.warnings.push(`Stripe invoice ${si.id}: ${d.message}`);
          await audit(ctx, t, row, row.localRef, `invoice.${d.field}_mismatch`, { field: d.field, ours: d.ours, stripe: d.stripe, currency: inv.currency });
        }
      }
      // Stripe settles an invoice with nothing due on finalization.
      if (inv && si.status === 'paid' && inv.status === 'open') {
        await recordPaid(t, inv, { now: ctx.now, actor: ctx.actor, paidAt: ctx.now, reference: si.id });
        ctx.report.paid++;
      }
    },
    idOf: (i) => i.id,
  },

  credit_note: {
    async prepare(ctx, row) {
      const p = row.payload;
      if (p.unsendable) return failed(p.unsendable);
      const number: string = p.metadata.billing_credit_note_number;
      const r = await requireMapped(ctx, row, p.invoice_id);
      if ('outcome' in r) return r.outcome;
      const sid: string = r.mapped.stripe_invoice_id;
      if (r.mapped.stripe_status === 'draft') {
        const fin = await ctx.db.knex('stripe_outbox').where({ tenant_id: row.tenantId, kind: 'invoice_finalize', local_ref: p.invoice_id }).first();
        if (!fin || fin.status === 'pending') return BLOCKED;
        return failed(`credit note ${number}: Stripe invoice ${sid} is still a draft (its finalize call is ${fin.status}); fix that, then run \`billing stripe retry\``);
      }
      const base = { invoice: sid, memo: p.memo, metadata: p.metadata, ...(p.reason ? { reason: p.reason } : {}) };
      let params: Stripe.CreditNoteCreateParams;
      if (r.mapped.stripe_status === 'open') {
        // What became a local grant (or refund marker) is not Stripe's to credit: only the amount due it lowered.
        if (p.pre === 0) return done(null, undefined, `credit note ${number} lowers nothing due at Stripe`);
        params = { ...base, amount: p.pre };
      } else if (r.mapped.stripe_status === 'paid') {
        if (p.pre > 0) {
          return dead(`credit note ${number} lowered the amount due of ${p.metadata.billing_invoice_id}, but Stripe collected ${sid} first: refund or credit the difference at Stripe by hand; this note is not sent`);
        }
        if (p.post === 0) return done(null, undefined, `credit note ${number} has nothing to credit at Stripe`);
        // Stripe credits at most what it collected less earlier notes; prepaid credit may have
        // paid part or all of our total, and that part is ours alone (the local grant carries it).
        const si = await ctx.stripe.invoices.retrieve(sid);
        const left = Math.max(0, (si.amount_paid ?? 0) - (si.post_payment_credit_notes_amount ?? 0));
        const amount = Math.min(p.post, left);
        if (amount === 0) return done(null, undefined, `credit note ${number}: Stripe collected nothing left to credit on ${sid}`);
        params = { ...base, amount, ...(p.refund ? { refund_amount: amount } : { out_of_band_amount: amount }) };
      } else {
        return dead(`credit note ${number}: Stripe invoice ${sid} is ${r.mapped.stripe_status}; it takes no credit note`);
      }
      return call(async () => {
        let note: Stripe.CreditNote | null = null;
        if (keyExpired(ctx, row)) {
          const listed: Stripe.CreditNote[] = [];
          for await (const c of ctx.stripe.creditNotes.list({ invoice: sid, limit: 100 })) listed.push(c);
          note = exactlyOurs(listed, { tenant_id: row.tenantId, billing_credit_note_id: row.localRef }, 'credit note');
        }
        note ??= await ctx.stripe.creditNotes.create(params, { idempotencyKey: row.idempotencyKey });
        // The invoice's new amount due (and status: a note covering it settles it at Stripe).
        return { note, invoice: await ctx.stripe.invoices.retrieve(sid) };
      });
    },
    async applied(ctx, t, row, answer) {
      if (!answer) return;
      const si = answer.invoice;
      await t.knex('stripe_invoices')
        .where({ tenant_id: row.tenantId, invoice_id: row.payload.invoice_id })
        .update({ stripe_status: si.status, amount_due: si.amount_due, updated_at: ctx.now });
      await audit(ctx, t, row, row.localRef, 'credit_note.created', { stripeCreditNoteId: answer.note.id, amount: answer.note.amount, currency: answer.note.currency, invoiceAmountDue: si.amount_due });
      const inv = await loadTenantInvoice(t, row.tenantId, row.payload.invoice_id);
      if (inv && si.status === 'paid' && inv.status === 'open') {
        await recordPaid(t, inv, { now: ctx.now, actor: ctx.actor, paidAt: ctx.now, reference: si.id });
        ctx.report.paid++;
      }
    },
    idOf: (a) => a.note.id,
  },

  invoice_pay: {
    async prepare(ctx, row) {
      const r = await requireMapped(ctx, row, row.localRef);
      if ('outcome' in r) return r.outcome;
      const sid: string = r.mapped.stripe_invoice_id;
      const inv = await loadTenantInvoice(ctx.db, row.tenantId, row.localRef);
      if (!inv || inv.status !== 'open') return done(sid, undefined, `local invoice is ${inv?.status ?? 'gone'}; no payment attempt`);
      const notes = await creditNoteRows(ctx.db, row.tenantId, row.localRef);
      if (notes.some((n) => n.status === 'pending')) return BLOCKED;
      const stuck = notes.find((n) => n.status !== 'sent');
      if (stuck) {
        return failed(`credit note ${stuck.number} on ${inv.number} is ${stuck.status} at Stripe${stuck.last_error ? ` (${stuck.last_error})` : ''}: no payment attempt, it would collect more than the amount due; fix the cause, then run \`billing stripe retry\``);
      }
      let draft = false;
      if (r.mapped.stripe_status === 'draft') {
        // Stripe finalizes a draft it is asked to charge: never pay one, or lines still missing would never be billed.
        const fin = await ctx.db.knex('stripe_outbox').where({ tenant_id: row.tenantId, kind: 'invoice_finalize', local_ref: row.localRef }).first();
        if (fin?.status === 'pending') return BLOCKED;
        if (fin?.status !== 'sent') {
          const why = fin ? `its finalize call is ${fin.status}${fin.last_error ? ` (${fin.last_error})` : ''}` : 'no finalize call is queued';
          return failed(`Stripe invoice ${sid} is still a draft and ${why}: no payment attempt; fix the cause, then run \`billing stripe retry\``);
        }
        draft = true;
      } else if (r.mapped.stripe_status !== 'open') {
        return done(sid, undefined, `Stripe invoice is ${r.mapped.stripe_status}; no payment attempt`);
      }
      return call(async () => {
        if (draft) {
          // Finalized as far as the outbox knows: ask Stripe what it really holds.
          const si = await ctx.stripe.invoices.retrieve(sid);
          if (si.status === 'draft') throw new Refusal(`Stripe invoice ${sid} is still a draft although its finalize call was sent: no payment attempt; finalize it at Stripe, then run \`billing stripe retry\``);
          if (si.status !== 'open') return si;
        } else if (keyExpired(ctx, row)) {
          const si = await ctx.stripe.invoices.retrieve(sid);
          if (si.status !== 'open') return si;
        }
        return ctx.stripe.invoices.pay(sid, {}, { idempotencyKey: row.idempotencyKey });
      });
    },
    async recover(ctx, row, failure) {
      if (failure.kind !== 'rejected') return null;
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      const si = await ctx.stripe.invoices.retrieve(mapped.stripe_invoice_id);
      return si.status === 'paid' ? done(si.id, si, 'was already paid') : null;
    },
    async applied(ctx, t, row, si) {
      if (!si) return;
      await t.knex('stripe_invoices').where({ tenant_id: row.tenantId, invoice_id: row.localRef }).update({ stripe_status: si.status, updated_at: ctx.now });
      const inv = await loadTenantInvoice(t, row.tenantId, row.localRef);
      if (inv && si.status === 'paid') {
        const paidAt = si.status_transitions?.paid_at ? Number(si.status_transitions.paid_at) * 1000 : ctx.now;
        await recordPaid(t, inv, { now: ctx.now, actor: ctx.actor, paidAt, reference: si.id });
        ctx.report.paid++;
      }
    },
    async declined(ctx, t, row, failure) {
      const mapped = await mappedInvoice(t, row.tenantId, row.localRef);
      await startDunning(t, { tenantId: row.tenantId, invoiceId: row.localRef, stripeInvoiceId: mapped.stripe_invoice_id, failedAt: ctx.now, reason: failure.message }, ctx);
      ctx.report.paymentFailures++;
    },
    idOf: (i) => i.id,
  },

  invoice_uncollectible: {
    async prepare(ctx, row) {
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      if (!mapped) return dead(`no Stripe invoice for local invoice ${row.localRef}`);
      if (mapped.stripe_status !== 'open') return done(mapped.stripe_invoice_id, undefined, `Stripe invoice is ${mapped.stripe_status}`);
      return call(() => ctx.stripe.invoices.markUncollectible(mapped.stripe_invoice_id, {}, { idempotencyKey: row.idempotencyKey }));
    },
    async recover(ctx, row, failure) {
      if (failure.kind !== 'rejected') return null;
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      const si = await ctx.stripe.invoices.retrieve(mapped.stripe_invoice_id);
      return si.status !== 'open' ? done(si.id, si, `Stripe invoice was already ${si.status}`) : null;
    },
    async applied(ctx, t, row, si) {
      if (!si) return;
      await t.knex('stripe_invoices').where({ tenant_id: row.tenantId, invoice_id: row.localRef }).update({ stripe_status: si.status, updated_at: ctx.now });
      await audit(ctx, t, row, row.localRef, 'invoice.marked_uncollectible', { stripeInvoiceId: si.id, status: si.status });
    },
    idOf: (i) => i.id,
  },

  invoice_void: {
    async prepare(ctx, row) {
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      if (!mapped) return dead(`no Stripe invoice for local invoice ${row.localRef}`);
      const sid: string = mapped.stripe_invoice_id;
      if (mapped.stripe_status === 'void' || mapped.stripe_status === 'deleted') return done(sid, undefined, `Stripe invoice is ${mapped.stripe_status}`);
      if (mapped.stripe_status === 'paid') return dead(`Stripe invoice ${sid} was paid before the local invoice was voided: refund or credit the customer`);
      // Stripe voids finalized invoices; a draft can only be deleted.
      if (mapped.stripe_status === 'draft') return call(() => ctx.stripe.invoices.del(sid, {}, { idempotencyKey: row.idempotencyKey }));
      return call(() => ctx.stripe.invoices.voidInvoice(sid, {}, { idempotencyKey: row.idempotencyKey }));
    },
    async recover(ctx, row, failure) {
      if (failure.kind !== 'rejected') return null;
      const mapped = await mappedInvoice(ctx.db, row.tenantId, row.localRef);
      const si = await ctx.stripe.invoices.retrieve(mapped.stripe_invoice_id).catch(() => null);
      return si?.status === 'void' ? done(si.id, si, 'Stripe invoice was already void') : null;
    },
    async applied(ctx, t, row, si) {
      const status = si?.deleted ? 'deleted' : (si?.status ?? null);
      if (!status) return;
      await t.knex('stripe_invoices').where({ tenant_id: row.tenantId, invoice_id: row.localRef }).update({ stripe_status: status, updated_at: ctx.now });
      await audit(ctx, t, row, row.localRef, status === 'deleted' ? 'invoice.draft_deleted' : 'invoice.voided', { stripeInvoiceId: si.id });
    },
    idOf: (i) => i.id,
  },

  meter_event: {
    async prepare(ctx, row) {
      const p = row.payload;
      const what = `usage event seq ${row.localRef}${p.event_id ? ` (event_id ${p.event_id})` : ''} of tenant ${row.tenantId}`;
      if (p.unsendable) return dead(`${what}: ${p.unsendable}`);
      const at = Number(p.timestamp) * 1000;
      if (at < ctx.now - METER_WINDOW.pastMs) {
        return dead(`${what} occurred at ${toIso(at)}, more than 35 days before now: Stripe no longer accepts it as a meter event; bill it on an invoice instead`);
      }
      if (at > ctx.now + METER_WINDOW.futureMs) return { type: 'postpone', until: at - METER_WINDOW.futureMs };
      const customer = await customerOf(ctx, row.tenantId);
      if (!customer) return BLOCKED;
      if (keyExpired(ctx, row)) {
        // Stripe dedupes identifiers, like keys, for "at least 24 hours" only: past that a resend may count twice.
        if (row.outcomeUnknown) {
          const last = row.lastError ?? 'the run stopped mid-call';
          return dead(`${what}: outcome unknown past Stripe's 24 h idempotency window (first sent ${toIso(row.firstAttemptAt!)}; last error: ${last}); not re-sent, as Stripe may already count it: check the meter at Stripe, and only if the event is missing run \`billing stripe retry --dead\``);
        }
        // Every earlier answer was a refusal (nothing recorded): this call opens a new window.
        await restartKeyWindow(ctx.db, row, ctx.now);
      }
      const params = { event_name: p.event_name, identifier: p.identifier, timestamp: p.timestamp, payload: { stripe_customer_id: customer, value: p.payload.value } };
      return call(() => ctx.stripe.billing.meterEvents.create(params, { idempotencyKey: row.idempotencyKey }));
    },
    async recover(_ctx, row, failure) {
      // A duplicate identifier means Stripe has it.
      return failure.kind === 'rejected' && /already exists with identifier/i.test(failure.message) ? done(row.payload.identifier, undefined, 'already delivered') : null;
    },
    idOf: (e) => e.identifier,
  },
};

function fail(ctx: Ctx, row: OutboxRow, outcome: FailureOutcome, message: string): void {
  if (outcome === 'retry_later') ctx.report.retryLater++;
  else ctx.report[outcome]++;
  ctx.report.errors.push({ tenantId: row.tenantId, kind: row.kind, ref: row.localRef, idempotencyKey: row.idempotencyKey, outcome, message });
}

/** Call Stripe for a row, retrying retryable failures a few times in this run. */
async function attempt(ctx: Ctx, row: OutboxRow, h: Handler, fn: () => Promise<any>): Promise<Outcome | null> {
  for (let i = 0; ; i++) {
    let failure: CallFailure;
    try {
      const object = await ctx.limit(fn);
      return done(h.idOf(object), object);
    } catch (e) {
      if (e instanceof Refusal) return failed(e.message);
      failure = classifyStripeError(e);
    }
    if (failure.status === 401) {
      // A bad key fails every call alike: stop, leaving rows pending, instead of failing them all.
      throw new BillingError('stripe_error', `Stripe rejected STRIPE_SECRET_KEY (${failure.message}); nothing more was sent`);
    }
    if (failure.kind !== 'retry' && h.recover) {
      const recovered = await h.recover(ctx, row, failure).catch(() => null);
      if (recovered) return recovered;
    }
    if (failure.kind === 'card_declined' && h.declined) {
      await ctx.db.tx(async (t) => {
        if (await markSent(t, row, null, ctx.now, `payment declined: ${failure.message}`)) await h.declined!(ctx, t, row, failure);
      });
      return null;
    }
    if (failure.kind === 'retry' && i < ctx.inRunRetries) {
      await ctx.sleep(Math.round(250 * 2 ** i * (0.5 + 0.5 * ctx.random())));
      continue;
    }
    const outcome = await markFailed(ctx.db, row, { retryable: failure.kind === 'retry', message: failure.message, outcomeUnknown: failure.outcomeUnknown }, ctx.now, ctx);
    fail(ctx, row, outcome, failure.message);
    return null;
  }
}

async function deliverRow(ctx: Ctx, row: OutboxRow): Promise<void> {
  const h = HANDLERS[row.kind];
  let outcome: Outcome | null = await h.prepare(ctx, row);
  if (outcome.type === 'call') {
    await markAttemptStarted(ctx.db, row, ctx.now);
    outcome = await attempt(ctx, row, h, outcome.call);
    if (!outcome) return;
  }
  switch (outcome.type) {
    case 'done': {
      const o = outcome;
      await ctx.db.tx(async (t) => {
        // Two syncs may deliver the same row (same key, same answer); only the first applies it.
        if (await markSent(t, row, o.stripeId, ctx.now, o.note ?? null)) await h.applied?.(ctx, t, row, o.object ?? null);
      });
      ctx.report.sent[row.kind] = (ctx.report.sent[row.kind] ?? 0) + 1;
      return;
    }
    case 'dead':
      await markDead(ctx.db, row, outcome.reason, ctx.now);
      fail(ctx, row, 'dead', outcome.reason);
      return;
    case 'failed': {
      const result = await markFailed(ctx.db, row, { retryable: false, message: outcome.reason }, ctx.now, ctx);
      fail(ctx, row, result, outcome.reason);
      return;
    }
    case 'postpone':
      await postpone(ctx.db, row, outcome.until, ctx.now);
      ctx.report.postponed++;
      return;
    case 'blocked':
      ctx.report.blocked++;
      return;
    case 'call':
      throw new Error('unreachable: a call outcome is always attempted');
  }
}

/** Deliver every due row of the given kinds, in dependency order. */
export async function deliver(db: Db, stripe: Stripe, opts: DeliverOptions, report = emptyDeliveryReport()): Promise<DeliveryReport> {
  const ctx: Ctx = { ...opts, db, stripe, report, customers: new Map() };
  for (const kind of opts.kinds) {
    let after: OutboxRow | null = null;
    for (;;) {
      const rows = await dueRows(db, kind, opts.now, { tenantId: opts.tenantId, after });
      if (rows.length === 0) break;
      after = rows[rows.length - 1];
      await settleAll(rows, (row) => deliverRow(ctx, row));
    }
  }
  return report;
}
