import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import type { Invoice } from '../invoice/types.js';
import { findInvoice } from '../invoice/repository.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { asText } from '../storage/sql.js';
import {
  creditNotePayload,
  customerParams,
  idempotencyKeys,
  invoiceItemParams,
  invoiceParams,
  meterEventParams,
  meterValue,
  type InvoiceRef,
} from './mapper.js';
import { enqueue, type NewOutboxRow } from './outbox.js';

/**
 * What needs to go to Stripe and is not in the outbox yet: a customer per tenant, the calls
 * for each open invoice, and usage of features mapped to a Stripe meter. Rows are added in
 * the same transaction as an audit entry, per invoice, so a crash never leaves half an
 * invoice queued.
 */

const METER_CURSOR_KEY = 'stripe.meter_events.scanned_seq';
// Sequence numbers are handed out before their transaction commits, so a low one can appear
// after a higher one was seen: rescan this far behind the cursor (duplicates are skipped).
const METER_RESCAN_SEQS = 100_000;
const METER_BATCH = 2000;

/**
 * An item's parameters, or, for an amount Stripe's units cannot carry, a payload naming the
 * problem: the row is queued anyway so delivery fails it by name instead of it vanishing.
 */
function itemPayload(ref: InvoiceRef, line: Invoice['lines'][number]): unknown {
  try {
    return invoiceItemParams(ref, line);
  } catch (e) {
    if (!(e instanceof BillingError)) throw e;
    return { unsendable: `invoice ${ref.number} line ${line.lineNo}: ${e.message}` };
  }
}

/** The outbox rows for one open invoice: create, one item per line, finalize, first payment attempt. */
export function invoiceRows(inv: Invoice): NewOutboxRow[] {
  const ref: InvoiceRef = { tenantId: inv.tenantId, id: inv.id, number: inv.number, currency: inv.currency };
  const t = inv.tenantId;
  return [
    { tenantId: t, idempotencyKey: idempotencyKeys.invoice(t, inv.id), kind: 'invoice', localRef: inv.id, payload: invoiceParams(ref) },
    ...inv.lines.map((line) => ({
      tenantId: t,
      idempotencyKey: idempotencyKeys.invoiceItem(t, inv.id, line.lineNo),
      kind: 'invoice_item' as const,
      localRef: `${inv.id}:${line.lineNo}`,
      payload: itemPayload(ref, line),
    })),
    { tenantId: t, idempotencyKey: idempotencyKeys.finalize(t, inv.id), kind: 'invoice_finalize', localRef: inv.id, payload: { auto_advance: false } },
    { tenantId: t, idempotencyKey: idempotencyKeys.pay(t, inv.id), kind: 'invoice_pay', localRef: inv.id, payload: {} },
  ];
}

/**
 * Queue an open invoice for Stripe inside the caller's transaction (e.g. the one that
 * finalizes it). Idempotent: rows already queued are left alone. Returns rows added.
 */
export async function enqueueInvoice(db: Db, inv: Invoice, opts: { now: Instant; actor: string }): Promise<number> {
  const added = await enqueue(db, invoiceRows(inv), opts.now);
  if (added > 0) {
    await writeAudit(db.knex, {
      at: opts.now,
      actor: opts.actor,
      tenantId: inv.tenantId,
      entity: 'stripe',
      entityId: inv.id,
      action: 'invoice.queued',
      after: { number: inv.number, lines: inv.lines.length, totalMinor: inv.totalMinor, currency: inv.currency },
    });
  }
  return added;
}

export interface Pending {
  customers: NewOutboxRow[];
  invoices: Invoice[];
  voids: NewOutboxRow[];
  creditNotes: NewOutboxRow[];
  meterEvents: NewOutboxRow[];
}

async function missingCustomers(db: Db, tenantId?: string): Promise<NewOutboxRow[]> {
  const tenants = db.knex('tenants').whereNull('stripe_customer_id').orderBy('id');
  if (tenantId) tenants.where('id', tenantId);
  const rows: NewOutboxRow[] = [];
  for (const t of await tenants) {
    const previous = await db.knex('stripe_outbox').where({ tenant_id: t.id, kind: 'customer' }).select('status');
    // One in progress (or stuck and needing an operator) is enough; after a deleted customer, make the next one.
    if (previous.some((r) => r.status !== 'sent')) continue;
    rows.push({
      tenantId: t.id,
      idempotencyKey: idempotencyKeys.customer(t.id, previous.length + 1),
      kind: 'customer',
      localRef: t.id,
      payload: customerParams({ id: t.id, name: t.name ?? null }),
    });
  }
  return rows;
}

async function unqueuedOpenInvoices(db: Db, tenantId?: string): Promise<Invoice[]> {
  const ids = db.knex('invoices as i')
    .select('i.tenant_id', 'i.id')
    .where('i.status', 'open')
    .whereNotExists(
      db.knex('stripe_outbox as o')
        .select(db.knex.raw('1'))
        .whereRaw('o.tenant_id = i.tenant_id')
        .andWhere('o.kind', 'invoice')
        .andWhereRaw('o.local_ref = i.id'),
    )
    .orderBy(['i.tenant_id', 'i.issued_at', 'i.id']);
  if (tenantId) ids.andWhere('i.tenant_id', tenantId);
  const out: Invoice[] = [];
  for (const r of await ids) {
    const inv = await findInvoice(db.knex, r.id);
    if (inv && inv.tenantId === r.tenant_id) out.push(inv);
  }
  return out;
}

async function meterCursor(db: Db): Promise<bigint> {
  const r = await db.knex('job_state').where({ key: METER_CURSOR_KEY }).first();
  return r?.value ? BigInt(r.value) : 0n;
}

/** Usage of metered features not yet in the outbox, in sequence order, in batches. */
async function* unqueuedMeterEvents(db: Db, tenantId?: string): AsyncGenerator<{ rows: NewOutboxRow[]; maxSeq: bigint }> {
  const cursor = await meterCursor(db);
  let after = cursor > BigInt(METER_RESCAN_SEQS) ? cursor - BigInt(METER_RESCAN_SEQS) : 0n;
  for (;;) {
    const query = db.knex('usage_events as e')
      .join('features as f', 'f.key', 'e.feature_key')
      .whereNotNull('f.stripe_meter')
      .andWhere('e.seq', '>', after.toString())
      .whereNotExists(
        db.knex('stripe_outbox as o')
          .select(db.knex.raw('1'))
          .whereRaw('o.tenant_id = e.tenant_id')
          .andWhere('o.kind', 'meter_event')
          .andWhereRaw('o.local_ref = CAST(e.seq AS TEXT)'),
      )
      .select(
        asText(db, 'e.seq').wrap('(', ') as seq'),
        'e.tenant_id',
        'e.event_id',
        asText(db, 'e.quantity').wrap('(', ') as quantity'),
        'e.occurred_at',
        'f.stripe_meter',
      )
      .orderBy('e.seq')
      .limit(METER_BATCH);
    if (tenantId) query.andWhere('e.tenant_id', tenantId);
    const batch = await query;
    if (batch.length === 0) return;
    const rows: NewOutboxRow[] = [];
    for (const e of batch) {
      const value = meterValue(e.quantity);
      const base = { tenantId: e.tenant_id, seq: e.seq, occurredAt: Number(e.occurred_at) };
      // Queued even when unsendable, so delivery reports it by name instead of it vanishing.
      rows.push({
        tenantId: e.tenant_id,
        idempotencyKey: idempotencyKeys.meterEvent(e.tenant_id, e.seq),
        kind: 'meter_event',
        localRef: e.seq,
        payload: { ...meterEventParams({ ...base, value: value.ok ? value.value : '' }, e.stripe_meter), event_id: e.event_id ?? null, unsendable: value.ok ? null : value.reason },
      });
    }
    const maxSeq = BigInt(batch[batch.length - 1].seq);
    yield { rows, maxSeq };
    after = maxSeq;
  }
}

/** Invoices voided here after reaching Stripe: their Stripe copy must be voided (or its draft deleted). */
async function unqueuedVoids(db: Db, tenantId?: string): Promise<NewOutboxRow[]> {
  const query = db.knex('stripe_invoices as s')
    .join('invoices as i', (j) => j.on('i.tenant_id', 's.tenant_id').andOn('i.id', 's.invoice_id'))
    .where('i.status', 'void')
    .whereIn('s.stripe_status', ['draft', 'open', 'uncollectible'])
    .whereNotExists(
      db.knex('stripe_outbox as o')
        .select(db.knex.raw('1'))
        .whereRaw('o.tenant_id = s.tenant_id')
        .andWhere('o.kind', 'invoice_void')
        .andWhereRaw('o.local_ref = s.invoice_id'),
    )
    .select('s.tenant_id', 's.invoice_id')
    .orderBy(['s.tenant_id', 's.invoice_id']);
  if (tenantId) query.andWhere('s.tenant_id', tenantId);
  return (await query).map((r) => ({
    tenantId: r.tenant_id,
    idempotencyKey: idempotencyKeys.void(r.tenant_id, r.invoice_id),
    kind: 'invoice_void' as const,
    localRef: r.invoice_id,
    payload: {},
  }));
}

/**
 * Credit notes on invoices that go to Stripe (their invoice row is queued), not queued yet.
 * Delivery waits for the Stripe invoice; `queuedInvoices` counts invoices queued in the same
 * run (dry run) that have no outbox row yet.
 */
async function unqueuedCreditNotes(db: Db, tenantId?: string, queuedInvoices: Invoice[] = []): Promise<NewOutboxRow[]> {
  const fresh = new Set(queuedInvoices.map((i) => `${i.tenantId}\u0000${i.id}`));
  const query = db.knex('credit_notes as c')
    .join('invoices as i', (j) => j.on('i.tenant_id', 'c.tenant_id').andOn('i.id', 'c.invoice_id'))
    .whereNotExists(
      db.knex('stripe_outbox as o')
        .select(db.knex.raw('1'))
        .whereRaw('o.tenant_id = c.tenant_id')
        .andWhere('o.kind', 'credit_note')
        .andWhereRaw('o.local_ref = c.id'),
    )
    .select('c.*', 'i.number as invoice_number', db.knex.raw(
      `CASE WHEN EXISTS (SELECT 1 FROM stripe_outbox o2 WHERE o2.tenant_id = c.tenant_id AND o2.kind = 'invoice' AND o2.local_ref = c.invoice_id) THEN 1 ELSE 0 END as queued`,
    ))
    .orderByRaw('c.tenant_id, LENGTH(c.number), c.number');
  if (tenantId) query.andWhere('c.tenant_id', tenantId);
  const rows: NewOutboxRow[] = [];
  for (const c of await query) {
    if (Number(c.queued) !== 1 && !fresh.has(`${c.tenant_id}\u0000${c.invoice_id}`)) continue;
    let payload: unknown;
    try {
      payload = creditNotePayload({
        tenantId: c.tenant_id, id: c.id, number: c.number, invoiceId: c.invoice_id, invoiceNumber: c.invoice_number, currency: c.currency,
        dueReduction: c.due_reduction, credited: c.credited, refund: c.refund === true || Number(c.refund) === 1, reason: c.reason,
      });
    } catch (e) {
      if (!(e instanceof BillingError)) throw e;
      payload = { unsendable: `credit note ${c.number}: ${e.message}` };
    }
    rows.push({ tenantId: c.tenant_id, idempotencyKey: idempotencyKeys.creditNote(c.tenant_id, c.id), kind: 'credit_note', localRef: c.id, payload });
  }
  return rows;
}

/** Queue the credit notes of invoices queued for Stripe (sync, and dunning before it charges again); returns rows added. */
export async function enqueueCreditNotes(db: Db, opts: { now: Instant; actor: string; tenantId?: string }): Promise<number> {
  return db.tx(async (t) => {
    const rows = await unqueuedCreditNotes(t, opts.tenantId);
    const added = await enqueue(t, rows, opts.now);
    for (const r of rows) {
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: r.tenantId, entity: 'stripe', entityId: r.localRef, action: 'credit_note.queued', after: { idempotencyKey: r.idempotencyKey } });
    }
    return added;
  });
}

/** Everything missing from the outbox, without writing anything (dry run). */
export async function findPending(db: Db, opts: { tenantId?: string }): Promise<Pending> {
  const invoices = await unqueuedOpenInvoices(db, opts.tenantId);
  const pending: Pending = {
    customers: await missingCustomers(db, opts.tenantId),
    invoices,
    voids: await unqueuedVoids(db, opts.tenantId),
    creditNotes: await unqueuedCreditNotes(db, opts.tenantId, invoices),
    meterEvents: [],
  };
  for await (const b of unqueuedMeterEvents(db, opts.tenantId)) pending.meterEvents.push(...b.rows);
  return pending;
}

export interface EnqueueResult {
  customers: number;
  invoices: number;
  voids: number;
  creditNotes: number;
  meterEvents: number;
  rows: number;
}

/** Add whatever is missing to the outbox: customers, then each invoice in its own transaction, voids, credit notes, then usage. */
export async function enqueueMissing(db: Db, opts: { now: Instant; actor: string; tenantId?: string }): Promise<EnqueueResult> {
  const result: EnqueueResult = { customers: 0, invoices: 0, voids: 0, creditNotes: 0, meterEvents: 0, rows: 0 };
  await db.tx(async (t) => {
    const rows = await missingCustomers(t, opts.tenantId);
    const added = await enqueue(t, rows, opts.now);
    for (const r of rows) {
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: r.tenantId, entity: 'stripe', entityId: r.tenantId, action: 'customer.queued', after: { idempotencyKey: r.idempotencyKey } });
    }
    result.customers += added;
    result.rows += added;
  });
  for (const inv of await unqueuedOpenInvoices(db, opts.tenantId)) {
    const added = await db.tx(async (t) => {
      // Re-read inside the transaction: it may have been queued or voided meanwhile.
      const current = await findInvoice(t.knex, inv.id);
      if (!current || current.status !== 'open') return 0;
      return enqueueInvoice(t, current, opts);
    });
    if (added > 0) result.invoices++;
    result.rows += added;
  }
  await db.tx(async (t) => {
    const rows = await unqueuedVoids(t, opts.tenantId);
    const added = await enqueue(t, rows, opts.now);
    for (const r of rows) {
      await writeAudit(t.knex, { at: opts.now, actor: opts.actor, tenantId: r.tenantId, entity: 'stripe', entityId: r.localRef, action: 'invoice.void_queued', after: { idempotencyKey: r.idempotencyKey } });
    }
    result.voids += added;
    result.rows += added;
  });
  // After the invoices: a note is queued once its invoice is.
  const notes = await enqueueCreditNotes(db, opts);
  result.creditNotes += notes;
  result.rows += notes;
  let maxSeq = 0n;
  for await (const b of unqueuedMeterEvents(db, opts.tenantId)) {
    const added = await db.tx((t) => enqueue(t, b.rows, opts.now));
    result.meterEvents += added;
    result.rows += added;
    if (b.maxSeq > maxSeq) maxSeq = b.maxSeq;
  }
  // The cursor only bounds the next scan; a tenant-scoped run has not looked at everyone.
  if (!opts.tenantId && maxSeq > 0n) {
    await db.tx(async (t) => {
      if (maxSeq <= (await meterCursor(t))) return;
      const row = { key: METER_CURSOR_KEY, value: maxSeq.toString(), updated_at: opts.now };
      await t.knex('job_state').insert(row).onConflict('key').merge();
    });
  }
  return result;
}
