import { randomBytes } from 'node:crypto';
import { openDb, type Db } from '../../src/storage/db.js';
import type { Instant } from '../../src/domain/period.js';

/** Split xs into slices of at most n (bulk inserts stay under bind-parameter limits). */
export const chunk = <T>(xs: T[], n: number): T[][] =>
  Array.from({ length: Math.ceil(xs.length / n) }, (_, i) => xs.slice(i * n, i * n + n));

/**
 * `count` tenants (t000000, t000001, ...), each with an active monthly USD subscription on
 * `planKey` v1 anchored at `start`, written in bulk. Returns the tenant ids.
 */
export async function seedSubscribedTenants(db: Db, count: number, start: Instant, planKey: string): Promise<string[]> {
  const ids = Array.from({ length: count }, (_, i) => `t${String(i).padStart(6, '0')}`);
  for (const part of chunk(ids, 200)) {
    await db.knex('tenants').insert(part.map((id) => ({ id, created_at: start })));
    await db.knex('subscriptions').insert(part.map((id) => ({
      tenant_id: id, id: `sub_${id}`, status: 'active', anchor_at: start, interval: 'month', currency: 'USD',
      started_at: start, created_at: start, updated_at: start,
    })));
    await db.knex('subscription_segments').insert(part.map((id) => ({
      tenant_id: id, subscription_id: `sub_${id}`, seq: 1, plan_key: planKey, plan_version: 1, starts_at: start, created_at: start,
    })));
  }
  return ids;
}

/** A fresh, migrated schema on the bench's PostgreSQL (BILLING_BENCH_PG_URL), and how to drop it. */
export async function benchPgSchema(prefix: string): Promise<{ url: string; drop: () => Promise<void> } | null> {
  const pg = process.env.BILLING_BENCH_PG_URL;
  if (!pg) return null;
  const schema = `${prefix}_${randomBytes(4).toString('hex')}`;
  const url = `${pg}${pg.includes('?') ? '&' : '?'}schema=${schema}`;
  const admin = await openDb(url, 'none');
  await admin.knex.migrate.latest();
  await admin.close();
  return {
    url,
    drop: async () => {
      const a = await openDb(url, 'none');
      await a.knex.raw('drop schema if exists ?? cascade', [schema]);
      await a.close();
    },
  };
}
