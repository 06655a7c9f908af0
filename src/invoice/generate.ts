import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { runAggregate } from '../aggregate/aggregate.js';
import { BillingError } from '../domain/errors.js';
import type { Instant, Period } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import { handleOn, type Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { loadTenant, subscriptionAt, subscriptionFromRow, type Subscription } from '../subscriptions/repository.js';
import { endedPeriods, subscriptionPeriodAt, type BillingPeriod } from '../subscriptions/timeline.js';
import { CatalogCache } from '../rate/tenant-terms.js';
import type { InvoiceTotals } from '../rate/totals.js';
import { recordDiscountUses } from '../subscriptions/discounts.js';
import { recordCreditUses } from '../subscriptions/credits.js';
import { recordGrantUses } from '../subscriptions/unit-grants.js';
import { composeInvoice, type Composed } from './compose.js';
import { dec } from '../domain/decimal.js';
import { takeInvoiceNumber } from './numbering.js';
import { insertLines, invoiceRow } from './repository.js';
import { inRolledBackTx, isUniqueViolation } from './tx.js';
import { invoiceToJson, summarize, type BillingReason, type Invoice, type InvoiceLine, type InvoiceSummary } from './types.js';
import { emitEvent } from '../webhooks/events.js';

export const DEFAULT_DUE_DAYS = 7;
/** The id and number a dry run shows for an invoice it would create (text and JSON alike). */
export const NEW_INVOICE = '(new)';
const DAY_MS = 86_400_000;

export interface GenerateOptions {
  now: Instant;
  actor: string;
  tenantId?: string;
  /** Issue as open (immutable) instead of draft. */
  finalize?: boolean;
  /** Compute and report, write nothing (everything runs in a transaction that is rolled back); id and number are NEW_INVOICE. */
  dryRun?: boolean;
  /** due_at = issued_at + dueDays (default 7; the CLI reads INVOICE_DUE_DAYS). */
  dueDays?: number;
}

export interface GenerateResult {
  created: InvoiceSummary[];
  /** Periods another process invoiced while this run was at it. */
  skipped: number;
}

export function checkDueDays(dueDays: number | undefined): number {
  const d = dueDays ?? DEFAULT_DUE_DAYS;
  if (!Number.isInteger(d) || d < 0 || d > 3650) {
    throw new BillingError('invalid_input', `due days must be a whole number of days between 0 and 3650 (got ${dueDays})`);
  }
  return d;
}

class AlreadyInvoiced extends Error {}

/**
 * Close every subscription period that has ended as of `now` and has no current invoice:
 * one invoice per subscription and period, whatever runs concurrently (DESIGN.md §8).
 */
export async function generateInvoices(db: Db, opts: GenerateOptions): Promise<GenerateResult> {
  const dueDays = checkDueDays(opts.dueDays);
  if (opts.tenantId && !(await loadTenant(db.knex, opts.tenantId))) {
    throw new BillingError('not_found', `unknown tenant "${opts.tenantId}"`);
  }
  if (opts.dryRun) {
    const r = await inRolledBackTx(db, async (tdb) => {
      await runAggregate(tdb, { now: opts.now, tenantId: opts.tenantId });
      return generateAll(tdb, opts, dueDays);
    });
    // The numbers and ids taken inside the rolled-back transaction are not the ones a real run would use.
    return { ...r, created: r.created.map((c) => ({ ...c, id: NEW_INVOICE, number: NEW_INVOICE })) };
  }
  await runAggregate(db, { now: opts.now, tenantId: opts.tenantId });
  return generateAll(db, opts, dueDays);
}

async function generateAll(db: Db, opts: GenerateOptions, dueDays: number): Promise<GenerateResult> {
  const q = db.knex;
  const subsQuery = q('subscriptions').select('*').orderBy(['tenant_id', 'started_at', 'id']);
  if (opts.tenantId) subsQuery.where('tenant_id', opts.tenantId);
  const subs = (await subsQuery).map(subscriptionFromRow);
  const cache = new CatalogCache();
  const created: InvoiceSummary[] = [];
  let skipped = 0;
  // Subscriptions in batches: one query finds which of their ended periods are invoiced already.
  for (let i = 0; i < subs.length; i += 500) {
    const batch = subs.slice(i, i + 500).map((sub) => ({ sub, due: endedPeriods(sub, opts.now) })).filter((b) => b.due.length > 0);
    if (batch.length === 0) continue;
    const done = new Set(
      (
        await q('invoices')
          .select('tenant_id', 'subscription_id', 'period_start')
          .whereIn('tenant_id', [...new Set(batch.map((b) => b.sub.tenantId))])
          .whereIn('subscription_id', batch.map((b) => b.sub.id))
          .whereNot('status', 'void')
          .where('billing_reason', 'period')
      ).map((r) => `${r.tenant_id}|${r.subscription_id}|${Number(r.period_start)}`),
    );
    for (const { sub, due } of batch) {
      for (const bp of due) {
        if (done.has(`${sub.tenantId}|${sub.id}|${bp.period.start}`)) continue;
        const inv = await createInvoice(db, cache, sub, bp, opts, dueDays);
        if (inv) created.push(summarize(inv));
        else skipped++;
      }
    }
  }
  created.push(...(await thresholdInvoices(db, cache, subs, opts, dueDays)));
  return { created, skipped };
}

class BelowThreshold extends Error {}

/**
 * Spend thresholds (DESIGN.md §15): a subscription whose plan (in force at its current
 * period's end) sets `spendThreshold` gets a threshold invoice when the usage its current
 * period owes beyond what earlier invoices of the period billed reaches it. The period's
 * final invoice then bills the rest (rate/period.ts).
 */
async function thresholdInvoices(db: Db, cache: CatalogCache, subs: Subscription[], opts: GenerateOptions, dueDays: number): Promise<InvoiceSummary[]> {
  // Only subscriptions with a segment not yet ended on a plan version with a threshold can
  // have one at their current period's end: the others are not composed at all.
  const candidates = new Set(
    (
      await db
        .knex('subscription_segments as s')
        .join('plan_versions as v', (j) => j.on('v.plan_key', 's.plan_key').andOn('v.version', 's.plan_version'))
        .whereNotNull('v.spend_threshold')
        .andWhere((w) => w.whereNull('s.ends_at').orWhere('s.ends_at', '>', opts.now))
        .modify((b) => {
          if (opts.tenantId !== undefined) b.where('s.tenant_id', opts.tenantId);
        })
        .distinct('s.tenant_id', 's.subscription_id')
    ).map((r: { tenant_id: string; subscription_id: string }) => `${r.tenant_id}|${r.subscription_id}`),
  );
  const out: InvoiceSummary[] = [];
  for (const sub of subs) {
    if (!candidates.has(`${sub.tenantId}|${sub.id}`)) continue;
    if (sub.startedAt > opts.now || (sub.cancelAt !== null && sub.cancelAt <= opts.now)) continue;
    const bp = subscriptionPeriodAt(sub, opts.now);
    if (bp.period.end <= opts.now) continue;
    const inv = await createInvoice(db, cache, sub, bp, opts, dueDays, 'threshold');
    if (inv) out.push(summarize(inv));
  }
  return out;
}

/** One invoice in its own transaction; null when another process got there first. */
async function createInvoice(
  db: Db,
  cache: CatalogCache,
  sub: Subscription,
  bp: BillingPeriod,
  opts: GenerateOptions,
  dueDays: number,
  reason: BillingReason = 'period',
): Promise<Invoice | null> {
  try {
    return await withTx(db, async (trx) => {
      // The counter lock serialises creators, so this check sees every committed invoice.
      const number = await takeInvoiceNumber(trx);
      const earlier = await trx('invoices')
        .where({ tenant_id: sub.tenantId, subscription_id: sub.id, period_start: bp.period.start, billing_reason: 'period' })
        .orderByRaw('created_at, LENGTH(number), number')
        .select('id', 'status');
      if (earlier.some((i) => i.status !== 'void')) throw new AlreadyInvoiced();
      const voided = reason === 'period' ? earlier.at(-1) : undefined;
      const composed = await composeInvoice(trx, cache, { sub, period: bp.period, nominal: bp.nominal, issuedAt: opts.now, reason, db: handleOn(db, trx) });
      // Rolled back (and its number returned) when the period's unbilled usage is below the threshold.
      if (reason === 'threshold' && !reachesThreshold(composed)) throw new BelowThreshold();
      const head = draftHead(sub, bp.period, composed, {
        id: newInvoiceId(),
        number,
        now: opts.now,
        dueDays,
        supersedes: voided?.id ?? null,
        billingReason: reason,
      });
      await trx('invoices').insert({ ...invoiceRow(head, opts.now), feature_terms: JSON.stringify(composed.featureTerms) });
      await insertLines(trx, head.id, composed.lines);
      await recordDiscountUses(trx, sub.tenantId, head.id, composed.discountsUsed);
      await recordCreditUses(trx, sub.tenantId, head.id, composed.creditsUsed, opts);
      await recordGrantUses(trx, sub.tenantId, head.id, composed.grantsUsed);
      const invoice: Invoice = { ...head, lines: composed.lines };
      await writeAudit(trx, {
        at: opts.now,
        actor: opts.actor,
        tenantId: sub.tenantId,
        entity: 'invoice',
        entityId: head.id,
        action: 'create',
        after: summarize(invoice),
      });
      await emitEvent(trx, { type: 'invoice.created', tenantId: sub.tenantId, data: invoiceToJson(invoice), at: opts.now });
      if (reason === 'threshold') {
        const data = { threshold: composed.plan!.spendThreshold, unbilled: composed.totals.subtotal, invoice: invoiceToJson(invoice) };
        await emitEvent(trx, { type: 'threshold.invoiced', tenantId: sub.tenantId, data, at: opts.now });
      }
      if (!opts.finalize) return invoice;
      const open = { ...invoice, status: 'open' as const, finalizedAt: opts.now };
      await trx('invoices').where({ tenant_id: sub.tenantId, id: head.id }).update({ status: 'open', finalized_at: opts.now, updated_at: opts.now });
      await writeAudit(trx, {
        at: opts.now,
        actor: opts.actor,
        tenantId: sub.tenantId,
        entity: 'invoice',
        entityId: head.id,
        action: 'finalize',
        before: { status: 'draft' },
        after: { status: 'open', number, total: head.total },
      });
      await emitEvent(trx, { type: 'invoice.finalized', tenantId: sub.tenantId, data: invoiceToJson(open), at: opts.now });
      return open;
    });
  } catch (e) {
    if (e instanceof AlreadyInvoiced || e instanceof BelowThreshold || isUniqueViolation(e)) return null;
    throw e;
  }
}

/** The usage a threshold invoice would bill (its subtotal) has reached the plan's threshold. */
function reachesThreshold(composed: Composed): boolean {
  const threshold = composed.plan?.spendThreshold;
  return threshold !== undefined && dec(composed.totals.subtotal).gte(threshold);
}

function minorOf(lines: Array<{ amountMinor: string }>): string {
  return lines.reduce((s, l) => s + BigInt(l.amountMinor), 0n).toString();
}

/** The header of a freshly composed draft invoice (generate and preview build the same one). */
function draftHead(
  sub: Subscription,
  period: Period,
  composed: { totals: InvoiceTotals; lines: InvoiceLine[] },
  o: { id: string; number: string; now: Instant; dueDays: number; supersedes: string | null; billingReason?: BillingReason },
): Omit<Invoice, 'lines'> {
  return {
    id: o.id,
    number: o.number,
    tenantId: sub.tenantId,
    subscriptionId: sub.id,
    period,
    status: 'draft',
    currency: sub.currency,
    ...composed.totals,
    creditNotes: [],
    totalMinor: minorOf(composed.lines),
    issuedAt: o.now,
    dueAt: o.now + o.dueDays * DAY_MS,
    finalizedAt: null,
    voidedAt: null,
    voidReason: null,
    paidAt: null,
    paymentRef: null,
    uncollectibleAt: null,
    supersedes: o.supersedes,
    billingReason: o.billingReason ?? 'period',
    createdAt: o.now,
  };
}

function newInvoiceId(): string {
  return `in_${randomBytes(12).toString('hex')}`;
}

/**
 * The invoice the tenant's current period would get if it closed now: usage so far, base fee
 * for the whole period as scheduled, pending late usage. Nothing is written (the refreshed
 * usage summaries are rolled back too). Null when the tenant has no subscription at `now`.
 */
export async function previewInvoice(db: Db, opts: { now: Instant; tenantId: string; dueDays?: number }): Promise<Invoice | null> {
  const dueDays = checkDueDays(opts.dueDays);
  if (!(await loadTenant(db.knex, opts.tenantId))) throw new BillingError('not_found', `unknown tenant "${opts.tenantId}"`);
  return inRolledBackTx(db, async (tdb) => {
    const q = tdb.knex as Knex.Transaction;
    const sub = await subscriptionAt(q, opts.tenantId, opts.now);
    if (!sub) return null;
    await runAggregate(tdb, { now: opts.now, tenantId: opts.tenantId });
    const { period, nominal } = subscriptionPeriodAt(sub, opts.now);
    const composed = await composeInvoice(q, new CatalogCache(), { sub, period, nominal, issuedAt: opts.now, db: tdb });
    const head = draftHead(sub, period, composed, { id: 'preview', number: 'PREVIEW', now: opts.now, dueDays, supersedes: null });
    return { ...head, lines: composed.lines };
  });
}
