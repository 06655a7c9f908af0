import { beforeEach, describe, expect, it } from 'vitest';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { selectWindow } from '../src/aggregate/periods.js';
import { TenantTimeline, windowsKey } from '../src/aggregate/windows.js';
import { tenantUsage, usageByTenant } from '../src/aggregate/usage.js';
import { loadFeatures } from '../src/catalog/repository.js';
import { loadTenantTerms } from '../src/rate/tenant-terms.js';
import type { Db } from '../src/storage/db.js';
import { runOverage } from '../src/rate/overage.js';
import { buildEstimate } from '../src/report/estimate.js';
import { buildHistory } from '../src/report/history.js';
import { buildReport, type TenantReport } from '../src/report/report.js';
import type { Subscription } from '../src/subscriptions/repository.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { ACTOR, applyTestCatalog, insertEvents, iso, maybeAggregate, randomEvents, randomInts, tenant, type Ev } from './aggregate-support.js';
import { cancelSubscription } from '../src/subscriptions/lifecycle.js';
import { applyCatalog } from '../src/catalog/apply.js';

const times = (n: number, e: Omit<Ev, 'at'>, at: string): Ev[] => Array.from({ length: n }, () => ({ ...e, at }));

/** A month of usage for several tenants on different plans, anchors and currencies. */
async function month(db: Parameters<typeof applyTestCatalog>[0]): Promise<void> {
  await applyTestCatalog(db, iso('2026-01-01T00:00:00Z'));
  await tenant(db, 'acme', { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
  await tenant(db, 'bigco', { planKey: 'pro', start: '2026-03-15T00:00:00Z', trialDays: 14 });
  await tenant(db, 'yenco', { planKey: 'yen', start: '2026-03-10T00:00:00Z' });
  await tenant(db, 'solo');
  await tenant(db, 'idle');
  await insertEvents(db, [
    { tenant: 'acme', feature: 'OCR_SCAN', qty: '50', at: '2026-03-02T00:00:00Z' },
    { tenant: 'acme', feature: 'OCR_SCAN', qty: '25', at: '2026-03-31T23:59:59.999Z' },
    { tenant: 'acme', feature: 'OCR_SCAN', qty: '1000', at: '2026-04-01T00:00:00Z' }, // next period
    { tenant: 'acme', feature: 'STORAGE_GB', qty: '40', at: '2026-03-03T00:00:00Z' },
    { tenant: 'acme', feature: 'STORAGE_GB', qty: '105.5', at: '2026-03-04T00:00:00Z' },
    { tenant: 'acme', feature: 'SEATS', qty: '9', at: '2026-03-05T00:00:00Z' },
    { tenant: 'acme', feature: 'SEATS', qty: '4', at: '2026-03-06T00:00:00Z' },
    { tenant: 'acme', feature: 'ACTIVE_USERS', at: '2026-03-07T00:00:00Z', user: 'u1' },
    { tenant: 'acme', feature: 'ACTIVE_USERS', at: '2026-03-07T00:00:00Z', user: 'u2' },
    { tenant: 'acme', feature: 'ACTIVE_USERS', at: '2026-03-08T00:00:00Z', user: 'u3' },
    ...times(40, { tenant: 'acme', feature: 'API_CALL' }, '2026-03-09T00:00:00Z'),
    { tenant: 'bigco', feature: 'OCR_SCAN', qty: '0.1', at: '2026-03-16T00:00:00Z' },
    { tenant: 'bigco', feature: 'OCR_SCAN', qty: '0.2', at: '2026-04-14T00:00:00Z' },
    ...times(3, { tenant: 'bigco', feature: 'API_CALL' }, '2026-03-20T00:00:00Z'),
    { tenant: 'yenco', feature: 'OCR_SCAN', qty: '10.5', at: '2026-03-20T00:00:00Z' },
    { tenant: 'solo', feature: 'OCR_SCAN', qty: '5', at: '2026-03-20T00:00:00Z' },
  ]);
}

const NOW = '2026-04-20T00:00:00Z';

describeEachDb('billing report', (t) => {
  beforeEach(async () => {
    await month(t().db);
  });

  it('reports a month for several tenants exactly (report --json)', async () => {
    const { url } = t();
    const r = await runCli(['report', '--period', '2026-03', '--json'], { db: url, now: NOW });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const f = (featureKey: string, used: string, included: string | null, overage: string, overageAmount: string, isExceeded: boolean, hardStop = false) =>
      ({ featureKey, used, included, overage, overageAmount, isExceeded, hardStop });
    expect(JSON.parse(r.stdout)).toEqual([
      {
        tenantId: 'acme', currency: 'USD', period: { start: '2026-03-01T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z' },
        plan: { key: 'starter', version: 1 }, subscriptionId: 'sub_acme_1',
        features: [
          f('ACTIVE_USERS', '3', '2', '1', '4.00', true),
          f('API_CALL', '40', '100', '0', '0.00', false, true),
          f('OCR_SCAN', '75', '50', '25', '1.25', true),
          f('SEATS', '4', '3', '1', '8.00', true),
          // 100 GB at 0.02 + 0.5 GB at 0.01 + 1.00 flat = 3.005, rounded half away from zero once
          f('STORAGE_GB', '105.5', '5', '100.5', '3.01', true),
        ],
        totalOverageAmount: '16.26',
        totalAmount: '45.26', // base fee 29.00 + usage 16.26
      },
      {
        tenantId: 'bigco', currency: 'USD', period: { start: '2026-03-15T00:00:00.000Z', end: '2026-04-15T00:00:00.000Z' },
        plan: { key: 'pro', version: 1 }, subscriptionId: 'sub_bigco_1',
        features: [
          f('ACTIVE_USERS', '0', '20', '0', '0.00', false),
          f('API_CALL', '3', null, '0', '0.00', false),
          f('LOW_WATER', '0', '50', '0', '0.00', false),
          f('OCR_SCAN', '0.3', '200', '0', '0.00', false),
          f('REGIONS', '0', '3', '0', '0.00', false, true),
          f('SEATS', '0', '10', '0', '0.00', false, true),
          f('STORAGE_GB', '0', '5', '0', '0.00', false),
        ],
        totalOverageAmount: '0.00',
        totalAmount: '54.29', // 99.00 × 17 of 31 days after the 14-day trial
      },
      {
        tenantId: 'solo', currency: 'XXX', period: { start: '2026-03-01T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z' },
        plan: null, subscriptionId: null,
        features: [f('OCR_SCAN', '5', null, '0', '0.00', false)],
        totalOverageAmount: '0.00',
        totalAmount: '0.00', // no subscription, no invoice
      },
      {
        tenantId: 'yenco', currency: 'JPY', period: { start: '2026-03-10T00:00:00.000Z', end: '2026-04-10T00:00:00.000Z' },
        plan: { key: 'yen', version: 1 }, subscriptionId: 'sub_yenco_1',
        features: [f('OCR_SCAN', '10.5', '10', '0.5', '2', true)], // 1.5 yen rounds to 2
        totalOverageAmount: '2',
        totalAmount: '1002',
      },
    ]);
    // --tenant still prints an array, and includes a tenant with nothing to report.
    const one = await runCli(['report', '--tenant', 'idle', '--json'], { db: url, now: NOW });
    expect(JSON.parse(one.stdout)).toEqual([
      { tenantId: 'idle', currency: 'XXX', period: { start: '2026-04-01T00:00:00.000Z', end: '2026-05-01T00:00:00.000Z' },
        plan: null, subscriptionId: null, features: [], totalOverageAmount: '0.00', totalAmount: '0.00' },
    ]);
    const ghost = await runCli(['report', '--tenant', 'ghost'], { db: url, now: NOW });
    expect(ghost.code).toBe(2);
    expect(ghost.stderr).toMatch(/tenant "ghost" does not exist/);
  });

  it('agrees with what the aggregate and overage stages charge', async () => {
    const { db } = t();
    const now = iso(NOW);
    await runAggregate(db, { now });
    await runOverage(db, { now });
    for (const period of ['2026-03', 'current', 'previous']) {
      for (const r of await buildReport(db, { now, period })) {
        const charges = await db.knex('rated_charges').where({ tenant_id: r.tenantId, period_start: iso(r.period.start) });
        const byFeature = new Map(charges.map((c) => [c.feature_key, c]));
        for (const f of r.features) {
          if (f.used === '0') continue; // no summary, no charge row
          expect({ feature: f.featureKey, used: byFeature.get(f.featureKey)?.used, amount: byFeature.get(f.featureKey)?.amount }).toEqual({
            feature: f.featureKey, used: f.used, amount: f.overageAmount,
          });
        }
      }
    }
  });

  it('selects current and previous periods per tenant', async () => {
    const { db } = t();
    const reports = await buildReport(db, { now: iso(NOW), period: 'current' });
    expect(reports.map((r) => [r.tenantId, r.period.start.slice(0, 10)])).toEqual([
      ['acme', '2026-04-01'], ['bigco', '2026-04-15'], ['yenco', '2026-04-10'],
    ]);
    expect((await buildReport(db, { now: iso(NOW), period: 'current', tenantId: 'acme' }))[0].features.find((f) => f.featureKey === 'OCR_SCAN'))
      .toMatchObject({ used: '1000', overage: '950', overageAmount: '47.50' });
    const prev = await buildReport(db, { now: iso(NOW), period: 'previous', tenantId: 'bigco' });
    expect(prev[0].period.start).toBe('2026-03-15T00:00:00.000Z');
  });

  it('escapes CSV cells against formula injection', async () => {
    const { db, url } = t();
    await tenant(db, '=HYPERLINK("http://x")', { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
    await insertEvents(db, [{ tenant: '=HYPERLINK("http://x")', feature: 'OCR_SCAN', qty: '60', at: '2026-03-02T00:00:00Z' }]);
    const r = await runCli(['report', '--period', '2026-03', '--format', 'csv', '--tenant', '=HYPERLINK("http://x")'], { db: url, now: NOW });
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('tenant,currency,period_start,period_end,plan,feature,used,included,overage,overage_amount,is_exceeded,hard_stop,total_overage_amount,total_amount');
    expect(lines).toContain(`"'=HYPERLINK(""http://x"")",USD,2026-03-01T00:00:00.000Z,2026-04-01T00:00:00.000Z,starter,OCR_SCAN,60,50,10,0.50,true,false,0.50,29.50`);
    expect(lines.every((l) => !l.startsWith('='))).toBe(true);
  });

  it('prints a table per tenant', async () => {
    const { url } = t();
    const r = await runCli(['report', '--tenant', 'acme', '--period', '2026-03'], { db: url, now: NOW });
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toBe('acme  2026-03-01 – 2026-03-31  plan starter v1  (USD)');
    expect(lines[1].split(/\s+/)).toEqual(['feature', 'used', 'included', 'overage', 'amount', 'exceeded', 'hardStop']);
    expect(lines.find((l) => l.startsWith('OCR_SCAN'))?.split(/\s+/)).toEqual(['OCR_SCAN', '75', '50', '25', '1.25', 'yes', 'no']);
    expect(lines).toContain('total overage: 16.26 USD; invoice total: 45.26 USD');
    // per-currency totals close the output
    expect(lines.slice(-3).map((l) => l.split(/\s+/))).toEqual([['currency', 'tenants', 'overage', 'total'], [expect.stringMatching(/^-+$/), expect.stringMatching(/^-+$/), expect.stringMatching(/^-+$/), expect.stringMatching(/^-+$/)], ['USD', '1', '16.26', '45.26']]);
  });

  it('lists history newest first, from the tenant\'s first period', async () => {
    const { db, url } = t();
    const h = await buildHistory(db, { now: iso(NOW), tenantId: 'acme' });
    expect(h.map((p) => [p.period.start.slice(0, 10), p.totalOverageAmount, p.totalAmount])).toEqual([
      ['2026-04-01', '47.50', '76.50'],
      ['2026-03-01', '16.26', '45.26'],
    ]);
    expect(await buildHistory(db, { now: iso(NOW), tenantId: 'acme', limit: 1 })).toHaveLength(1);
    const r = await runCli(['history', 'acme', '--limit', '5'], { db: url, now: NOW });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/2026-03-01 – 2026-03-31\s+starter\s+total \(USD\)\s+16\.26\s+45\.26\n/);
    expect(r.stdout).toMatch(/2026-04-01 – 2026-04-30\s+starter\s+OCR_SCAN\s+1,000\s+950\s+47\.50\n/);
  });

  it('projects usage at period end from the run rate so far', async () => {
    const { db, url } = t();
    // 10 of March's 31 days elapsed: sums scale by 31/10, gauges stay.
    await insertEvents(db, [{ tenant: 'yenco', feature: 'OCR_SCAN', qty: '10', at: '2026-04-12T00:00:00Z' }]);
    const e = await buildEstimate(db, { now: iso('2026-04-13T00:00:00Z'), tenantId: 'yenco' });
    expect(e).toMatchObject({ period: { start: '2026-04-10T00:00:00.000Z', end: '2026-05-10T00:00:00.000Z' }, elapsed: '0.1', currency: 'JPY' });
    expect(e.features).toEqual([
      { featureKey: 'OCR_SCAN', aggregation: 'sum', used: '10', projection: 'run_rate', projectedUsed: '100', overageAmount: '0', projectedOverageAmount: '270',
        projectedOverage: '90', hardStop: false },
    ]);
    const acme = await buildEstimate(db, { now: iso('2026-03-11T00:00:00Z'), tenantId: 'acme' });
    expect(acme.elapsed).toBe('0.322581');
    expect(acme.features.find((f) => f.featureKey === 'OCR_SCAN')).toMatchObject({ used: '50', projectedUsed: '155', projectedOverageAmount: '5.25' });
    expect(acme.features.find((f) => f.featureKey === 'STORAGE_GB')).toMatchObject({ used: '105.5', projection: 'current_value', projectedUsed: '105.5' });
    const r = await runCli(['estimate', 'acme'], { db: url, now: '2026-03-11T00:00:00Z' });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/run rate so far/);
    expect(r.stdout).toMatch(/projected at period end: /);
  });
});

describe('period selection', () => {
  const sub = (anchor: string, interval: 'month' | 'year' = 'month'): Subscription => ({
    tenantId: 't', id: 's', status: 'active', anchorAt: iso(anchor), interval, currency: 'USD', startedAt: iso(anchor),
    trialEndsAt: null, cancelAt: null, canceledAt: null,
  });
  const pick = (subs: Subscription[], spec: string, now = '2026-06-20T00:00:00Z') => {
    const w = selectWindow(new TenantTimeline(subs), spec, iso(now));
    return [new Date(w.start).toISOString().slice(0, 10), new Date(w.end).toISOString().slice(0, 10)];
  };

  it('YYYY-MM is the anniversary period starting in that month', () => {
    expect(pick([sub('2026-01-31T00:00:00Z')], '2026-02')).toEqual(['2026-02-28', '2026-03-31']);
    expect(pick([sub('2026-01-15T00:00:00Z')], '2026-03')).toEqual(['2026-03-15', '2026-04-15']);
    expect(pick([], '2026-03')).toEqual(['2026-03-01', '2026-04-01']);
    // a yearly plan starts no period in March: the one containing 1 March
    expect(pick([sub('2025-07-01T00:00:00Z', 'year')], '2026-03')).toEqual(['2025-07-01', '2026-07-01']);
  });

  it('current and previous follow the anchor, clamped to month ends', () => {
    expect(pick([sub('2026-01-31T00:00:00Z')], 'current', '2026-03-05T00:00:00Z')).toEqual(['2026-02-28', '2026-03-31']);
    expect(pick([sub('2026-01-31T00:00:00Z')], 'previous', '2026-03-05T00:00:00Z')).toEqual(['2026-01-31', '2026-02-28']);
  });
});

// A tenant's report and history read its summaries plus the events not aggregated yet (when
// it has many events); every other read takes every event. Both must always agree.
describeEachDb('billing report from summaries', (t) => {
  beforeEach(async () => {
    await month(t().db);
  });

  const now = iso(NOW);
  const OCR_MARCH = { tenant_id: 'acme', feature_key: 'OCR_SCAN', period_start: iso('2026-03-01T00:00:00Z') };

  /** The tenant's windows: March, and the current and previous periods, by its subscriptions now. */
  async function windowsOf(db: Db, tenantId: string) {
    const terms = (await loadTenantTerms(db.knex, [tenantId])).get(tenantId)!;
    const timeline = new TenantTimeline(terms.subscriptions);
    const ws = [selectWindow(timeline, '2026-03', now), selectWindow(timeline, 'previous', now), selectWindow(timeline, 'current', now)];
    return { windows: ws.filter((w, i) => ws.findIndex((x) => x.start === w.start) === i), key: windowsKey(terms.subscriptions) };
  }

  it('a tenant with many events is read from its summary (a changed summary shows); a tenant with few, from its events', async () => {
    const { db } = t();
    // acme's history is 2 periods × 7 metered features: past 500 events a group, summaries are read.
    await insertEvents(db, times(7100, { tenant: 'acme', feature: 'API_CALL' }, '2026-03-10T00:00:00Z'));
    await runAggregate(db, { now });
    await insertEvents(db, [{ tenant: 'acme', feature: 'OCR_SCAN', qty: '1', at: '2026-03-20T00:00:00Z' }]);
    await db.knex('usage_summaries').where(OCR_MARCH).update({ quantity: 10_000_000 });
    const used = (r: TenantReport) => r.features.find((f) => f.featureKey === 'OCR_SCAN')!.used;
    expect(used((await buildReport(db, { now, tenantId: 'acme', period: '2026-03' }))[0])).toBe('11'); // the summary's 10 plus the new event
    expect(used((await buildHistory(db, { now, tenantId: 'acme' }))[1])).toBe('11');
    const all = await buildReport(db, { now, period: '2026-03' });
    expect(used(all.find((r) => r.tenantId === 'acme')!)).toBe('11');
    // bigco has few events: its events are read, whatever its summary says.
    await db.knex('usage_summaries').where({ tenant_id: 'bigco', feature_key: 'OCR_SCAN' }).update({ quantity: 10_000_000 });
    expect(used((await buildReport(db, { now, tenantId: 'bigco', period: '2026-03' }))[0])).toBe('0.3'); // 15 Mar – 15 Apr: 0.1 + 0.2
    expect(used((await buildReport(db, { now, period: '2026-03' })).find((r) => r.tenantId === 'bigco')!)).toBe('0.3');
    // A period cut short (the estimate's, at its now) reads its events: 50 + 1, not 25 after now.
    const estimate = await buildEstimate(db, { now: iso('2026-03-31T00:00:00Z'), tenantId: 'acme' });
    expect(estimate.features.find((f) => f.featureKey === 'OCR_SCAN')!.used).toBe('51');
  });

  it('equals a read of every event after random interleavings of usage, aggregate runs and a cancellation', async () => {
    const { db } = t();
    const rnd = randomInts(7);
    const features = [...(await loadFeatures(db.knex)).values()];
    const keys = ['OCR_SCAN', 'API_CALL', 'STORAGE_GB', 'SEATS', 'ACTIVE_USERS', 'REGIONS'];
    const tenants = ['acme', 'bigco'];
    for (let step = 0; step < 10; step++) {
      // March and April
      await insertEvents(db, randomEvents(rnd, { tenants, features: keys, from: '2026-03-01T00:00:00Z', days: 61, max: 30 }));
      await maybeAggregate(db, rnd, now);
      // Ends bigco's current window early: its summaries cannot be trusted until the next run.
      if (step === 5) await cancelSubscription(db, { tenantId: 'bigco', at: iso('2026-04-25T00:00:00Z') }, { now, actor: ACTOR });
      for (const tenantId of tenants) {
        const { windows, key } = await windowsOf(db, tenantId);
        const fromSummaries = await tenantUsage(db, tenantId, windows, features, key);
        const fromEvents = (await usageByTenant(db, new Map([[tenantId, windows]]), features)).get(tenantId);
        expect(fromSummaries, `step ${step} ${tenantId}`).toEqual(fromEvents);
      }
    }
  });
});

describeEachDb('billing report over many groups', (t) => {
  it('reports many tenants on a catalog of many unique-count features (every statement within the bind limits)', async () => {
    const { db } = t();
    const uniques = Array.from({ length: 16 }, (_, i) => ({ key: `U${i}`, name: `U${i}`, unit: 'user', aggregation: 'unique', uniqueBy: 'user_id' }));
    const features = Object.fromEntries(uniques.map((f) => [f.key, { included: 1, overage: { model: 'per_unit', unitPrice: '1.00' } }]));
    const plans = [{ key: 'u', name: 'U', currency: 'USD', price: '1.00', interval: 'month', features }];
    await applyCatalog(db, { features: uniques, plans }, { now: iso('2026-01-01T00:00:00Z'), actor: ACTOR });
    for (let i = 0; i < 70; i++) await tenant(db, `t${String(i).padStart(2, '0')}`, { planKey: 'u', start: '2026-03-01T00:00:00Z' });
    await insertEvents(db, [
      { tenant: 't69', feature: 'U15', user: 'a', at: '2026-03-02T00:00:00Z' },
      { tenant: 't69', feature: 'U15', user: 'b', at: '2026-03-03T00:00:00Z' },
      { tenant: 't00', feature: 'U0', user: 'a', at: '2026-03-03T00:00:00Z' },
    ]);
    const reports = await buildReport(db, { now: iso(NOW), period: '2026-03' });
    expect(reports).toHaveLength(70);
    expect(reports.find((r) => r.tenantId === 't69')!.features.find((f) => f.featureKey === 'U15')).toMatchObject({ used: '2', overageAmount: '1.00' });
    expect(reports.find((r) => r.tenantId === 't00')!.totalOverageAmount).toBe('0.00');
  });
});

const LONG = `acme-${'x'.repeat(40)}`;

// Filters, order, limit, summary and totals (issue 19): they pick and sum what the report priced.
describeEachDb('billing report at scale', (t) => {
  beforeEach(async () => {
    const { db } = t();
    await month(db);
    await tenant(db, LONG, { planKey: 'starter', start: '2026-03-01T00:00:00Z' });
    await insertEvents(db, [
      { tenant: LONG, feature: 'OCR_SCAN', qty: '12345678', at: '2026-03-02T00:00:00Z' },
      ...times(150, { tenant: LONG, feature: 'API_CALL' }, '2026-03-03T00:00:00Z'), // 50 past a hard stop without a price
    ]);
  });

  const report = async (url: string, ...args: string[]) => {
    const r = await runCli(['report', '--period', '2026-03', ...args], { db: url, now: NOW });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    return r.stdout;
  };
  const rows = (json: string) => (JSON.parse(json) as TenantReport[]).map((r) => [r.tenantId, r.features.map((f) => f.featureKey)]);

  it('filters rows by exceeded, plan, currency and tenant prefix', async () => {
    const { url } = t();
    expect(rows(await report(url, '--exceeded', '--json'))).toEqual([
      ['acme', ['ACTIVE_USERS', 'OCR_SCAN', 'SEATS', 'STORAGE_GB']],
      [LONG, ['API_CALL', 'OCR_SCAN']],
      ['yenco', ['OCR_SCAN']],
    ]);
    expect(rows(await report(url, '--plan', 'starter', '--json')).map(([id]) => id)).toEqual(['acme', LONG]);
    expect(rows(await report(url, '--currency', 'jpy', '--json')).map(([id]) => id)).toEqual(['yenco']);
    expect(rows(await report(url, '--tenant', 'acme*', '--json')).map(([id]) => id)).toEqual(['acme', LONG]);
    expect(rows(await report(url, '--tenant', 'acme', '--json')).map(([id]) => id)).toEqual(['acme']);
    expect(JSON.parse(await report(url, '--tenant', 'nobody*', '--json'))).toEqual([]);
    expect((await report(url, '--tenant', 'nobody*')).trim()).toBe('no tenant matches');
    // A filter keeps the tenant's whole totals.
    const acme = (JSON.parse(await report(url, '--exceeded', '--tenant', 'acme', '--json')) as TenantReport[])[0];
    expect([acme.features.length, acme.totalOverageAmount, acme.totalAmount]).toEqual([4, '16.26', '45.26']);
  });

  it('sorts rows by used quantity or amount and limits them', async () => {
    const { url } = t();
    expect(rows(await report(url, '--sort', 'amount', '--limit', '2', '--json'))).toEqual([[LONG, ['OCR_SCAN']], ['acme', ['SEATS']]]);
    expect(rows(await report(url, '--sort', 'used', '--limit', '3', '--json'))).toEqual([[LONG, ['OCR_SCAN', 'API_CALL']], ['acme', ['STORAGE_GB']]]);
    expect(rows(await report(url, '--limit', '6', '--json'))).toEqual([
      ['acme', ['ACTIVE_USERS', 'API_CALL', 'OCR_SCAN', 'SEATS', 'STORAGE_GB']],
      [LONG, ['ACTIVE_USERS']],
    ]);
    const bad = await runCli(['report', '--sort', 'size'], { db: url, now: NOW });
    expect([bad.code, bad.stdout, bad.stderr.trim().split('\n').length]).toEqual([2, '', 1]);
    expect(bad.stderr).toMatch(/--sort "size" is not one of tenant, used, amount/);
    expect((await runCli(['report', '--limit', '0'], { db: url, now: NOW })).code).toBe(2);
    expect((await runCli(['report', '--tz', 'Mars/Olympus'], { db: url, now: NOW })).stderr).toMatch(/--tz "Mars\/Olympus" is not a time zone/);
  });

  it('summarises one line per tenant with per-currency totals (--summary --json is {tenants, totals})', async () => {
    const { url } = t();
    const s = JSON.parse(await report(url, '--summary', '--sort', 'amount', '--json'));
    expect(s.tenants.map((x: { tenantId: string; totalAmount: string; exceeded: number }) => [x.tenantId, x.totalAmount, x.exceeded])).toEqual([
      [LONG, '617310.40', 2], // 29.00 + 12,345,628 × 0.05; the 50 calls past the hard stop are not billed
      ['yenco', '1002', 1],
      ['bigco', '54.29', 0],
      ['acme', '45.26', 4],
      ['solo', '0.00', 0],
    ]);
    expect(s.tenants[0]).toEqual({
      tenantId: LONG, currency: 'USD', period: { start: '2026-03-01T00:00:00.000Z', end: '2026-04-01T00:00:00.000Z' },
      plan: { key: 'starter', version: 1 }, subscriptionId: `sub_${LONG}_1`, features: 5, exceeded: 2,
      totalOverageAmount: '617281.40', totalAmount: '617310.40',
    });
    expect(s.totals).toEqual([
      { currency: 'JPY', tenants: 1, totalOverageAmount: '2', totalAmount: '1002' },
      { currency: 'USD', tenants: 3, totalOverageAmount: '617297.66', totalAmount: '617409.95' },
      { currency: 'XXX', tenants: 1, totalOverageAmount: '0.00', totalAmount: '0.00' },
    ]);
    const top = JSON.parse(await report(url, '--summary', '--exceeded', '--currency', 'USD', '--limit', '1', '--sort', 'used', '--json'));
    expect([top.tenants.map((x: { tenantId: string }) => x.tenantId), top.totals.map((x: { tenants: number }) => x.tenants)]).toEqual([[LONG], [1]]);
    const csv = (await report(url, '--summary', '--format', 'csv')).trim().split('\n');
    expect(csv[0]).toBe('tenant,currency,period_start,period_end,plan,features,exceeded,total_overage_amount,total_amount');
    expect(csv).toContain(`${LONG},USD,2026-03-01T00:00:00.000Z,2026-04-01T00:00:00.000Z,starter,5,2,617281.40,617310.40`);
  });

  it('groups digits, shortens long ids and explains a hard stop in text only', async () => {
    const { url } = t();
    const text = await report(url, '--tenant', LONG);
    expect(text).toMatch(/^OCR_SCAN\s+12,345,678\s+50\s+12,345,628\s+617,281\.40\s+yes\s+no$/m);
    expect(text).toMatch(/^API_CALL\s+150\s+100\s+50\s+0\.00\s+yes\s+yes\s+hard stop: requests past the limit are denied, not billed$/m);
    expect(text).toMatch(/invoice total: 617,310\.40 USD/);
    const summary = await report(url, '--summary', '--plan', 'starter');
    const short = `${LONG.slice(0, 23)}…`;
    expect(summary.split('\n').find((l) => l.startsWith(short))?.split(/\s{2,}/)).toEqual([
      short, '2026-03-01 – 2026-03-31', 'starter v1', '5', '2', '617,281.40', '617,310.40', 'USD',
    ]);
    expect(summary).not.toContain(LONG);
    expect(summary.trimEnd().split('\n').slice(-1)[0].split(/\s+/)).toEqual(['USD', '2', '617,297.66', '617,355.66']);
    // JSON and CSV keep the exact values.
    expect(await report(url, '--tenant', LONG, '--format', 'csv')).toContain(`${LONG},USD,2026-03-01T00:00:00.000Z,2026-04-01T00:00:00.000Z,starter,OCR_SCAN,12345678,50,12345628,617281.40,true,false,617281.40,617310.40`);
    // --tz shows local times; a period whose bounds are not local midnights shows the instants and the zone.
    expect((await report(url, '--tenant', 'acme', '--tz', 'Asia/Tokyo')).split('\n')[0]).toBe(
      'acme  2026-03-01 09:00 – 2026-04-01 09:00 Asia/Tokyo  plan starter v1  (USD)',
    );
    expect(JSON.parse(await report(url, '--tenant', 'acme', '--tz', 'Asia/Tokyo', '--json'))[0].period.start).toBe('2026-03-01T00:00:00.000Z');
    const history = await runCli(['history', 'acme', '--tz', 'Asia/Tokyo'], { db: url, now: NOW });
    expect(history.stdout).toMatch(/^2026-03-01 09:00 – 2026-04-01 09:00 Asia\/Tokyo +starter +total \(USD\) +16\.26 +45\.26$/m);
  });

  it('estimate shows projections in whole units and amounts in currency digits, and notes a hard stop', async () => {
    const { url } = t();
    const now = '2026-03-12T00:00:00Z'; // 11 of 31 days
    const e = JSON.parse((await runCli(['estimate', LONG, '--json'], { db: url, now })).stdout);
    expect(e.features.find((f: { featureKey: string }) => f.featureKey === 'API_CALL')).toMatchObject({
      used: '150', projectedUsed: '422.727273', projectedOverage: '322.727273', projectedOverageAmount: '0.00', hardStop: true,
    });
    const r = await runCli(['estimate', LONG], { db: url, now });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^API_CALL\s+150\s+run rate\s+423\s+0\.00\s+0\.00\s+hard stop: denied past the limit, not billed$/m);
    // 12,345,678 × 31 / 11 = 34,792,365.27 (run rate), 34,792,315.27 over at 0.05
    expect(r.stdout).toMatch(/^OCR_SCAN\s+12,345,678\s+run rate\s+34,792,365\s+617,281\.40\s+1,739,615\.76\s*$/m);
    expect(r.stdout).toMatch(/^total \(USD\)\s+617,310\.40\s+1,739,644\.76$/m);
  });
});

// totalAmount (issue 15) is the invoice's total by the rating path: discounts and taxes included.
describeEachDb('billing report and estimate with a discount and a tax', (t) => {
  beforeEach(async () => {
    const { db, url } = t();
    await month(db);
    const cli = async (...args: string[]) => expect((await runCli(args, { db: url, now: NOW })).code).toBe(0);
    await cli('discount', 'add', 'acme', '--percent', '10', '--duration', 'forever', '--start', '2026-01-01T00:00:00Z');
    await cli('tax', 'set', 'acme', '--name', 'VAT', '--rate', '19');
    await cli('discount', 'add', 'yenco', '--amount', '100', '--duration', 'once', '--start', '2026-01-01T00:00:00Z');
  });

  it("shows the period's invoice total, equal to the invoice generated for it", async () => {
    const { url } = t();
    const totals = async (period: string) => {
      const r = await runCli(['report', '--period', period, '--json'], { db: url, now: NOW });
      expect(r.code).toBe(0);
      return Object.fromEntries((JSON.parse(r.stdout) as TenantReport[]).map((x) => [x.tenantId, [x.totalOverageAmount, x.totalAmount]]));
    };
    // acme: 45.26 − 10 % (4.53) = 40.73, + VAT 19 % (7.74) = 48.47. yenco: 1002 − 100 once.
    expect(await totals('2026-03')).toMatchObject({ acme: ['16.26', '48.47'], yenco: ['2', '902'] });
    const gen = await runCli(['invoice', 'generate', '--json'], { db: url, now: NOW });
    expect(gen.code).toBe(0);
    const list = JSON.parse((await runCli(['invoice', 'list', '--json'], { db: url })).stdout) as Array<{ tenant: string; total: string }>;
    expect(Object.fromEntries(list.map((i) => [i.tenant, i.total]))).toMatchObject({ acme: '48.47', yenco: '902' });
    // March keeps the once discount its invoice used; the next period has none left.
    expect(await totals('2026-03')).toMatchObject({ acme: ['16.26', '48.47'], yenco: ['2', '902'] });
    expect((await totals('current')).yenco).toEqual(['0', '1000']);
    const text = await runCli(['report', '--period', '2026-03', '--tenant', 'acme'], { db: url, now: NOW });
    expect(text.stdout).toContain('total overage: 16.26 USD; invoice total: 48.47 USD');
  });

  it('projects the invoice with its discount and tax', async () => {
    const { url } = t();
    const now = '2026-03-11T00:00:00Z';
    const r = await runCli(['estimate', 'acme', '--json'], { db: url, now });
    expect(r.code).toBe(0);
    const e = JSON.parse(r.stdout);
    // So far (10 of 31 days): 29.00 + ACTIVE_USERS 4.00 + SEATS 8.00 + STORAGE_GB 3.01 = 44.01; −4.40; VAT on 39.61 = 7.53.
    expect(e.invoice).toEqual({
      subtotal: '44.01', discounts: [expect.objectContaining({ amount: '4.40' })], discountTotal: '4.40',
      taxes: [{ name: 'VAT', rate: '19', inclusive: false, base: '39.61', amount: '7.53' }], taxTotal: '7.53', total: '47.14',
    });
    // Projected: OCR_SCAN 155 (50 × 31 / 10) → 105 over at 0.05 = 5.25; subtotal 49.26, −4.93, VAT on 44.33 = 8.42.
    expect(e.projectedInvoice).toMatchObject({ subtotal: '49.26', discountTotal: '4.93', taxTotal: '8.42', total: '52.75' });
    expect([e.totalAmount, e.projectedTotalAmount]).toEqual(['47.14', '52.75']);
    const text = await runCli(['estimate', 'acme'], { db: url, now });
    expect(text.stdout).toMatch(/^acme {2}2026-03-01 – 2026-03-31 {2}\(USD\)/);
    expect(text.stdout).toMatch(/^discounts\s+-4\.40\s+-4\.93$/m);
    expect(text.stdout).toMatch(/^taxes \(VAT 19%\)\s+7\.53\s+8\.42$/m);
    expect(text.stdout).toMatch(/^total \(USD\)\s+47\.14\s+52\.75$/m);
  });
});

