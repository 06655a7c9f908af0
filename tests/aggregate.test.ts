import { beforeEach, expect, it } from 'vitest';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { openDb, type Db } from '../src/storage/db.js';
import { asText } from '../src/storage/sql.js';
import { cancelSubscription } from '../src/subscriptions/lifecycle.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { ACTOR, applyTestCatalog, CATALOG_ALL, insertEvents, iso, prng, tenant, type Ev } from './aggregate-support.js';

const NOW = iso('2026-04-20T00:00:00Z');

interface SummaryRow {
  tenant: string;
  feature: string;
  start: string;
  end: string;
  sub: string | null;
  qty: string;
  events: number;
}

async function summaries(db: Db): Promise<SummaryRow[]> {
  const rows = await db
    .knex('usage_summaries')
    .select('tenant_id', 'feature_key', 'period_start', 'period_end', 'subscription_id', 'event_count')
    .select(asText(db, 'quantity').wrap('(', ') AS q'))
    .orderBy(['tenant_id', 'feature_key', 'period_start']);
  return rows.map((r) => ({
    tenant: r.tenant_id,
    feature: r.feature_key,
    start: new Date(Number(r.period_start)).toISOString(),
    end: new Date(Number(r.period_end)).toISOString(),
    sub: r.subscription_id ?? null,
    qty: r.q,
    events: Number(r.event_count),
  }));
}

/** The stored unique-value sets, by `tenant|feature|period_start`. */
async function storedSets(db: Db): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  for (const r of await db.knex('usage_unique_values').orderBy(['tenant_id', 'feature_key', 'period_start', 'value'])) {
    const key = `${r.tenant_id}|${r.feature_key}|${Number(r.period_start)}`;
    if (!out.has(key)) out.set(key, []);
    out.get(key)!.push(String(r.value));
  }
  return out;
}

/** The distinct values of a stored set's group, from its summary's period and the raw events. */
async function eventValues(db: Db, key: string): Promise<string[]> {
  const [tenantId, featureKey, start] = key.split('|');
  const s = await db.knex('usage_summaries').where({ tenant_id: tenantId, feature_key: featureKey, period_start: Number(start) }).first();
  if (!s) return [];
  const events = await db
    .knex('usage_events')
    .where({ tenant_id: tenantId, feature_key: featureKey })
    .andWhere('occurred_at', '>=', Number(start))
    .andWhere('occurred_at', '<', Number(s.period_end));
  const by = featureKey === 'REGIONS' ? (e: Record<string, unknown>) => (e.metadata ? JSON.parse(String(e.metadata)).region : null) : (e: Record<string, unknown>) => e.user_id;
  return [...new Set(events.map(by).filter((v) => v !== null && v !== undefined).map(String))].sort();
}

const M = (units: string) => `${units}000000`; // whole units in micro-units

describeEachDb('billing aggregate', (t) => {
  beforeEach(async () => {
    await applyTestCatalog(t().db, iso('2026-01-01T00:00:00Z'), CATALOG_ALL);
  });

  it('computes every aggregation exactly, per anniversary period', async () => {
    const { db } = t();
    await tenant(db, 'acme', { planKey: 'pro', start: '2026-01-31T10:00:00Z' });
    const ev = (feature: string, at: string, extra: Partial<Ev> = {}): Ev => ({ tenant: 'acme', feature, at, ...extra });
    await insertEvents(db, [
      ev('OCR_SCAN', '2026-02-01T00:00:00Z', { qty: '0.1' }),
      ev('OCR_SCAN', '2026-02-02T00:00:00Z', { qty: '0.2' }),
      ev('OCR_SCAN', '2026-02-28T10:00:00Z', { qty: '5' }), // exactly the next anniversary (31 Jan → 28 Feb)
      ev('API_CALL', '2026-02-03T00:00:00Z', { qty: '7' }),
      ev('API_CALL', '2026-02-04T00:00:00Z', { qty: '9' }),
      ev('STORAGE_GB', '2026-02-05T00:00:00Z', { qty: '12.5' }),
      ev('STORAGE_GB', '2026-02-06T00:00:00Z', { qty: '3' }),
      ev('LOW_WATER', '2026-02-05T00:00:00Z', { qty: '12.5' }),
      ev('LOW_WATER', '2026-02-06T00:00:00Z', { qty: '3.75' }),
      ev('LOW_WATER', '2026-02-07T00:00:00Z', { qty: '8' }),
      ev('SEATS', '2026-02-07T00:00:00Z', { qty: '4' }),
      ev('SEATS', '2026-02-09T00:00:00Z', { qty: '6' }), // latest by time
      ev('SEATS', '2026-02-08T00:00:00Z', { qty: '9' }), // ingested later, but earlier in time
      ev('ACTIVE_USERS', '2026-02-10T00:00:00Z', { user: 'u1' }),
      ev('ACTIVE_USERS', '2026-02-11T00:00:00Z', { user: 'u2' }),
      ev('ACTIVE_USERS', '2026-02-12T00:00:00Z', { user: 'u1' }),
      ev('ACTIVE_USERS', '2026-02-12T00:00:00Z'), // no user: not a distinct value
      ev('REGIONS', '2026-02-13T00:00:00Z', { meta: { region: 'eu' } }),
      ev('REGIONS', '2026-02-14T00:00:00Z', { meta: { region: 'us' } }),
      ev('REGIONS', '2026-02-15T00:00:00Z', { meta: { region: 'eu', x: 1 } }),
    ]);
    // Same instant: the later ingest (higher seq) is the last value.
    await insertEvents(db, [ev('SEATS', '2026-03-01T00:00:00Z', { qty: '2' }), ev('SEATS', '2026-03-01T00:00:00Z', { qty: '8' })]);
    const r = await runAggregate(db, { now: NOW });
    expect(r).toMatchObject({ full: true, groups: 9, events: 22 });
    const P1 = { start: '2026-01-31T10:00:00.000Z', end: '2026-02-28T10:00:00.000Z' };
    const P2 = { start: '2026-02-28T10:00:00.000Z', end: '2026-03-31T10:00:00.000Z' };
    const sub = 'sub_acme_1';
    expect(await summaries(db)).toEqual([
      { tenant: 'acme', feature: 'ACTIVE_USERS', ...P1, sub, qty: M('2'), events: 4 },
      { tenant: 'acme', feature: 'API_CALL', ...P1, sub, qty: M('2'), events: 2 },
      { tenant: 'acme', feature: 'LOW_WATER', ...P1, sub, qty: '3750000', events: 3 },
      { tenant: 'acme', feature: 'OCR_SCAN', ...P1, sub, qty: '300000', events: 2 },
      { tenant: 'acme', feature: 'OCR_SCAN', ...P2, sub, qty: M('5'), events: 1 },
      { tenant: 'acme', feature: 'REGIONS', ...P1, sub, qty: M('2'), events: 3 },
      { tenant: 'acme', feature: 'SEATS', ...P1, sub, qty: M('6'), events: 3 },
      { tenant: 'acme', feature: 'SEATS', ...P2, sub, qty: M('8'), events: 2 },
      { tenant: 'acme', feature: 'STORAGE_GB', ...P1, sub, qty: '12500000', events: 2 },
    ]);
    expect(sub).toBe((await db.knex('subscriptions').first()).id);
    // Nothing new: nothing recomputed.
    expect(await runAggregate(db, { now: NOW })).toMatchObject({ full: false, groups: 0, events: 0 });
    // A merge keeps the smaller of the stored low-water mark and the new events' one.
    await insertEvents(db, [ev('LOW_WATER', '2026-02-20T00:00:00Z', { qty: '9' })]);
    await runAggregate(db, { now: NOW });
    await insertEvents(db, [ev('LOW_WATER', '2026-02-21T00:00:00Z', { qty: '0.25' })]);
    await runAggregate(db, { now: NOW });
    expect((await summaries(db)).find((s) => s.feature === 'LOW_WATER')).toMatchObject({ qty: '250000', events: 5 });
  });

  it('uses calendar months without a subscription, and re-cuts a tenant when it subscribes or cancels', async () => {
    const { db } = t();
    await tenant(db, 'solo');
    await insertEvents(db, [
      { tenant: 'solo', feature: 'OCR_SCAN', qty: '1', at: '2026-03-02T00:00:00Z' },
      { tenant: 'solo', feature: 'OCR_SCAN', qty: '2', at: '2026-03-20T00:00:00Z' },
    ]);
    await runAggregate(db, { now: NOW });
    expect(await summaries(db)).toEqual([
      { tenant: 'solo', feature: 'OCR_SCAN', start: '2026-03-01T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z', sub: null, qty: M('3'), events: 2 },
    ]);
    // Subscribing on 15 Mar splits March: the gap before it, then the anniversary period.
    const { subscribe } = await import('../src/subscriptions/lifecycle.js');
    await subscribe(db, { tenantId: 'solo', planKey: 'starter', start: iso('2026-03-15T00:00:00Z') }, { now: NOW, actor: ACTOR });
    const r = await runAggregate(db, { now: NOW });
    expect(r.groups).toBe(2);
    const sub = (await db.knex('subscriptions').where({ tenant_id: 'solo' }).first()).id;
    expect(await summaries(db)).toEqual([
      { tenant: 'solo', feature: 'OCR_SCAN', start: '2026-03-01T00:00:00.000Z', end: '2026-03-15T00:00:00.000Z', sub: null, qty: M('1'), events: 1 },
      { tenant: 'solo', feature: 'OCR_SCAN', start: '2026-03-15T00:00:00.000Z', end: '2026-04-15T00:00:00.000Z', sub, qty: M('2'), events: 1 },
    ]);
    // Cancelling on 25 Mar ends the period there; later events fall in the gap after it.
    await cancelSubscription(db, { tenantId: 'solo', at: iso('2026-03-25T00:00:00Z') }, { now: iso('2026-03-21T00:00:00Z'), actor: ACTOR });
    await insertEvents(db, [{ tenant: 'solo', feature: 'OCR_SCAN', qty: '4', at: '2026-03-26T00:00:00Z' }]);
    await runAggregate(db, { now: NOW });
    expect((await summaries(db)).map((s) => [s.start, s.end, s.sub, s.qty])).toEqual([
      ['2026-03-01T00:00:00.000Z', '2026-03-15T00:00:00.000Z', null, M('1')],
      ['2026-03-15T00:00:00.000Z', '2026-03-25T00:00:00.000Z', sub, M('2')],
      ['2026-03-25T00:00:00.000Z', '2026-04-01T00:00:00.000Z', null, M('4')],
    ]);
  });

  it('incremental runs equal a full rebuild after random interleavings of ingest and aggregate', async () => {
    const { db } = t();
    const rand = prng(20261121);
    const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
    await tenant(db, 'ann', { planKey: 'pro', start: '2026-01-31T10:00:00Z' });
    await tenant(db, 'bob', { planKey: 'starter', start: '2026-02-15T00:00:00Z' });
    await tenant(db, 'cal');
    const features = ['OCR_SCAN', 'API_CALL', 'STORAGE_GB', 'LOW_WATER', 'SEATS', 'ACTIVE_USERS', 'REGIONS', 'LATENCY_MS', 'DISK_GB'];
    const boundaries = ['2026-02-28T10:00:00Z', '2026-03-15T00:00:00Z', '2026-03-01T00:00:00Z', '2026-03-31T10:00:00Z'].map(iso);
    const from = iso('2026-01-01T00:00:00Z');
    const span = iso('2026-04-20T00:00:00Z') - from;
    for (let round = 0; round < 16; round++) {
      const batch: Ev[] = Array.from({ length: 1 + Math.floor(rand() * 25) }, () => ({
        tenant: pick(['ann', 'bob', 'cal']),
        feature: pick(features),
        qty: `${Math.floor(rand() * 1000)}.${Math.floor(rand() * 10)}`,
        // Late events and events exactly on period boundaries included.
        at: rand() < 0.2 ? pick(boundaries) : from + Math.floor(rand() * span),
        user: pick(['u1', 'u2', 'u3', undefined]),
        meta: pick([{ region: 'eu' }, { region: 'us' }, undefined]),
      }));
      await insertEvents(db, batch);
      if (round === 6) {
        await cancelSubscription(db, { tenantId: 'bob', at: iso('2026-03-20T00:00:00Z') }, { now: iso('2026-03-10T00:00:00Z'), actor: ACTOR });
      }
      const r = rand();
      if (r < 0.5) await runAggregate(db, { now: NOW });
      else if (r < 0.6) await runAggregate(db, { now: NOW, tenantId: pick(['ann', 'bob', 'cal']) });
      else if (r < 0.7) await runAggregate(db, { now: NOW, period: pick(['current', 'previous', '2026-02']) });
    }
    await runAggregate(db, { now: NOW });
    const incremental = await summaries(db);
    expect(incremental.length).toBeGreaterThan(20);
    // Every stored value set is its group's whole set (a PostgreSQL full rebuild stores none;
    // merges fill them group by group).
    const sets = await storedSets(db);
    expect(sets.size).toBeGreaterThan(3);
    for (const [key, values] of sets) expect(values, key).toEqual(await eventValues(db, key));
    const full = await runAggregate(db, { now: NOW, full: true });
    expect(full.full).toBe(true);
    expect(await summaries(db)).toEqual(incremental);
    for (const [key, values] of await storedSets(db)) expect(values, key).toEqual(await eventValues(db, key));
    expect(full.events).toBe(Number((await db.knex('usage_events').count({ n: '*' }))[0].n));
  });

  it('rebuilds one tenant or recomputes one period on request', async () => {
    const { db } = t();
    await tenant(db, 'ann', { planKey: 'pro', start: '2026-01-10T00:00:00Z' });
    await tenant(db, 'bob', { planKey: 'pro', start: '2026-01-25T00:00:00Z' });
    await insertEvents(db, [
      { tenant: 'ann', feature: 'OCR_SCAN', qty: '1', at: '2026-03-11T00:00:00Z' },
      { tenant: 'ann', feature: 'OCR_SCAN', qty: '1', at: '2026-04-11T00:00:00Z' },
      { tenant: 'bob', feature: 'OCR_SCAN', qty: '1', at: '2026-04-11T00:00:00Z' },
    ]);
    const first = await runAggregate(db, { now: NOW });
    await db.knex('usage_summaries').update({ quantity: 0 });
    expect(await runAggregate(db, { now: NOW, tenantId: 'ann' })).toEqual({ groups: 2, events: 2, full: false, watermark: first.watermark, outOfRange: [] });
    // current period of each tenant: ann [10 Apr, 10 May), bob [25 Mar, 25 Apr)
    expect(await runAggregate(db, { now: NOW, period: 'current' })).toMatchObject({ groups: 2, events: 2 });
    expect((await summaries(db)).map((s) => [s.tenant, s.start, s.qty])).toEqual([
      ['ann', '2026-03-10T00:00:00.000Z', M('1')],
      ['ann', '2026-04-10T00:00:00.000Z', M('1')],
      ['bob', '2026-03-25T00:00:00.000Z', M('1')],
    ]);
  });

  it('prints counts with --json', async () => {
    const { db, url } = t();
    await tenant(db, 'ann', { planKey: 'pro', start: '2026-01-10T00:00:00Z' });
    await insertEvents(db, [{ tenant: 'ann', feature: 'OCR_SCAN', qty: '2', at: '2026-03-11T00:00:00Z' }]);
    const r = await runCli(['aggregate', '--json'], { db: url, now: '2026-04-20T00:00:00Z' });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ groups: 1, events: 1, full: true });
    const again = await runCli(['aggregate'], { db: url, now: '2026-04-20T00:00:00Z' });
    expect(again.stdout).toMatch(/^aggregated \(incremental\): 0 summaries from 0 events/);
    const bad = await runCli(['aggregate', '--period', '2026-13'], { db: url });
    expect(bad.code).toBe(2);
  });
});

// PostgreSQL's one-statement passes pick a quantity per aggregation with a CASE: with only
// sums there is no branch to pick, which once made them invalid SQL.
describeEachDb('billing aggregate, a catalog of one aggregation', (t) => {
  // PostgreSQL's rebuild builds its SQL from the aggregations present: each branch must stand alone.
  it.each([
    { aggregation: 'sum', users: [null, null], first: '2', merged: '5' },
    { aggregation: 'unique', users: ['ann', 'bob'], first: '1', merged: '2' },
    // Accumulators (aggregate/value.ts): avg stores the sum; weighted_sum quantity × seconds to
    // the window's end (1 May): 2 × 29 days, then + 3 × 28 days.
    { aggregation: 'avg', users: [null, null], first: '2', merged: '5' },
    { aggregation: 'weighted_sum', users: [null, null], first: '5011200', merged: '12268800' },
  ] as const)('$aggregation: rebuilds and merges', async ({ aggregation, users, first, merged }) => {
    const { db } = t();
    const { applyCatalog } = await import('../src/catalog/apply.js');
    const now = iso('2026-01-01T00:00:00Z');
    await applyCatalog(db, {
      features: [{ key: 'API_CALL', name: 'API calls', aggregation, ...(aggregation === 'unique' ? { uniqueBy: 'user_id' } : {}) }],
      plans: [{ key: 'basic', name: 'Basic', currency: 'USD', price: '1.00', interval: 'month', features: { API_CALL: { included: 10 } } }],
    }, { now, actor: ACTOR });
    await tenant(db, 'acme', { planKey: 'basic', start: '2026-01-01T00:00:00Z' });
    await insertEvents(db, [{ tenant: 'acme', feature: 'API_CALL', qty: '2', at: '2026-04-02T00:00:00Z', user: users[0] ?? undefined }]);
    expect(await runAggregate(db, { now: NOW, full: true })).toMatchObject({ full: true, groups: 1, events: 1 });
    expect((await summaries(db)).map((r) => r.qty)).toEqual([M(first)]);
    await insertEvents(db, [{ tenant: 'acme', feature: 'API_CALL', qty: '3', at: '2026-04-03T00:00:00Z', user: users[1] ?? undefined }]);
    expect(await runAggregate(db, { now: NOW })).toMatchObject({ full: false, groups: 1, events: 1 });
    expect((await summaries(db)).map((r) => [r.feature, r.qty, r.events])).toEqual([['API_CALL', M(merged), 2]]);
  });
});

describeEachDb('billing aggregate under concurrent ingest', (t) => {
  it('picks up an event whose transaction commits after a later seq was aggregated', async (ctx) => {
    const { db, url } = t();
    if (db.dialect !== 'pg') ctx.skip(); // SQLite has one writer: seqs become visible in order
    await applyTestCatalog(db, iso('2026-01-01T00:00:00Z'));
    await tenant(db, 'ann', { planKey: 'pro', start: '2026-01-10T00:00:00Z' });
    await runAggregate(db, { now: NOW });
    const other = await openDb(url);
    try {
      const slow = await other.knex.transaction();
      await slow('usage_events').insert({
        tenant_id: 'ann', idempotency_key: 'slow', feature_key: 'OCR_SCAN', quantity: M('5'), occurred_at: iso('2026-04-12T00:00:00Z'), ingested_at: 0,
      });
      await insertEvents(db, [{ tenant: 'ann', feature: 'OCR_SCAN', qty: '1', at: '2026-04-12T00:00:00Z' }]);
      await runAggregate(db, { now: NOW });
      expect((await summaries(db)).map((s) => s.qty)).toEqual([M('1')]);
      const holes = JSON.parse((await db.knex('job_state').where({ key: 'aggregate.holes' }).first()).value);
      expect(holes).toHaveLength(1);
      await slow.commit();
      await runAggregate(db, { now: NOW });
      expect((await summaries(db)).map((s) => s.qty)).toEqual([M('6')]);
      // Re-reading the hole until it expires never counts the event twice.
      await runAggregate(db, { now: NOW });
      expect((await summaries(db)).map((s) => s.qty)).toEqual([M('6')]);
    } finally {
      await other.close();
    }
  });
});
