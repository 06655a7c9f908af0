// Builders shared by the aggregate, check and report tests: a catalog covering every
// aggregation, tenants and subscriptions through the real catalog/subscription functions,
// and events inserted the way ingest stores them.
import { applyCatalog } from '../src/catalog/apply.js';
import { decimalToMicro } from '../src/domain/quantity.js';
import type { Db } from '../src/storage/db.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { runAggregate } from '../src/aggregate/aggregate.js';

export const ACTOR = 'test';

export const CATALOG = {
  features: [
    { key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' },
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'count' },
    { key: 'STORAGE_GB', name: 'Storage', unit: 'GB', aggregation: 'max' },
    { key: 'LOW_WATER', name: 'Low-water mark', unit: 'GB', aggregation: 'min' },
    { key: 'SEATS', name: 'Seats', unit: 'seat', aggregation: 'last' },
    { key: 'ACTIVE_USERS', name: 'Active users', unit: 'user', aggregation: 'unique', uniqueBy: 'user_id' },
    { key: 'REGIONS', name: 'Regions', unit: 'region', aggregation: 'unique', uniqueBy: 'region' },
    { key: 'PREMIUM_VOICE', name: 'Premium voice', type: 'boolean' },
  ],
  plans: [
    {
      key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month', trialDays: 0,
      features: {
        OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
        API_CALL: { included: 100, hardStop: true },
        STORAGE_GB: { included: 5, overage: { model: 'graduated', tiers: [
          { upTo: 100, unitPrice: '0.02' }, { upTo: null, unitPrice: '0.01', flatPrice: '1.00' }] } },
        SEATS: { included: 3, overage: { model: 'per_unit', unitPrice: '8.00' } },
        ACTIVE_USERS: { included: 2, overage: { model: 'per_unit', unitPrice: '4.00' } },
        PREMIUM_VOICE: { enabled: false },
      },
    },
    {
      key: 'pro', name: 'Pro', currency: 'USD', price: '99.00', interval: 'month', trialDays: 14,
      features: {
        OCR_SCAN: { included: 200, overage: { model: 'per_unit', unitPrice: '0.04' } },
        API_CALL: { included: null },
        STORAGE_GB: { included: 5, overage: { model: 'per_unit', unitPrice: '0.10' } },
        LOW_WATER: { included: 50, overage: { model: 'per_unit', unitPrice: '0.10' } },
        SEATS: { included: 10, hardStop: true, limit: 25, overage: { model: 'per_unit', unitPrice: '8.00' } },
        ACTIVE_USERS: { included: 20 },
        REGIONS: { included: 3, hardStop: true },
        PREMIUM_VOICE: { enabled: true },
      },
    },
    {
      key: 'yen', name: 'Yen', currency: 'JPY', price: '1000', interval: 'month',
      features: { OCR_SCAN: { included: 10, overage: { model: 'per_unit', unitPrice: '3' } } },
    },
  ],
};

/**
 * CATALOG plus an average and a time-weighted sum, both in the pro plan (the aggregate and
 * check property tests; reports keep CATALOG, their thresholds count its features).
 */
export const CATALOG_ALL = {
  features: [
    ...CATALOG.features,
    { key: 'LATENCY_MS', name: 'Mean latency', unit: 'ms', aggregation: 'avg' },
    { key: 'DISK_GB', name: 'Disk', unit: 'GB', aggregation: 'weighted_sum' },
  ],
  plans: CATALOG.plans.map((p) =>
    p.key === 'pro' ? { ...p, features: { ...p.features, LATENCY_MS: { included: null }, DISK_GB: { included: 100, overage: { model: 'per_unit', unitPrice: '0.10' } } } } : p,
  ),
};

export const iso = (s: string): number => Date.parse(s);

export async function applyTestCatalog(db: Db, now: number, catalog: typeof CATALOG | typeof CATALOG_ALL = CATALOG): Promise<void> {
  await applyCatalog(db, catalog, { now, actor: ACTOR });
}

/** Create a tenant, and subscribe it when a plan is given. */
export async function tenant(
  db: Db,
  id: string,
  plan?: { planKey: string; start: string; trialDays?: number },
): Promise<void> {
  const now = plan ? iso(plan.start) : iso('2026-01-01T00:00:00Z');
  await createTenant(db, { id }, { now, actor: ACTOR });
  if (plan) {
    await subscribe(db, { tenantId: id, planKey: plan.planKey, start: iso(plan.start), trialDays: plan.trialDays ?? 0 }, { now, actor: ACTOR });
  }
}

export interface Ev {
  tenant: string;
  feature: string;
  qty?: string;
  at: string | number;
  user?: string;
  meta?: Record<string, unknown>;
}

let keySeq = 0;

/** Insert events as ingest stores them (micro-unit quantities, epoch-ms instants). */
export async function insertEvents(db: Db, events: Ev[]): Promise<void> {
  const rows = events.map((e) => ({
    tenant_id: e.tenant,
    idempotency_key: `k${++keySeq}`,
    feature_key: e.feature,
    quantity: decimalToMicro(e.qty ?? '1'),
    occurred_at: typeof e.at === 'number' ? e.at : iso(e.at),
    ingested_at: typeof e.at === 'number' ? e.at : iso(e.at),
    user_id: e.user ?? null,
    metadata: e.meta ? JSON.stringify(e.meta) : null,
  }));
  for (let i = 0; i < rows.length; i += 500) await db.knex('usage_events').insert(rows.slice(i, i + 500));
}

/** Small deterministic PRNG (mulberry32) so property tests replay exactly: floats in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whole numbers in [0, n) from prng(seed). */
export function randomInts(seed: number): (n: number) => number {
  const next = prng(seed);
  return (n) => Math.floor(next() * n);
}

/**
 * A random batch of usage for the property tests: up to `max` events of the tenants and
 * features, on whole days from `from` (a few instants, so `last` breaks ties by seq), with
 * and without user ids and metadata for the unique counts.
 */
export function randomEvents(rnd: (n: number) => number, o: { tenants: string[]; features: string[]; from: string; days: number; max: number }): Ev[] {
  return Array.from({ length: 1 + rnd(o.max) }, () => ({
    tenant: o.tenants[rnd(o.tenants.length)],
    feature: o.features[rnd(o.features.length)],
    qty: `${rnd(100)}.${rnd(10)}`,
    at: iso(o.from) + rnd(o.days) * 86_400_000,
    user: rnd(4) ? `u${rnd(9)}` : undefined,
    meta: rnd(3) ? { region: `r${rnd(4)}` } : undefined,
  }));
}

/** One in four: an incremental run; one in four: a full rebuild; else nothing. */
export async function maybeAggregate(db: Db, rnd: (n: number) => number, now: number): Promise<void> {
  const move = rnd(4);
  if (move === 0) await runAggregate(db, { now });
  if (move === 1) await runAggregate(db, { now, full: true });
}
