import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { applyCatalog } from '../src/catalog/apply.js';
import { setQuota } from '../src/subscriptions/quota.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { changePlan, subscribe } from '../src/subscriptions/lifecycle.js';
import { runOverage } from '../src/rate/overage.js';
import { loadRatedCharges } from '../src/rate/repository.js';
import { decimalToMicro } from '../src/domain/quantity.js';
import type { Db } from '../src/storage/db.js';

const T = (iso: string) => Date.parse(iso);
const JAN = { start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') };
const FEB = { start: JAN.end, end: T('2026-03-01T00:00:00Z') };
const NOW = T('2026-02-10T12:00:00Z'); // January closed, February open
const actor = 'test';

const CATALOG = {
  features: [
    { key: 'OCR_SCAN', name: 'OCR Scans', unit: 'scan' },
    { key: 'STORAGE_GB', name: 'Storage', unit: 'GB', aggregation: 'max' },
    { key: 'API_CALL', name: 'API calls', unit: 'call' },
    { key: 'REPORT_RUN', name: 'Reports', unit: 'report' },
    { key: 'EXPORT', name: 'Exports', unit: 'export' },
  ],
  plans: [
    {
      key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month',
      features: {
        OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
        API_CALL: { included: 10000, hardStop: true },
        STORAGE_GB: { included: 5, overage: { model: 'graduated', tiers: [
          { upTo: 100, unitPrice: '0.02' }, { upTo: null, unitPrice: '0.01', flatPrice: '1.00' }] } },
        REPORT_RUN: { included: 0, overage: { model: 'per_unit', unitPrice: '1.00', minimum: '10.00' } },
      },
    },
    {
      key: 'pro', name: 'Pro', currency: 'USD', price: '99.00', interval: 'month',
      features: {
        OCR_SCAN: { included: 1000, overage: { model: 'package', size: 100, packagePrice: '2.00' } },
        API_CALL: { included: 100000 },
      },
    },
  ],
};

async function setup(db: Db, tenants: string[] = ['acme']): Promise<void> {
  await applyCatalog(db, CATALOG, { now: JAN.start - 1000, actor });
  for (const id of tenants) {
    await createTenant(db, { id }, { now: JAN.start - 1000, actor });
    await subscribe(db, { tenantId: id, planKey: 'starter', start: JAN.start, trialDays: 0 }, { now: JAN.start, actor });
  }
}

async function summary(db: Db, tenantId: string, featureKey: string, period: { start: number; end: number }, used: string) {
  const row = {
    tenant_id: tenantId, feature_key: featureKey, period_start: period.start, period_end: period.end,
    subscription_id: null, quantity: decimalToMicro(used), event_count: 1, computed_at: NOW,
  };
  await db.knex('usage_summaries').insert(row).onConflict(['tenant_id', 'feature_key', 'period_start']).merge();
}

const byFeature = async (db: Db, tenantId: string, periodStart: number) =>
  Object.fromEntries((await loadRatedCharges(db, tenantId, { periodStart })).map((c) => [c.featureKey, c]));

describeEachDb('overage stage', (t) => {
  it('rates every summary on the plan in force, per pricing model, and charges minimums without usage', async () => {
    const { db } = t();
    await setup(db);
    await summary(db, 'acme', 'OCR_SCAN', JAN, '75');
    await summary(db, 'acme', 'STORAGE_GB', JAN, '150.5');
    await summary(db, 'acme', 'API_CALL', JAN, '12000');

    const r = await runOverage(db, { now: NOW });
    // 3 summaries + REPORT_RUN minimum in January and in (open) February
    expect(r).toEqual({ rated: 5, minimums: 2, unrated: 0, removed: 0 });

    const jan = await byFeature(db, 'acme', JAN.start);
    expect(jan.OCR_SCAN).toMatchObject({
      planKey: 'starter', planVersion: 1, currency: 'USD', periodEnd: JAN.end,
      used: '75', included: '50', billable: '25', amountPrecise: '1.25', amount: '1.25', amountMinor: '125',
      isExceeded: true, hardStop: false, summaryQuantity: '75000000',
    });
    expect(jan.OCR_SCAN.lines).toEqual([expect.objectContaining({ ref: 'unit', quantity: '25', unitPrice: '0.05', amount: '1.25' })]);
    expect(jan.OCR_SCAN.priceSnapshot).toMatchObject({ included: '50', overage: { model: 'per_unit', unitPrice: '0.05' } });
    // 145.5 billable: 100 × 0.02 + (45.5 × 0.01 + 1.00) = 3.455 → 3.46
    expect(jan.STORAGE_GB).toMatchObject({ billable: '145.5', amountPrecise: '3.455', amount: '3.46', amountMinor: '346' });
    expect(jan.STORAGE_GB.lines.map((l) => l.ref)).toEqual(['tier-1', 'tier-2']);
    // hard stop without overage pricing: exceeded, not priced
    expect(jan.API_CALL).toMatchObject({ billable: '2000', amount: '0.00', amountMinor: '0', isExceeded: true, hardStop: true });
    expect(jan.REPORT_RUN).toMatchObject({ used: '0', billable: '0', amount: '10.00', amountMinor: '1000', summaryQuantity: null });
    expect(jan.REPORT_RUN.lines.map((l) => l.ref)).toEqual(['minimum']);
    const feb = await byFeature(db, 'acme', FEB.start);
    expect(Object.keys(feb)).toEqual(['REPORT_RUN']);
    expect(feb.REPORT_RUN).toMatchObject({ periodEnd: FEB.end, amount: '10.00' });
  });

  it("applies the tenant's quota override (included and price) to that tenant only", async () => {
    const { db } = t();
    await setup(db, ['acme', 'globex']);
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '70', unitPrice: '0.10' }, { now: JAN.start, actor });
    for (const id of ['acme', 'globex']) await summary(db, id, 'OCR_SCAN', JAN, '75');
    await runOverage(db, { now: NOW });

    const acme = (await byFeature(db, 'acme', JAN.start)).OCR_SCAN;
    expect(acme).toMatchObject({ included: '70', billable: '5', amount: '0.50', amountMinor: '50' });
    expect(acme.priceSnapshot).toMatchObject({ included: '70', overage: { model: 'per_unit', unitPrice: '0.10' } });
    expect((await byFeature(db, 'globex', JAN.start)).OCR_SCAN).toMatchObject({ included: '50', billable: '25', amount: '1.25' });
  });

  it('is idempotent: a rerun writes identical rows, re-rating only open or changed periods', async () => {
    const { db } = t();
    await setup(db);
    await summary(db, 'acme', 'OCR_SCAN', JAN, '75');
    await summary(db, 'acme', 'OCR_SCAN', FEB, '20');
    await runOverage(db, { now: NOW });
    const strip = (rows: Array<Record<string, unknown>>) => rows.map(({ rated_at: _, ...r }) => r);
    const first = await db.knex('rated_charges').orderBy(['tenant_id', 'feature_key', 'period_start']);

    const again = await runOverage(db, { now: NOW + 3_600_000 });
    // open February (OCR summary + REPORT_RUN minimum) only; closed January is left alone
    expect(again).toEqual({ rated: 2, minimums: 1, unrated: 0, removed: 0 });
    const second = await db.knex('rated_charges').orderBy(['tenant_id', 'feature_key', 'period_start']);
    expect(strip(second)).toEqual(strip(first));

    // late usage in closed January is picked up
    await summary(db, 'acme', 'OCR_SCAN', JAN, '80');
    expect((await runOverage(db, { now: NOW + 7_200_000 })).rated).toBe(3);
    expect((await byFeature(db, 'acme', JAN.start)).OCR_SCAN).toMatchObject({ used: '80', billable: '30', amount: '1.50' });
  });

  it('rates on the plan in force at period end after a plan change', async () => {
    const { db } = t();
    await setup(db);
    const mid = T('2026-01-16T00:00:00Z');
    // rated while January is open on starter: its REPORT_RUN minimum is charged...
    expect(await runOverage(db, { now: mid - 3_600_000 })).toEqual({ rated: 1, minimums: 1, unrated: 0, removed: 0 });
    await changePlan(db, { tenantId: 'acme', planKey: 'pro', at: 'now' }, { now: mid, actor });
    // ...and withdrawn once the plan at period end (pro) has no minimum
    expect(await runOverage(db, { now: mid + 3_600_000 })).toEqual({ rated: 0, minimums: 0, unrated: 0, removed: 1 });
    await summary(db, 'acme', 'OCR_SCAN', JAN, '1201');
    await runOverage(db, { now: NOW });
    const jan = await byFeature(db, 'acme', JAN.start);
    // pro: 1000 included, 201 billable → 3 packages of 100 × 2.00; no REPORT_RUN minimum on pro
    expect(jan.OCR_SCAN).toMatchObject({ planKey: 'pro', billable: '201', amount: '6.00' });
    expect(jan.OCR_SCAN.lines).toEqual([expect.objectContaining({ ref: 'package', quantity: '3' })]);
    expect(jan.REPORT_RUN).toBeUndefined();
  });

  it('rates a period once more after it closes when it was last rated open: a plan change before its end counts', async () => {
    const { db } = t();
    await setup(db);
    await summary(db, 'acme', 'OCR_SCAN', JAN, '75');
    // January rated while open, on starter: 25 × 0.05 and the REPORT_RUN minimum.
    await runOverage(db, { now: T('2026-01-10T00:00:00Z') });
    expect((await byFeature(db, 'acme', JAN.start)).OCR_SCAN).toMatchObject({ planKey: 'starter', amount: '1.25' });
    // An upgrade before January ends, and no run until it has closed.
    await changePlan(db, { tenantId: 'acme', planKey: 'pro', at: 'now' }, { now: T('2026-01-20T00:00:00Z'), actor });
    await runOverage(db, { now: NOW });
    const jan = await byFeature(db, 'acme', JAN.start);
    expect(jan.OCR_SCAN).toMatchObject({ planKey: 'pro', billable: '0', amount: '0.00' });
    expect(jan.REPORT_RUN).toBeUndefined();
    // Rated after its end, January is final: the next run leaves it alone.
    expect(await runOverage(db, { now: NOW + 3_600_000 })).toEqual({ rated: 0, minimums: 0, unrated: 0, removed: 0 });
  });

  it('stores a zero charge saying why when there is no plan to price usage', async () => {
    const { db } = t();
    await setup(db);
    await createTenant(db, { id: 'loner', currency: 'EUR' }, { now: JAN.start, actor });
    await summary(db, 'loner', 'OCR_SCAN', JAN, '10');
    await summary(db, 'acme', 'EXPORT', JAN, '3');
    const r = await runOverage(db, { now: NOW });
    expect(r.unrated).toBe(2);
    expect((await byFeature(db, 'loner', JAN.start)).OCR_SCAN).toMatchObject({
      used: '10', amount: '0.00', planKey: null, currency: 'EUR', priceSnapshot: { unrated: 'no_subscription' },
    });
    expect((await byFeature(db, 'acme', JAN.start)).EXPORT).toMatchObject({
      used: '3', amount: '0.00', planKey: 'starter', priceSnapshot: { unrated: 'feature_not_in_plan' },
    });
  });

  it('scopes to one tenant and gives the same rows whatever the page size', async () => {
    const { db } = t();
    const tenants = ['t1', 't2', 't3'];
    await setup(db, tenants);
    for (const [i, id] of tenants.entries()) {
      await summary(db, id, 'OCR_SCAN', JAN, String(60 + i));
      await summary(db, id, 'STORAGE_GB', JAN, String(10 + i));
      await summary(db, id, 'OCR_SCAN', FEB, String(i));
    }
    await runOverage(db, { now: NOW, tenantId: 't2' });
    expect(await db.knex('rated_charges').distinct('tenant_id').pluck('tenant_id')).toEqual(['t2']);

    await runOverage(db, { now: NOW, pageSize: 2 });
    const paged = await db.knex('rated_charges').select('tenant_id', 'feature_key', 'period_start', 'amount').orderBy(['tenant_id', 'feature_key', 'period_start']);
    await db.knex('rated_charges').del();
    await runOverage(db, { now: NOW });
    const whole = await db.knex('rated_charges').select('tenant_id', 'feature_key', 'period_start', 'amount').orderBy(['tenant_id', 'feature_key', 'period_start']);
    expect(paged).toEqual(whole);
    expect(whole).toHaveLength(3 * 3 + 3 * 2); // 3 summaries + 2 REPORT_RUN minimums per tenant
    expect(whole.find((r) => r.tenant_id === 't3' && r.feature_key === 'OCR_SCAN')?.amount).toBe('0.60');
  });

  it('billing overage prints counts, and every charge with --json', async () => {
    const { db, url } = t();
    await setup(db);
    await summary(db, 'acme', 'OCR_SCAN', JAN, '75');
    const human = await runCli(['overage'], { db: url, now: '2026-02-10T12:00:00Z' });
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/rated 3 charge\(s\): 2 minimum spend without usage, 0 unpriced/);

    const r = await runCli(['overage', '--tenant', 'acme', '--json'], { db: url, now: '2026-02-10T13:00:00Z' });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    // January is closed and unchanged: only open February's minimum is re-rated
    expect(out).toMatchObject({ rated: 1, minimums: 1, unrated: 0, removed: 0 });
    expect(out.charges[0]).toMatchObject({
      tenantId: 'acme', featureKey: 'REPORT_RUN', amount: '10.00', amountMinor: '1000',
      period: { start: '2026-02-01T00:00:00.000Z', end: '2026-03-01T00:00:00.000Z' }, ratedAt: '2026-02-10T13:00:00.000Z',
    });
  });
});
