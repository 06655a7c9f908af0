// The percentage pricing model (DESIGN.md §14, docs/reference.md "Catalog files") through the
// CLI on both databases: DESIGN.md's references, free events and free amount boundaries (whole
// events, time order then ingest order), decimal amounts, JPY and KWD rounding, a minimum with
// no events; rated charges, invoice lines, catalog show and verify agreeing. Then a window whose
// events retention deleted keeps its charge, and validation's errors.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world } from './invoice-world.js';
import { runRetention } from '../src/ops/retention.js';
import { validateCatalog } from '../src/catalog/validate.js';
import { BillingError } from '../src/domain/errors.js';
import type { Feature } from '../src/domain/catalog.js';

const JAN = '2026-01-01T00:00:00Z';
const FEB = '2026-02-01T00:00:00Z';
const day = (d: number, extra = 0) => new Date(Date.parse(JAN) + (d - 1) * 86_400_000 + extra).toISOString();

type Case = {
  name: string;
  currency: string;
  pricing: Record<string, unknown>;
  /** [amount, occurred day of January] in ingest order; the same day is the same instant. */
  events: Array<[string, number]>;
  /** The rated charge's precise and rounded amounts; invoice line amount = rounded. */
  precise: string;
  amount: string;
  /** The invoice line's description after "Payments: " (null: no line). */
  description: string | null;
};

const P = (p: Record<string, unknown>) => ({ model: 'percentage', rate: '1.3', fixedFeePerEvent: '2.00', ...p });
const FOUR: Case['events'] = [['50', 2], ['100', 3], ['250', 4], ['400', 5]];
const CASES: Case[] = [
  { name: 'DESIGN.md: 50, 100, 250, 400 at 1.3 % + 2.00', currency: 'USD', pricing: P({}), events: FOUR, precise: '18.4', amount: '18.40', description: '4 events, 800.00, 1.3% + 2.00 per event' },
  { name: 'DESIGN.md: the same with freeEvents 3', currency: 'USD', pricing: P({ freeEvents: 3 }), events: FOUR, precise: '7.2', amount: '7.20', description: '4 events, 800.00, 1.3% + 2.00 per event, 3 free' },
  { name: 'DESIGN.md: 10, 80, 10,000 at 2.99 % with min 1.75 / max 12', currency: 'USD', pricing: { model: 'percentage', rate: '2.99', perEventMin: '1.75', perEventMax: '12' }, events: [['10', 2], ['80', 3], ['10000', 4]], precise: '16.142', amount: '16.14', description: '3 events, 10090.00, 2.99% per event' },
  { name: 'an event reaching freeAmount exactly is free; the next pays in full', currency: 'USD', pricing: P({ freeAmount: '150' }), events: [['50', 2], ['100', 3], ['250', 4]], precise: '5.25', amount: '5.25', description: '3 events, 400.00, 1.3% + 2.00 per event, 2 free' },
  { name: 'an event crossing freeAmount pays whole, and so does every later one', currency: 'USD', pricing: P({ freeAmount: '149.99' }), events: [['50', 2], ['100', 3], ['1', 4]], precise: '5.313', amount: '5.31', description: '3 events, 151.00, 1.3% + 2.00 per event, 1 free' },
  { name: 'free events in time order, not ingest order', currency: 'USD', pricing: P({ freeEvents: 1 }), events: [['50', 9], ['400', 3]], precise: '2.65', amount: '2.65', description: '2 events, 450.00, 1.3% + 2.00 per event, 1 free' },
  { name: 'events at the same instant: the earlier ingest comes first', currency: 'USD', pricing: P({ freeEvents: 1 }), events: [['400', 3], ['50', 3]], precise: '2.65', amount: '2.65', description: '2 events, 450.00, 1.3% + 2.00 per event, 1 free' },
  { name: 'decimal amounts, no rounding per event', currency: 'USD', pricing: { model: 'percentage', rate: '1.3', fixedFeePerEvent: '0.30' }, events: [['12.345', 2], ['0.005', 3]], precise: '0.76055', amount: '0.76', description: '2 events, 12.35, 1.3% + 0.30 per event' },
  { name: 'JPY: 0.5 + 20 rounds half away from zero to 21', currency: 'JPY', pricing: { model: 'percentage', rate: '2' }, events: [['25', 2], ['1000', 3]], precise: '20.5', amount: '21', description: '2 events, 1025, 2% per event' },
  { name: 'KWD: 0.1005 + 0.2 rounds to 0.301', currency: 'KWD', pricing: { model: 'percentage', rate: '1', fixedFeePerEvent: '0.100' }, events: [['0.05', 2], ['10', 3]], precise: '0.3005', amount: '0.301', description: '2 events, 10.050, 1% + 0.100 per event' },
  { name: 'zero events: no charge, no line', currency: 'USD', pricing: P({}), events: [], precise: '0', amount: '0.00', description: null },
  { name: 'zero events with a minimum spend: the minimum', currency: 'USD', pricing: P({ minimum: '5.00' }), events: [], precise: '5', amount: '5.00', description: '0 events, 0.00, 1.3% + 2.00 per event, minimum spend 5.00' },
];

function catalogFile(): string {
  const plans = CASES.map((c, i) => ({
    key: `p${i}`, name: `Plan ${i}`, currency: c.currency, price: '0', interval: 'month',
    features: { PAYMENTS: { included: 0, overage: c.pricing } },
  }));
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'pct-')), 'catalog.json');
  writeFileSync(file, JSON.stringify({ features: [{ key: 'PAYMENTS', name: 'Payments', unit: 'usd', aggregation: 'sum' }], plans }));
  return file;
}

describeEachDb('percentage pricing', (t) => {
  it('prices DESIGN.md references and boundaries the same in overage and invoices, through the CLI', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = async (args: string[], now: string, input?: string) => {
      const r = await runCli(args, { db: url, now, input });
      if (args[0] !== 'ingest') expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      return r.stdout;
    };
    const file = catalogFile();
    await cli(['catalog', 'apply', file], JAN);
    expect(await cli(['catalog', 'apply', file], JAN)).toContain('catalog unchanged');
    for (let i = 0; i < CASES.length; i++) {
      await w.tenant(JAN, `t${i}`);
      await w.subscribe(JAN, `t${i}`, `p${i}`, 0);
    }
    const lines = CASES.flatMap((c, i) =>
      c.events.map(([quantity, d], k) => JSON.stringify({ tenant_id: `t${i}`, feature: 'PAYMENTS', quantity, occurred_at: day(d), event_id: `t${i}-${k}` })),
    );
    await cli(['ingest', '-', '--format', 'ndjson'], day(20), lines.join('\n') + '\n');

    const show = await cli(['catalog', 'show'], day(20));
    expect(show).toContain('1.3% + 2.00 per event, free up to 3 events');
    expect(show).toContain('2.99% per event, per-event min 1.75, per-event max 12');

    // Before aggregation: the report and the estimate price the events read directly.
    const report = JSON.parse(await cli(['report', '--json'], day(20))) as Array<{ tenantId: string; features: Array<{ overageAmount: string }> }>;
    expect(report.find((r) => r.tenantId === 't0')!.features[0]).toMatchObject({ used: '800', overageAmount: '18.40' });
    const estimate = JSON.parse(await cli(['estimate', 't0', '--json'], day(20)));
    expect(estimate.features[0]).toMatchObject({ projection: 'current_value', projectedUsed: '800', overageAmount: '18.40', projectedOverageAmount: '18.40' });

    await cli(['aggregate'], FEB);
    const charges = JSON.parse(await cli(['overage', '--json'], FEB)).charges as Array<{ tenantId: string; amountPrecise: string; amount: string }>;
    await cli(['invoice', 'generate', '--finalize'], FEB);
    const invoices = await invoicesByNumber(db);
    const got = CASES.map((_, i) => {
      const c = charges.find((x) => x.tenantId === `t${i}`);
      const line = invoices.find((inv) => inv.tenantId === `t${i}`)!.lines.find((l) => l.featureKey === 'PAYMENTS');
      return [c?.amountPrecise ?? '0', c?.amount ?? '0.00', line?.amount ?? null, line?.description.replace(/^Payments: /, '') ?? null];
    });
    expect(got).toEqual(CASES.map((c) => [c.precise, c.amount, c.description === null ? null : c.amount, c.description]));
    expect(JSON.parse(await cli(['verify', '--json'], FEB))).toMatchObject({ ok: true, violations: [] });
  });

  it('a window whose events retention deleted keeps its charge; a late event there bills nothing', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    await w.apply(JAN, {
      features: [{ key: 'PAYMENTS', name: 'Payments', aggregation: 'sum' }],
      plans: [{ key: 'pay', name: 'Pay', currency: 'USD', price: '0', interval: 'month', features: { PAYMENTS: { included: 0, overage: P({}) } } }],
    });
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'pay', 0);
    for (const [q, d] of FOUR) await w.usage(day(d), 'acme', 'PAYMENTS', q);
    expect((await cli(['run'], FEB)).code).toBe(0);
    const charge = () => db.knex('rated_charges').where({ tenant_id: 'acme', period_start: Date.parse(JAN) }).first();
    expect(await charge()).toMatchObject({ amount: '18.40' });

    const later = Date.parse('2033-06-01T00:00:00Z');
    expect((await runRetention(db, { olderThan: '7y', now: later, actor: 'test' })).deleted).toBe(4);
    await w.usage('2033-06-01T00:00:00Z', 'acme', 'PAYMENTS', '1000', day(10));
    const now = '2033-06-01T01:00:00Z';
    expect((await cli(['aggregate'], now)).code).toBe(0);
    expect(JSON.parse((await cli(['overage', '--json'], now)).stdout).charges).toEqual([]);
    const kept = await charge();
    expect([kept.amount, String(kept.summary_quantity)]).toEqual(['18.40', '800000000']);
    expect(String((await db.knex('usage_summaries').where({ tenant_id: 'acme' }).first()).quantity)).toBe('1800000000');
    // The next invoice bills no late usage (and credits nothing) for January.
    expect((await cli(['invoice', 'generate', '--finalize'], now)).code).toBe(0);
    const jan = (await invoicesByNumber(db)).flatMap((i) => i.lines).filter((l) => l.featureKey === 'PAYMENTS' && l.period.start === Date.parse(JAN));
    expect(jan.map((l) => [l.kind, l.amount])).toEqual([['overage', '18.40']]);
    expect(JSON.parse((await cli(['verify', '--json'], now)).stdout)).toMatchObject({ ok: true });
  });
});

describeEachDb('percentage pricing: billing verify', (t) => {
  it('checks a line\'s price lines against its snapshot, and re-derives its due from the events', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, {
      features: [{ key: 'PAYMENTS', name: 'Payments', aggregation: 'sum' }],
      plans: [{ key: 'pay', name: 'Pay', currency: 'USD', price: '0', interval: 'month', features: { PAYMENTS: { included: 0, overage: P({}) } } }],
    });
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'pay', 0);
    for (const [q, d] of FOUR) await w.usage(day(d), 'acme', 'PAYMENTS', q);
    await w.generate(FEB, { finalize: true });
    const row = await db.knex('invoice_lines').where({ tenant_id: 'acme', feature_key: 'PAYMENTS' }).first();
    const verify = async () => JSON.parse((await runCli(['verify', '--json'], { db: url, now: FEB })).stdout).violations.map((v: { check: string; message: string }) => `${v.check}: ${v.message}`);
    expect(await verify()).toEqual([]);
    const snapshot = JSON.parse(row.price_snapshot);
    const tamper = (over: Record<string, unknown>) =>
      db.knex('invoice_lines').where({ tenant_id: 'acme', feature_key: 'PAYMENTS' }).update({ price_snapshot: JSON.stringify({ ...snapshot, overage: { ...snapshot.overage, ...over } }) });
    // A fee the price lines do not charge: the line's own arithmetic says so.
    await tamper({ fixedFeePerEvent: '2.50' });
    expect(await verify()).toContainEqual('recompute: PAYMENTS overage: price line event-fee charges 2 per event, not 2.50');
    // Free events the price lines cannot show: the period's events, still there, rate at 7.20.
    await tamper({ freeEvents: 3 });
    expect((await verify()).some((v: string) => v.startsWith('recompute: PAYMENTS for the period starting 2026-01-01T00:00:00.000Z: its events rate at 7.20 (7.2), the line says 18.40 (18.4)'))).toBe(true);
  });
});

describe('percentage catalog validation', () => {
  const known = new Map<string, Feature>([
    ['PAYMENTS', { key: 'PAYMENTS', type: 'metered', aggregation: 'sum' } as Feature],
    ['SEATS', { key: 'SEATS', type: 'metered', aggregation: 'max' } as Feature],
  ]);
  const problems = (features: Record<string, unknown>): string[] => {
    try {
      validateCatalog({ plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features }] }, known);
    } catch (e) {
      expect(e).toBeInstanceOf(BillingError);
      return ((e as BillingError).details as Array<{ path: string; message: string }>).map((p) => `${p.path}: ${p.message}`);
    }
    return [];
  };
  const at = 'plans[0].features.PAYMENTS';
  it.each([
    ['valid, every term', { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '1.3', fixedFeePerEvent: '2.00', freeEvents: 3, freeAmount: '250', perEventMin: '1.75', perEventMax: '12' } } }, []],
    ['rate above 100, as a number', { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '100.5' } } }, [`${at}.overage.rate: "100.5" must be a percentage from "0" to "100" as a decimal string, like "2.9"`]],
    ['rate missing', { PAYMENTS: { included: 0, overage: { model: 'percentage' } } }, [`${at}.overage.rate: "undefined" must be a percentage from "0" to "100" as a decimal string, like "2.9"`]],
    ['negative fee, fractional freeEvents, amount as a number', { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '1', fixedFeePerEvent: '-1', freeEvents: 1.5, freeAmount: 250 } } }, [
      `${at}.overage.fixedFeePerEvent: must not be negative`,
      `${at}.overage.freeEvents: 1.5 must be a whole number of events, 0 or more`,
      `${at}.overage.freeAmount: must be a decimal string like "250" (prices are strings so no float ever touches money)`,
    ]],
    ['perEventMin above perEventMax', { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '1', perEventMin: '5', perEventMax: '4.99' } } }, [`${at}.overage.perEventMax: must be at least perEventMin (5)`]],
    ['included other than 0, or unlimited', { PAYMENTS: { included: 100, overage: { model: 'percentage', rate: '1' } } }, [`${at}.included: must be 0 with percentage pricing: its fee applies to every event (give a free allowance with freeEvents / freeAmount)`]],
    ['a feature that does not sum amounts', { SEATS: { included: 0, overage: { model: 'percentage', rate: '1' } } }, ['plans[0].features.SEATS.overage.model: percentage prices each event\'s amount: SEATS aggregates "max", it needs "sum"']],
    ['an unknown term', { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '1', fee: '1' } } }, [`${at}.overage.fee: unknown field (expected one of: model, minimum, maximum, rate, fixedFeePerEvent, freeEvents, freeAmount, perEventMin, perEventMax)`]],
  ])('%s', (_name, features, want) => {
    expect(problems(features)).toEqual(want);
  });
  it('stores only the terms given', () => {
    const spec = validateCatalog({ plans: [{ key: 'p', currency: 'USD', price: '1', interval: 'month', features: { PAYMENTS: { included: 0, overage: { model: 'percentage', rate: '2.9', fixedFeePerEvent: '0.30', perEventMax: null } } } }] }, known);
    expect(spec.plans[0].features.PAYMENTS.overage).toEqual({ model: 'percentage', rate: '2.9', fixedFeePerEvent: '0.30' });
  });
});
