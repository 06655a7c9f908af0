// Rollover of unused included units (DESIGN.md §14, docs/reference.md "Rollover") through the
// CLI on both databases: the cap, carried units never rolling twice, a carry after a period
// without usage, a plan change to a plan without rollover, the hard stop's limit rising by the
// carried units, and invoice, report, estimate, overage and check agreeing; then verify.
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world } from './invoice-world.js';
import { carriedUnits } from '../src/rate/rollover.js';
import type { PlanFeature } from '../src/domain/catalog.js';

const JAN = '2026-01-01T00:00:00Z';
const per = (unitPrice: string) => ({ model: 'per_unit', unitPrice });
const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'EXPORT', name: 'Exports', unit: 'export', aggregation: 'sum' },
  ],
  plans: [
    {
      key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month',
      features: {
        API_CALL: { included: 1000, overage: per('0.01'), rollover: { max: 300 } },
        EXPORT: { included: 10, hardStop: true, rollover: { max: 5 } },
      },
    },
    { key: 'basic', name: 'Basic', currency: 'USD', price: '50.00', interval: 'month', features: { API_CALL: { included: 1000, overage: per('0.01') } } },
  ],
};

describe('carried units', () => {
  const terms = (max: string): PlanFeature => ({ featureKey: 'F', enabled: true, included: '1000', hardStop: false, limit: null, overage: null, rollover: { max } });
  it.each([
    ['400 unused, capped at 300', '300', '1000', '600', '300'],
    ['200 unused, under the cap', '300', '1000', '800', '200'],
    ['all used', '300', '1000', '1000', '0'],
    ['over the allowance: nothing, never negative', '300', '1000', '1500', '0'],
    ['no usage: the cap', '300', '1000', '0', '300'],
    ['decimals', '2.5', '10', '8.75', '1.25'],
    ['a zero cap', '0', '1000', '0', '0'],
  ])('%s', (_name, max, included, used, carried) => {
    expect(carriedUnits(terms(max), { period: { start: 0, end: 1 }, included }, used)).toBe(carried);
  });
  it('nothing without a previous period or without rollover', () => {
    expect(carriedUnits(terms('300'), null, '0')).toBe('0');
    expect(carriedUnits({ ...terms('300'), rollover: undefined }, { period: { start: 0, end: 1 }, included: '1000' }, '0')).toBe('0');
  });
});

describeEachDb('rollover', (t) => {
  it('carries unused included units into the next period, capped, once; a hard stop limit rises with them', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const json = async (args: string[], now: string) => {
      const r = await cli([...args, '--json'], now);
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout);
    };
    const generate = async (now: string) => expect((await cli(['invoice', 'generate', '--finalize'], now)).code).toBe(0);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);

    // January (the first period: nothing carried): 400 API calls and 2 exports left unused.
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'API_CALL', '600');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'EXPORT', '8');
    expect(await json(['check', 'acme', 'EXPORT'], '2026-01-20T00:00:00Z')).toMatchObject({ used: '8', included: '10', limit: '10', carried: '0' });
    await generate('2026-02-01T01:00:00Z');

    // February: 300 (the cap) and 2 exports carried. The export limit is 12: the 12th passes, a 13th is refused.
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'API_CALL', '1200');
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'EXPORT', '11');
    const check = await json(['check', 'acme', 'EXPORT'], '2026-02-15T00:00:00Z');
    expect(check).toMatchObject({ allowed: true, reason: 'within_plan', used: '11', included: '12', limit: '12', remaining: '1', carried: '2' });
    expect(await json(['check', 'acme', 'EXPORT', '--quantity', '2'], '2026-02-15T00:00:00Z')).toMatchObject({ allowed: false, reason: 'limit_reached', carried: '2' });
    await generate('2026-03-01T01:00:00Z');

    // March: February used 1,200 of its own 1,000: nothing carries (carried units never roll).
    await w.usage('2026-03-10T00:00:00Z', 'acme', 'API_CALL', '1100');
    await generate('2026-04-01T01:00:00Z');
    // April: no usage at all. May: April's 1,000 unused, capped at 300.
    await generate('2026-05-01T01:00:00Z');
    await w.usage('2026-05-10T00:00:00Z', 'acme', 'API_CALL', '1250');
    expect(await json(['check', 'acme', 'API_CALL'], '2026-05-20T00:00:00Z')).toMatchObject({ used: '1250', included: '1300', carried: '300' });
    const report = await json(['report'], '2026-05-20T00:00:00Z');
    expect(report[0].features.find((f: any) => f.featureKey === 'API_CALL')).toMatchObject({ used: '1250', included: '1300', overage: '0', overageAmount: '0.00' });
    const estimate = await json(['estimate', 'acme'], '2026-05-20T00:00:00Z');
    expect(estimate.features.find((f: any) => f.featureKey === 'API_CALL')).toMatchObject({ used: '1250', overageAmount: '0.00' });
    // Moved to a plan without rollover from June: nothing carries into June.
    expect((await cli(['subscription', 'change', 'acme', 'basic', '--at', 'period-end'], '2026-05-20T00:00:00Z')).code).toBe(0);
    await generate('2026-06-01T01:00:00Z');
    await w.usage('2026-06-10T00:00:00Z', 'acme', 'API_CALL', '1100');
    await generate('2026-07-01T01:00:00Z');
    expect((await cli(['overage'], '2026-07-01T02:00:00Z')).code).toBe(0);

    const lines = (await invoicesByNumber(db)).map((i) => i.lines.filter((l) => l.featureKey).map((l) => `${l.description} ${l.amount}`));
    expect(lines).toEqual([
      ['API calls: 600 used, 1000 included, 0 billable 0.00', 'Exports: 8 used, 10 included, 0 billable 0.00'],
      ['API calls: 1200 used, 1300 included (300 carried over), 0 billable 0.00', 'Exports: 11 used, 12 included (2 carried over), 0 billable 0.00'],
      ['API calls: 1100 used, 1000 included, 100 billable 1.00'],
      [],
      ['API calls: 1250 used, 1300 included (300 carried over), 0 billable 0.00'],
      ['API calls: 1100 used, 1000 included, 100 billable 1.00'],
    ]);
    const febInvoice = (await invoicesByNumber(db))[1];
    const feb = febInvoice.lines.find((l) => l.featureKey === 'API_CALL')!;
    expect(feb.details).toMatchObject({ included: '1300', carried: '300' });
    const charges = await db.knex('rated_charges').where({ tenant_id: 'acme', feature_key: 'API_CALL' }).orderBy('period_start').select('included', 'billable');
    expect(charges.map((c) => `${c.included} ${c.billable}`)).toEqual(['1000 0', '1300 0', '1000 100', '1300 0', '1000 100']);
    expect((await cli(['verify'], '2026-07-01T02:00:00Z')).code).toBe(0);

    // A line claiming more carried over than its terms' cap is named by verify.
    const row = () => db.knex('invoice_lines').where({ invoice_id: febInvoice.id, line_no: feb.lineNo });
    const stored = (await row().first()).details as string;
    await row().update({ details: JSON.stringify({ ...JSON.parse(stored), carried: '400' }) });
    const r = await cli(['verify', '--json'], '2026-07-01T02:00:00Z');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).violations.map((v: any) => v.message)).toEqual(["API_CALL overage carries 400 over, more than its terms' rollover allows (300)"]);
    await row().update({ details: stored });
    expect((await cli(['verify'], '2026-07-01T02:00:00Z')).code).toBe(0);
  });
  it('a previous period past retention still carries: read from its summary', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'API_CALL', '600');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z')).code).toBe(0);
    expect((await cli(['retention', '--older-than', '1d'], '2026-02-10T00:00:00Z')).code).toBe(0);
    expect(Number((await db.knex('usage_events').where('occurred_at', '<', Date.parse('2026-02-01T00:00:00Z')).count('* as n').first())?.n)).toBe(0);

    const check = JSON.parse((await cli(['check', 'acme', 'API_CALL', '--json'], '2026-02-10T00:00:00Z')).stdout);
    expect(check).toMatchObject({ included: '1300', carried: '300' });
    await w.usage('2026-02-12T00:00:00Z', 'acme', 'API_CALL', '1200');
    const report = JSON.parse((await cli(['report', '--json'], '2026-02-20T00:00:00Z')).stdout);
    expect(report[0].features.find((f: any) => f.featureKey === 'API_CALL')).toMatchObject({ used: '1200', included: '1300', overageAmount: '0.00' });
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-03-01T01:00:00Z')).code).toBe(0);
    const lines = (await invoicesByNumber(db)).map((i) => i.lines.filter((l) => l.featureKey === 'API_CALL').map((l) => l.description));
    expect(lines[1]).toEqual(['API calls: 1200 used, 1300 included (300 carried over), 0 billable']);
  });
  it('a minimum charged without usage states the carried units too', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const catalog = {
      features: CATALOG.features,
      plans: [{ key: 'floor', name: 'Floor', currency: 'USD', price: '10.00', interval: 'month', features: { API_CALL: { included: 100, overage: { ...per('0.01'), minimum: '5.00' }, rollover: { max: 50 } } } }],
    };
    await w.apply(JAN, catalog);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'floor', 0);
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'API_CALL', '20');
    expect((await cli(['aggregate'], '2026-02-28T12:00:00Z')).code).toBe(0);
    expect((await cli(['overage'], '2026-02-28T12:00:00Z')).code).toBe(0);
    const charges = await db.knex('rated_charges').where({ tenant_id: 'acme' }).orderBy('period_start').select('included', 'amount', 'summary_quantity');
    expect(charges.map((c) => `${c.included} ${c.amount} ${c.summary_quantity === null ? 'minimum' : 'usage'}`)).toEqual(['100 5.00 usage', '150 5.00 minimum']);
  });
});
