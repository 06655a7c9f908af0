import type { Db } from '../storage/db.js';

/**
 * What is waiting for the next stages, for `billing status`. Each part is read only when
 * its stage's tables exist, so the report works on any schema version.
 */

export interface Backlog {
  stripeOutbox: { pending: number; due: number; failed: number; dead: number } | null;
}

async function stripeOutbox(db: Db, now: number): Promise<Backlog['stripeOutbox']> {
  if (!(await db.knex.schema.hasTable('stripe_outbox'))) return null;
  const rows = await db.knex('stripe_outbox').whereIn('status', ['pending', 'failed', 'dead']).select('status').count('* as n').groupBy('status');
  const by = new Map(rows.map((r) => [String(r.status), Number(r.n)]));
  const [due] = await db.knex('stripe_outbox').whereIn('status', ['pending', 'failed']).where('next_attempt_at', '<=', now).count('* as n');
  return { pending: by.get('pending') ?? 0, due: Number(due?.n ?? 0), failed: by.get('failed') ?? 0, dead: by.get('dead') ?? 0 };
}

export async function backlog(db: Db, now: number): Promise<Backlog> {
  return { stripeOutbox: await stripeOutbox(db, now) };
}
