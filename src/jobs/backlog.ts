import type { Db } from '../storage/db.js';
import { readState } from '../aggregate/watermark.js';

/**
 * What is waiting for the next stages, for `billing status`. Each part is read only when
 * its stage's tables exist, so the report works on any schema version.
 */

export interface Backlog {
  /** Events the aggregate stage has not seen yet (above its watermark, or in a hole). */
  aggregation: { eventsWaiting: number; watermark: number | null };
  /** stalledDrafts: open invoices whose Stripe copy is a draft with no finalize call left to send. */
  stripeOutbox: { pending: number; due: number; failed: number; dead: number; stalledDrafts: number } | null;
  /** Subscription periods that have ended without a (non-void) invoice. */
  invoicing: { periodsWaiting: number; oldestPeriodEnd: string | null } | null;
  /** Webhook deliveries waiting (pending), due now, and given up on (failed: dead letters). */
  webhooks: { pending: number; due: number; failed: number } | null;
}

async function invoicingBacklog(db: Db, now: number): Promise<Backlog['invoicing']> {
  if (!(await db.knex.schema.hasTable('invoices'))) return null;
  const { endedPeriods } = await import('../subscriptions/timeline.js');
  const { subscriptionFromRow } = await import('../subscriptions/repository.js');
  const invoiced = new Set(
    (await db.knex('invoices').whereNot('status', 'void').select('tenant_id', 'subscription_id', 'period_start')).map(
      (r) => `${r.tenant_id}|${r.subscription_id}|${Number(r.period_start)}`,
    ),
  );
  let periodsWaiting = 0;
  let oldestPeriodEnd: number | null = null;
  for (const row of await db.knex('subscriptions').select('*')) {
    const sub = subscriptionFromRow(row);
    for (const bp of endedPeriods(sub, now)) {
      if (invoiced.has(`${sub.tenantId}|${sub.id}|${bp.period.start}`)) continue;
      periodsWaiting++;
      if (oldestPeriodEnd === null || bp.period.end < oldestPeriodEnd) oldestPeriodEnd = bp.period.end;
    }
  }
  return { periodsWaiting, oldestPeriodEnd: oldestPeriodEnd === null ? null : new Date(oldestPeriodEnd).toISOString() };
}

export async function aggregationBacklog(db: Db): Promise<Backlog['aggregation']> {
  const { watermark, holes } = await readState(db);
  const q = db.knex('usage_events').count('* as n');
  if (watermark !== null) {
    q.where((w) => {
      w.where('seq', '>', watermark);
      for (const h of holes) w.orWhereBetween('seq', [h.from, h.to]);
    });
  }
  const [r] = await q;
  return { eventsWaiting: Number(r?.n ?? 0), watermark };
}

async function stripeOutbox(db: Db, now: number): Promise<Backlog['stripeOutbox']> {
  if (!(await db.knex.schema.hasTable('stripe_outbox'))) return null;
  const rows = await db.knex('stripe_outbox').whereIn('status', ['pending', 'failed', 'dead']).select('status').count('* as n').groupBy('status');
  const by = new Map(rows.map((r) => [String(r.status), Number(r.n)]));
  const [due] = await db.knex('stripe_outbox').whereIn('status', ['pending', 'failed']).where('next_attempt_at', '<=', now).count('* as n');
  const { outboxProblems } = await import('../stripe/outbox.js');
  const { stalledDrafts } = await outboxProblems(db);
  return { pending: by.get('pending') ?? 0, due: Number(due?.n ?? 0), failed: by.get('failed') ?? 0, dead: by.get('dead') ?? 0, stalledDrafts };
}

export async function backlog(db: Db, now: number): Promise<Backlog> {
  return {
    aggregation: await aggregationBacklog(db),
    invoicing: await invoicingBacklog(db, now),
    stripeOutbox: await stripeOutbox(db, now),
    webhooks: (await db.knex.schema.hasTable('webhook_deliveries')) ? await (await import('../webhooks/deliver.js')).webhookBacklog(db, now) : null,
  };
}
