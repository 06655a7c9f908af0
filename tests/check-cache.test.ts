import { afterEach, beforeEach, expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { setQuota } from '../src/subscriptions/quota.js';
import { checkEntitlement } from '../src/entitlements/check.js';
import { readTermsEpoch } from '../src/entitlements/terms-cache.js';
import { recordUsage } from '../src/ingest/record.js';
import { openDb, type Db } from '../src/storage/db.js';
import { cancelSubscription, changePlan } from '../src/subscriptions/lifecycle.js';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { describeEachDb } from './helpers/db.js';
import { ACTOR, applyTestCatalog, CATALOG, CATALOG_ALL, insertEvents, iso, maybeAggregate, randomEvents, randomInts, tenant, type Ev } from './aggregate-support.js';
import { microToDecimal } from '../src/domain/quantity.js';
import { featureFromRow } from '../src/catalog/repository.js';
import { windowQuantitySql } from '../src/aggregate/usage-read.js';
import { decStr } from '../src/domain/decimal.js';
import { usageValue } from '../src/aggregate/value.js';
import type { Aggregation } from '../src/domain/catalog.js';

const NOW = iso('2026-03-20T12:00:00Z');
const opts = { now: NOW, actor: ACTOR };

// A serving process keeps one handle and its terms cache for hours, while operators change
// plans, quotas and subscriptions from other processes. Every change must show at once.
describeEachDb('entitlement terms cache', (t) => {
  let other: Db;

  beforeEach(async () => {
    const { db, url } = t();
    await applyTestCatalog(db, iso('2026-01-01T00:00:00Z'), CATALOG_ALL);
    await tenant(db, 'acme', { planKey: 'starter', start: '2026-01-10T00:00:00Z' });
    other = await openDb(url); // stands in for another process
  });
  afterEach(async () => {
    await other?.close();
  });

  const check = (tenantId: string, featureKey: string, quantity = '1') =>
    checkEntitlement(t().db, { tenantId, featureKey, quantity }, { now: NOW });

  /** The statements one check sends, counted on the handle's knex. */
  async function statementsOf(fn: () => Promise<unknown>): Promise<number> {
    let n = 0;
    const count = () => n++;
    t().db.knex.on('query', count);
    try {
      await fn();
    } finally {
      t().db.knex.off('query', count);
    }
    return n;
  }

  it('answers a repeated check in one statement, usage included', async () => {
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBeGreaterThan(1);
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBe(1);
    // Usage is read live, never cached: a new event shows in the next answer.
    await recordUsage(other, [{ tenantId: 'acme', featureKey: 'OCR_SCAN', quantity: '49.5', eventId: 'e1', occurredAt: NOW - 1000 }], { now: NOW });
    expect(await check('acme', 'OCR_SCAN')).toMatchObject({ used: '49.5', remaining: '0.5', reason: 'overage' });
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBe(1);
  });

  it('sees quota, plan, cancellation and new tenants changed by another process', async () => {
    expect(await check('acme', 'API_CALL', '101')).toMatchObject({ allowed: false, reason: 'limit_reached', limit: '100' });
    expect(await check('newco', 'API_CALL')).toMatchObject({ reason: 'unknown_tenant' });

    await setQuota(other, { tenantId: 'acme', featureKey: 'API_CALL', included: '500', limit: '500' }, opts);
    expect(await check('acme', 'API_CALL', '101')).toMatchObject({ allowed: true, included: '500', limit: '500' });

    await changePlan(other, { tenantId: 'acme', planKey: 'pro', at: 'now' }, opts);
    expect(await check('acme', 'PREMIUM_VOICE')).toMatchObject({ allowed: true, reason: 'within_plan' });

    await tenant(other, 'newco', { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
    expect(await check('newco', 'API_CALL')).toMatchObject({ allowed: true, limit: '100' });

    await cancelSubscription(other, { tenantId: 'acme', at: 'now' }, opts);
    expect(await check('acme', 'API_CALL')).toMatchObject({ allowed: false, reason: 'no_active_subscription' });
  });

  it('sees a new plan version and a hand-written UPDATE, whoever the writer is', async () => {
    await tenant(t().db, 'beta', { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
    expect(await check('beta', 'OCR_SCAN', '60')).toMatchObject({ included: '50', reason: 'overage', hardStop: false });

    // A raw UPDATE bypassing every function of this codebase still moves the epoch.
    await other.knex('plan_features').where({ plan_key: 'starter', feature_key: 'OCR_SCAN' }).update({ hard_stop: true });
    expect(await check('beta', 'OCR_SCAN', '60')).toMatchObject({ allowed: false, reason: 'limit_reached', hardStop: true });

    // A price change makes a new version; the subscriber keeps its version's terms.
    const changed = structuredClone(CATALOG);
    changed.plans[0].features.OCR_SCAN = { included: 5000, overage: { model: 'per_unit', unitPrice: '0.05' } };
    await applyCatalog(other, changed, opts);
    expect(await check('beta', 'OCR_SCAN', '60')).toMatchObject({ included: '50', hardStop: true });
    await tenant(other, 'gamma', { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
    expect(await check('gamma', 'OCR_SCAN', '60')).toMatchObject({ included: '5000', reason: 'within_plan' });
  });

  it('moves the epoch on committed term changes only, not on usage or aggregation', async () => {
    const { db } = t();
    const before = await readTermsEpoch(db);
    await recordUsage(other, [{ tenantId: 'acme', featureKey: 'OCR_SCAN', quantity: '1', eventId: 'e1', occurredAt: NOW - 1000 }], { now: NOW });
    await runAggregate(other, { now: NOW });
    expect(await readTermsEpoch(db)).toBe(before);

    // A rolled-back change leaves it where it was.
    await other.knex
      .transaction(async (trx) => {
        await trx('quota_overrides').insert({ tenant_id: 'acme', feature_key: 'API_CALL', included: '7', included_set: true, updated_at: NOW });
        throw new Error('roll back');
      })
      .catch(() => {});
    expect(await readTermsEpoch(db)).toBe(before);
    expect(await check('acme', 'API_CALL')).toMatchObject({ limit: '100' });

    await setQuota(other, { tenantId: 'acme', featureKey: 'API_CALL', included: '7' }, opts);
    expect(await readTermsEpoch(db)).toBeGreaterThan(before);
  });

  it('reads the same usage as the aggregate stage, for every aggregation', async () => {
    const { db } = t();
    // pro anchored on the 10th: the current window is [10 Mar, 10 Apr).
    await tenant(db, 'pro1', { planKey: 'pro', start: '2026-01-10T00:00:00Z' });
    const rnd = randomInts(7);
    const features = ['OCR_SCAN', 'API_CALL', 'STORAGE_GB', 'LOW_WATER', 'SEATS', 'ACTIVE_USERS', 'REGIONS', 'LATENCY_MS', 'DISK_GB'];
    const events: Ev[] = Array.from({ length: 400 }, () => ({
      tenant: 'pro1',
      feature: features[rnd(features.length)],
      qty: `${rnd(1000)}.${rnd(1000)}`,
      // a few days around both window edges, and equal instants, so `last` breaks ties by seq
      at: iso('2026-03-08T00:00:00Z') + rnd(12) * 86_400_000,
      user: rnd(4) ? `u${rnd(30)}` : undefined,
      meta: rnd(3) ? { region: `r${rnd(5)}` } : undefined,
    }));
    await insertEvents(db, events);
    await runAggregate(db, { now: NOW });
    const window = iso('2026-03-10T00:00:00Z');
    for (const feature of features) {
      const row = await db.knex('usage_summaries').where({ tenant_id: 'pro1', feature_key: feature, period_start: window }).first();
      expect(row, feature).toBeDefined();
      const r = await check('pro1', feature);
      // avg and weighted_sum store accumulators: the value is value.ts's, over [10 Mar, 10 Apr).
      const aggregation = CATALOG_ALL.features.find((f) => f.key === feature)!.aggregation as Aggregation;
      const value = usageValue(aggregation, String(row.quantity), Number(row.event_count), { start: window, end: iso('2026-04-10T00:00:00Z') })!;
      expect(r.used, feature).toBe(decStr(microToDecimal(value)));
    }
    expect((await check('pro1', 'REGIONS')).used).toBe('5');
  });
  it('keeps its usage statement prepared per connection on PostgreSQL, with the same answers', async () => {
    const { db } = t();
    await recordUsage(db, [{ tenantId: 'acme', featureKey: 'OCR_SCAN', quantity: '7', eventId: 'p1', occurredAt: NOW - 1000 }], { now: NOW });
    // One transaction is one connection: the second check reuses what the first prepared.
    const { answers, prepared } = await db.knex.transaction(async (trx) => {
      const answers = [];
      for (let i = 0; i < 3; i++) answers.push(await checkEntitlement(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', quantity: '1' }, { now: NOW, trx }));
      const prepared =
        db.dialect === 'pg'
          ? (await trx.raw("SELECT statement FROM pg_prepared_statements WHERE name LIKE 'billing_%'")).rows.map((r: { statement: string }) => r.statement)
          : [];
      return { answers, prepared };
    });
    expect(answers[1]).toEqual(answers[0]);
    expect(answers[2]).toEqual(answers[0]);
    expect(answers[0]).toMatchObject({ used: '7', allowed: true });
    expect(await check('acme', 'OCR_SCAN')).toEqual(answers[0]);
    if (db.dialect === 'pg') {
      expect(prepared).toHaveLength(1);
      expect(prepared[0]).toContain('FROM usage_events e WHERE');
    }
  });
  // A check reads the window's summary plus the events since the last aggregate run, so its
  // cost does not grow with the tenant's volume — but only while that sum is exact.
  it('answers from the summary plus the new events, and from the events when the summary cannot be trusted', async () => {
    const { db } = t();
    const rec = (id: string, quantity: string, via = db) =>
      recordUsage(via, [{ tenantId: 'acme', featureKey: 'OCR_SCAN', quantity, eventId: id, occurredAt: NOW - 1000 }], { now: NOW });
    await rec('a', '10');
    await runAggregate(db, { now: NOW });
    expect((await check('acme', 'OCR_SCAN')).used).toBe('10');
    // Proof that the summary is read: a changed summary shows.
    const window = { tenant_id: 'acme', feature_key: 'OCR_SCAN', period_start: iso('2026-03-10T00:00:00Z') };
    await db.knex('usage_summaries').where(window).increment('quantity', 1_000_000);
    expect((await check('acme', 'OCR_SCAN')).used).toBe('11');
    // A handle's first check (a `billing check` process) reads the summary too.
    const first = await openDb(t().url);
    try {
      expect((await checkEntitlement(first, { tenantId: 'acme', featureKey: 'OCR_SCAN' }, { now: NOW })).used).toBe('11');
    } finally {
      await first.close();
    }
    await rec('b', '2');
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBe(1);
    expect((await check('acme', 'OCR_SCAN')).used).toBe('13'); // summary + the new event

    // A hole (a seq below the watermark not yet visible) makes the summary untrustworthy.
    await db.knex('job_state').where({ key: 'aggregate.holes' }).update({ value: '[{"from":1,"to":1,"xid":"1"}]' });
    expect((await check('acme', 'OCR_SCAN')).used).toBe('12'); // the events themselves
    await db.knex('job_state').where({ key: 'aggregate.holes' }).update({ value: '[]' });
    expect((await check('acme', 'OCR_SCAN')).used).toBe('12'); // the events, which find it trusted again
    expect((await check('acme', 'OCR_SCAN')).used).toBe('13');

    // Subscriptions changed since the summaries were cut: the events, until the next run.
    await cancelSubscription(other, { tenantId: 'acme', at: iso('2026-05-01T00:00:00Z') }, { now: NOW, actor: ACTOR });
    expect((await check('acme', 'OCR_SCAN')).used).toBe('12');
    await runAggregate(other, { now: NOW });
    expect((await check('acme', 'OCR_SCAN')).used).toBe('12');
    await db.knex('usage_summaries').where(window).increment('quantity', 1_000_000);
    expect((await check('acme', 'OCR_SCAN')).used).toBe('13'); // trusted again
    await db.knex('usage_summaries').where(window).decrement('quantity', 1_000_000);

    // Another process aggregated since this handle's last check: still exact, one retry.
    await rec('c', '5', other);
    await runAggregate(other, { now: NOW });
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBe(2);
    expect((await check('acme', 'OCR_SCAN')).used).toBe('17');
    expect(await statementsOf(() => check('acme', 'OCR_SCAN'))).toBe(1);
  });

  it('equals a read of every event of the window after random interleavings of usage, aggregate runs and cancellations', async () => {
    const { db } = t();
    await tenant(db, 'pro1', { planKey: 'pro', start: '2026-01-10T00:00:00Z' });
    const rnd = randomInts(11);
    const features = ['OCR_SCAN', 'API_CALL', 'STORAGE_GB', 'LOW_WATER', 'SEATS', 'ACTIVE_USERS', 'REGIONS', 'LATENCY_MS', 'DISK_GB'];
    const byKey = new Map((await db.knex('features')).map((r) => [r.key as string, featureFromRow(r)]));
    const window = { tenantId: 'pro1', start: iso('2026-03-10T00:00:00Z'), end: iso('2026-04-10T00:00:00Z') };
    for (let step = 0; step < 12; step++) {
      // around the window's start
      await insertEvents(db, randomEvents(rnd, { tenants: ['pro1'], features, from: '2026-03-08T00:00:00Z', days: 5, max: 40 }));
      await maybeAggregate(db, rnd, NOW);
      // Re-cuts the tenant's windows (a later end) without moving the current one.
      if (step === 6) await cancelSubscription(other, { tenantId: 'pro1', at: iso('2026-06-01T00:00:00Z') }, { now: NOW, actor: ACTOR });
      for (const key of features) {
        const whole = windowQuantitySql(db, byKey.get(key)!, window);
        const res = await db.knex.raw(`SELECT (${whole.sql}) AS q`, whole.bindings);
        const raw = (db.dialect === 'pg' ? res.rows : res)[0].q;
        const n = Number((await db.knex('usage_events').where({ tenant_id: 'pro1', feature_key: key }).andWhere('occurred_at', '>=', window.start).andWhere('occurred_at', '<', window.end).count({ n: '*' }))[0].n);
        const value = usageValue(byKey.get(key)!.aggregation, raw === null ? null : String(raw), n, window);
        const expected = decStr(microToDecimal(value ?? '0'));
        expect((await check('pro1', key)).used, `step ${step} ${key}`).toBe(expected);
      }
    }
  });
});
