// avg and weighted_sum (DESIGN.md §14), table-driven through the real components: events as
// ingest stores them, the aggregate stage (incremental and full), `billing check` (its events
// read and its summary-plus-new-events read), the overage stage and the catalog's validation.
import { expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { checkEntitlement } from '../src/entitlements/check.js';
import { microToString } from '../src/domain/quantity.js';
import { recordUsage } from '../src/ingest/record.js';
import { runOverage } from '../src/rate/overage.js';
import { cancelSubscription } from '../src/subscriptions/lifecycle.js';
import { tenantUsage, usageByTenant } from '../src/aggregate/usage.js';
import { TenantTimeline, windowsKey } from '../src/aggregate/windows.js';
import { loadFeatures } from '../src/catalog/repository.js';
import { buildHistory } from '../src/report/history.js';
import { buildReport } from '../src/report/report.js';
import { listSubscriptions } from '../src/subscriptions/repository.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, shape, world } from './invoice-world.js';
import { describeEachDb } from './helpers/db.js';
import { ACTOR, insertEvents, iso, tenant, type Ev } from './aggregate-support.js';

const CATALOG = {
  features: [
    { key: 'DISK_GB', name: 'Disk', unit: 'GB', aggregation: 'weighted_sum' },
    { key: 'LATENCY', name: 'Mean latency', unit: 'ms', aggregation: 'avg' },
  ],
  plans: [
    {
      key: 'store', name: 'Store', currency: 'USD', price: '0.00', interval: 'month',
      features: { DISK_GB: { included: 0, overage: { model: 'per_unit', unitPrice: '0.10' } }, LATENCY: { included: null } },
    },
  ],
};

// Subscribed on 1 April: the window is [1 Apr, 1 May), 30 days = 2,592,000 s.
const START = '2026-04-01T00:00:00Z';

interface Case {
  name: string;
  feature: 'DISK_GB' | 'LATENCY';
  events: Array<[qty: string, at: string]>;
  cancelAt?: string;
  used: string;
}

const CASES: Case[] = [
  { name: 'DESIGN.md §14: 10 GB all month, 10 more from day 16', feature: 'DISK_GB', events: [['10', START], ['10', '2026-04-16T00:00:00Z']], used: '15' },
  { name: 'no usage', feature: 'DISK_GB', events: [], used: '0' },
  { name: 'an event at the window start holds the whole period', feature: 'DISK_GB', events: [['10', START]], used: '10' },
  // 10 × 1 s / 2,592,000 s = 0.00000385…: the event's second counts, to the micro-unit.
  { name: 'an event in the window’s last second holds one second', feature: 'DISK_GB', events: [['10', '2026-04-30T23:59:59.999Z']], used: '0.000004' },
  { name: 'decimal levels', feature: 'DISK_GB', events: [['2.5', '2026-04-16T00:00:00Z'], ['0.25', START]], used: '1.5' },
  { name: 'a period cut short by a cancellation prorates', feature: 'DISK_GB', events: [['10', START]], cancelAt: '2026-04-16T00:00:00Z', used: '5' },
  { name: 'a level of zero', feature: 'DISK_GB', events: [['0', START]], used: '0' },
  { name: 'avg of 1, 2, 2', feature: 'LATENCY', events: [['1', START], ['2', '2026-04-02T00:00:00Z'], ['2', '2026-04-03T00:00:00Z']], used: '1.666667' },
  { name: 'avg rounds half away from zero', feature: 'LATENCY', events: [['0.000001', START], ['0.000002', '2026-04-02T00:00:00Z']], used: '0.000002' },
  { name: 'avg of decimals', feature: 'LATENCY', events: [['3.5', START], ['4.5', '2026-04-30T23:59:59Z']], used: '4' },
  { name: 'avg with a zero', feature: 'LATENCY', events: [['0', START], ['9', '2026-04-10T00:00:00Z']], used: '4.5' },
  { name: 'avg, no usage', feature: 'LATENCY', events: [], used: '0' },
];

describeEachDb('aggregations avg and weighted_sum', (t) => {
  it.each(CASES)('$name: $used', async ({ feature, events, cancelAt, used }) => {
    const { db, url } = t();
    await applyCatalog(db, CATALOG, { now: iso('2026-01-01T00:00:00Z'), actor: ACTOR });
    await tenant(db, 'acme', { planKey: 'store', start: START });
    const now = cancelAt ? iso('2026-04-12T00:00:00Z') : iso('2026-04-20T00:00:00Z');
    if (cancelAt) await cancelSubscription(db, { tenantId: 'acme', at: iso(cancelAt) }, { now: iso('2026-04-10T00:00:00Z'), actor: ACTOR });
    const evs: Ev[] = events.map(([qty, at]) => ({ tenant: 'acme', feature, qty, at }));
    const check = async () => (await checkEntitlement(db, { tenantId: 'acme', featureKey: feature, quantity: '0' }, { now })).used;

    // From the events; then half of them summarized and half new; then all summarized.
    await insertEvents(db, evs.slice(0, 1));
    await runAggregate(db, { now });
    await insertEvents(db, evs.slice(1));
    expect(await check()).toBe(used);
    await runAggregate(db, { now });
    expect(await check()).toBe(used);
    await runAggregate(db, { now, full: true });
    expect(await check()).toBe(used);
    const cli = await runCli(['check', 'acme', feature, '--quantity', '0', '--json'], { db: url, now: new Date(now).toISOString() });
    expect(JSON.parse(cli.stdout).used).toBe(used);
  });

  it('rates the value, not the accumulator, and re-rates an average when only its count moved', async () => {
    const { db } = t();
    await applyCatalog(db, CATALOG, { now: iso('2026-01-01T00:00:00Z'), actor: ACTOR });
    await tenant(db, 'acme', { planKey: 'store', start: START });
    const now = iso('2026-04-20T00:00:00Z');
    await insertEvents(db, [
      { tenant: 'acme', feature: 'DISK_GB', qty: '10', at: START },
      { tenant: 'acme', feature: 'DISK_GB', qty: '10', at: '2026-04-16T00:00:00Z' },
      { tenant: 'acme', feature: 'LATENCY', qty: '4', at: START },
    ]);
    await runAggregate(db, { now });
    // Rated after the period closed: only a change to its summary rates it again.
    const closed = iso('2026-05-05T00:00:00Z');
    await runOverage(db, { now: closed });
    const charge = async (feature: string) =>
      (await db.knex('rated_charges').where({ tenant_id: 'acme', feature_key: feature }).first()) as Record<string, unknown>;
    expect(String((await charge('DISK_GB')).amount_minor)).toBe('150'); // 15 GB-months × 0.10
    const before = Number((await charge('LATENCY')).rated_at);
    // A late zero halves the average without moving its sum: the charge is rated again.
    await insertEvents(db, [{ tenant: 'acme', feature: 'LATENCY', qty: '0', at: '2026-04-02T00:00:00Z' }]);
    await runOverage(db, { now: closed + 1000 });
    expect(Number((await charge('LATENCY')).rated_at)).toBe(before);
    await runAggregate(db, { now: closed + 2000 });
    await runOverage(db, { now: closed + 3000 });
    expect(Number((await charge('LATENCY')).rated_at)).toBeGreaterThan(before);
    expect(await checkEntitlement(db, { tenantId: 'acme', featureKey: 'LATENCY', quantity: '0' }, { now })).toMatchObject({ used: '2' });
  });

  it('reports, history and both read models give the value', async () => {
    const { db, url } = t();
    await applyCatalog(db, CATALOG, { now: iso('2026-01-01T00:00:00Z'), actor: ACTOR });
    await tenant(db, 'acme', { planKey: 'store', start: START });
    const now = iso('2026-04-20T00:00:00Z');
    await insertEvents(db, [
      { tenant: 'acme', feature: 'DISK_GB', qty: '10', at: START },
      { tenant: 'acme', feature: 'LATENCY', qty: '1', at: START },
      { tenant: 'acme', feature: 'LATENCY', qty: '2', at: '2026-04-02T00:00:00Z' },
    ]);
    await runAggregate(db, { now });
    await insertEvents(db, [
      { tenant: 'acme', feature: 'DISK_GB', qty: '10', at: '2026-04-16T00:00:00Z' },
      { tenant: 'acme', feature: 'LATENCY', qty: '2', at: '2026-04-03T00:00:00Z' },
    ]);
    const expected = { DISK_GB: '15', LATENCY: '1.666667' };
    const used = (fs: Array<{ featureKey: string; used: string }>) => Object.fromEntries(fs.map((f) => [f.featureKey, f.used]));
    expect(used((await buildReport(db, { now, tenantId: 'acme', period: '2026-04' }))[0].features)).toEqual(expected);
    expect(used((await buildHistory(db, { now, tenantId: 'acme' }))[0].features)).toEqual(expected);
    // The two reads a report picks between: every event, or each summary plus the new events.
    const subs = await listSubscriptions(db.knex, 'acme');
    const windows = new TenantTimeline(subs).windowsBetween(iso(START), iso('2026-05-01T00:00:00Z'));
    const features = [...(await loadFeatures(db.knex)).values()];
    const micro = (m: Map<string, string> | undefined) => Object.fromEntries([...(m ?? [])].map(([k, v]) => [k, microToString(v)]));
    expect(micro((await usageByTenant(db, new Map([['acme', windows]]), features)).get('acme')!.get(iso(START)))).toEqual(expected);
    expect(micro((await tenantUsage(db, 'acme', windows, features, windowsKey(subs))).get(iso(START)))).toEqual(expected);
    const show = await runCli(['catalog', 'show'], { db: url, now: new Date(now).toISOString() });
    expect(show.stdout).toMatch(/DISK_GB .*weighted_sum/);
  });

  it('invoices the value, and verify holds billed usage to the recorded value', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z', CATALOG);
    await tenant(db, 'beta', { planKey: 'store', start: START });
    await w.usage('2026-04-01T00:00:01Z', 'beta', 'DISK_GB', '10', START);
    await w.usage('2026-04-16T00:00:00Z', 'beta', 'DISK_GB', '10');
    await w.generate('2026-05-01T01:00:00Z', { finalize: true });
    const [inv] = await invoicesByNumber(db);
    expect(shape(inv)).toEqual(['beta', '2026-04-01..2026-05-01', ['base_fee store@1 0.00', 'overage DISK_GB 1.50'], '1.50']);
    expect((await verifyInvoices(db)).violations).toEqual([]);
    // The summary says 10 GB-months now (an accumulator far above the 15 billed, as a raw number).
    await db.knex('usage_summaries').where({ tenant_id: 'beta', feature_key: 'DISK_GB' }).update({ quantity: 10_000_000 * 2_592_000 });
    expect((await verifyInvoices(db)).violations).toEqual([
      expect.objectContaining({ check: 'overbilled_usage', message: expect.stringMatching(/billed on 15 but only 10 is recorded/) }),
    ]);
  });

  it('refuses a weighted_sum event past its bound, naming the field', async () => {
    const { db } = t();
    await applyCatalog(db, CATALOG, { now: iso('2026-01-01T00:00:00Z'), actor: ACTOR });
    await tenant(db, 'acme', { planKey: 'store', start: START });
    const now = iso('2026-04-20T00:00:00Z');
    const rec = (featureKey: string, quantity: string, eventId: string) =>
      recordUsage(db, [{ tenantId: 'acme', featureKey, quantity, eventId, occurredAt: now - 1000 }], { now });
    expect(await rec('DISK_GB', '100000', 'a')).toMatchObject([{ status: 'inserted' }]);
    expect(await rec('DISK_GB', '100000.000001', 'b')).toMatchObject([
      { status: 'rejected', field: 'quantity', reason: '"100000.000001" is more than 100000, the largest step of a weighted_sum feature\'s level' },
    ]);
    expect(await rec('LATENCY', '100000.000001', 'c')).toMatchObject([{ status: 'inserted' }]);
  });
});
