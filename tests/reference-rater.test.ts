// The reference rater (tests/reference/rater.ts) against the real pipeline: random catalogs,
// currencies, subscriptions and usage, every invoice line and total equal to the minor unit.
// RATER_SEED=S replays a run, RATER_SCENARIOS=N sets its size, RATER_CURRENCIES=USD,JPY its
// currencies.
import { describe, expect, it } from 'vitest';
import { Decimal } from '../src/domain/decimal.js';
import type { Db } from '../src/storage/db.js';
import { applyCatalog } from '../src/catalog/apply.js';
import { setQuota } from '../src/subscriptions/quota.js';
import { addDiscount } from '../src/subscriptions/discounts.js';
import { setTenantTax } from '../src/subscriptions/taxes.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { addUnitGrant, voidUnitGrant } from '../src/subscriptions/unit-grants.js';
import { createCreditNote } from '../src/invoice/credit-notes.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { cancelSubscription, changePlan, subscribe } from '../src/subscriptions/lifecycle.js';
import { recordUsage } from '../src/ingest/record.js';
import { generateInvoices } from '../src/invoice/generate.js';
import { listInvoices } from '../src/invoice/repository.js';
import type { Invoice } from '../src/invoice/types.js';
import { stripeSync } from '../src/stripe/sync.js';
import { runOverage } from '../src/rate/overage.js';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { buildHistory } from '../src/report/history.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { describeEachDb } from './helpers/db.js';
import { FakeStripe } from './support/fake-stripe.js';
import {
  ReferenceBilling,
  addMonths,
  minorToMajor,
  modelAmount,
  percentageAmount,
  rate,
  stripeUnits,
  toMinor,
  type RefInvoice,
  type RefLine,
  type RefPricing,
  type Terms,
} from './reference/rater.js';
import { DEFAULT_CURRENCIES, EPOCH, describeScenario, generateScenario, type Scenario } from './reference/scenario.js';

const ACTOR = 'rater';
const D = (x: string) => new Decimal(x);
const T = (iso: string) => Date.parse(iso);

// ---- the reference itself, on DESIGN.md's examples, checked by hand ----------------------------

describe('reference rater: hand-checked cases', () => {
  const graduated: RefPricing = { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '0.02' }, { upTo: null, unitPrice: '0.01', flatPrice: '1.00' }] };
  const volume: RefPricing = { model: 'volume', tiers: [{ upTo: 10, unitPrice: '1.00', flatPrice: '5.00' }, { upTo: null, unitPrice: '0.50', flatPrice: '2.00' }] };
  const cases: Array<[string, RefPricing, string, string]> = [
    // [name, pricing, billable, amount]
    ['per_unit 150 × 0.05', { model: 'per_unit', unitPrice: '0.05' }, '150', '7.5'],
    ['package 100 of 100 = 1 package', { model: 'package', size: 100, packagePrice: '1.50' }, '100', '1.5'],
    ['package 101 of 100 = 2 packages', { model: 'package', size: 100, packagePrice: '1.50' }, '101', '3'],
    ['graduated inside tier 1: no flat price', graduated, '100', '2'],
    ['graduated one unit into tier 2: 100 × 0.02 + 1 × 0.01 + 1.00', graduated, '101', '3.01'],
    ['graduated 250: 2.00 + 150 × 0.01 + 1.00', graduated, '250', '4.5'],
    ['volume 10 (upTo inclusive): 10 × 1.00 + 5.00', volume, '10', '15'],
    ['volume 10.5: all at tier 2, 10.5 × 0.50 + 2.00', volume, '10.5', '7.25'],
    ['no billable quantity, no flat price', graduated, '0', '0'],
    ['graduated_percentage 5,050 (DESIGN.md §14): 1 % of 1,000 + 200 + 2 % of 4,050 + 300', { model: 'graduated_percentage', tiers: [{ upTo: 1000, rate: '1', flatPrice: '200' }, { upTo: 10000, rate: '2', flatPrice: '300' }, { upTo: null, rate: '3', flatPrice: '400' }] }, '5050', '591'],
  ];
  it.each(cases)('%s', (_name, pricing, billable, amount) => {
    expect(modelAmount(pricing, D(billable)).toFixed()).toBe(amount);
  });

  // DESIGN.md §14's percentage references, and the free-event boundaries (whole events only).
  const pct = (p: Partial<RefPricing>): RefPricing => ({ model: 'percentage', rate: '1.3', fixedFeePerEvent: '2.00', ...p });
  const pctCases: Array<[string, RefPricing, string[], string]> = [
    ['50, 100, 250, 400 at 1.3 % + 2.00', pct({}), ['50', '100', '250', '400'], '18.4'],
    ['the same with freeEvents 3: only 400 pays', pct({ freeEvents: 3 }), ['50', '100', '250', '400'], '7.2'],
    ['freeAmount 150: 50 and 100 free (running 150), 250 pays in full', pct({ freeAmount: '150' }), ['50', '100', '250', '400'], '12.45'],
    ['freeAmount 149: the 100 crosses it, so it and every later event pay', pct({ freeAmount: '149' }), ['50', '100', '250', '400'], '15.75'],
    ['a small event after the threshold still pays', pct({ freeAmount: '100' }), ['50', '60', '1'], '4.793'],
    ['10, 80, 10,000 at 2.99 % with min 1.75 / max 12', { model: 'percentage', rate: '2.99', perEventMin: '1.75', perEventMax: '12' }, ['10', '80', '10000'], '16.142'],
    ['no events', pct({}), [], '0'],
  ];
  it.each(pctCases)('percentage: %s', (_name, pricing, events, amount) => {
    expect(percentageAmount(pricing, events.map(D)).toFixed()).toBe(amount);
  });

  it('included, minimum (even at zero usage), maximum, rounding once half away from zero per currency', () => {
    const terms = (included: string | null, pricing: RefPricing): Terms => ({ enabled: true, included: included === null ? null : D(included), pricing });
    const perUnit = (p: Partial<RefPricing>) => ({ model: 'per_unit' as const, unitPrice: '0.005', ...p });
    expect(rate(terms('50', perUnit({})), D('51'), 'USD')).toMatchObject({ billable: D('1'), minor: 1n }); // 0.005 → 0.01
    expect(rate(terms('50', perUnit({})), D('49'), 'USD').minor).toBe(0n);
    expect(rate(terms('50', perUnit({ minimum: '2.00' })), D('0'), 'USD').minor).toBe(200n);
    expect(rate(terms('0', perUnit({ maximum: '1.00' })), D('1000'), 'USD').minor).toBe(100n);
    expect(rate(terms(null, perUnit({})), D('1000'), 'USD').minor).toBe(0n); // unlimited
    expect(rate(terms('0', { model: 'per_unit', unitPrice: '2.5' }), D('1'), 'JPY').minor).toBe(3n);
    expect(rate(terms('0', { model: 'per_unit', unitPrice: '0.0005' }), D('1'), 'KWD').minor).toBe(1n);
    expect(toMinor(D('-0.005'), 'USD')).toBe(-1n);
    expect(minorToMajor(-5n, 'KWD')).toBe('-0.005');
    expect(minorToMajor(1234n, 'JPY')).toBe('1234');
  });

  it('anchors on the 31st clamp to month ends: 31 Jan → 28 Feb → 31 Mar; 29 Feb in a leap year', () => {
    const a = T('2026-01-31T10:00:00Z');
    expect([1, 2, 3].map((n) => new Date(addMonths(a, n)).toISOString())).toEqual([
      '2026-02-28T10:00:00.000Z', '2026-03-31T10:00:00.000Z', '2026-04-30T10:00:00.000Z',
    ]);
    expect(new Date(addMonths(T('2028-01-30T00:00:00Z'), 1)).toISOString()).toBe('2028-02-29T00:00:00.000Z');
  });

  it('an upgrade exactly half-way through a 10.00 month, then 20.00, bills 5.00 + 10.00; a cancellation on day 15 of 30 half', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'OCR', name: 'OCR', aggregation: 'sum' }],
      plans: [
        { key: 'basic', name: 'Basic', currency: 'USD', price: '10.00', interval: 'month', features: {} },
        { key: 'pro', name: 'Pro', currency: 'USD', price: '20.00', interval: 'month', features: {} },
      ],
    });
    ref.subscribe(T('2026-02-01T00:00:00Z'), 'acme', 'basic');
    ref.change(T('2026-02-15T00:00:00Z'), 'acme', 'pro'); // a higher price: now
    ref.subscribe(T('2026-04-01T00:00:00Z'), 'globex', 'basic');
    ref.cancel(T('2026-04-16T00:00:00Z'), 'globex', 'now');
    const invs = ref.generate(T('2026-05-01T00:00:00Z'));
    const feb = invs.find((i) => i.tenant === 'acme' && i.start === T('2026-02-01T00:00:00Z'))!;
    expect(feb.lines.map((l) => [l.plan, l.quantity!.toFixed(), l.amountMinor])).toEqual([['basic@1', '0.5', 500n], ['pro@1', '0.5', 1000n]]);
    expect(feb.totalMinor).toBe(1500n);
    const april = invs.find((i) => i.tenant === 'globex')!;
    expect([april.end, april.totalMinor]).toEqual([T('2026-04-16T00:00:00Z'), 500n]);
  });

  it('discounts (DESIGN.md §13): a 25.00 once coupon on 10.00 gives 0.00 then 10.00; JPY 1,000 less 15 % is 850; percentages before fixed amounts', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'OCR', name: 'OCR', aggregation: 'sum' }],
      plans: [
        { key: 'ten', name: 'Ten', currency: 'USD', price: '10.00', interval: 'month', features: { OCR: { included: 0, overage: { model: 'per_unit', unitPrice: '1.00' } } } },
        { key: 'yen', name: 'Yen', currency: 'JPY', price: '1000', interval: 'month', features: {} },
      ],
    });
    const jan1 = T('2026-01-01T00:00:00Z');
    for (const [tenant, plan] of [['coupon', 'ten'], ['yen', 'yen'], ['mixed', 'ten']]) ref.subscribe(jan1, tenant, plan);
    ref.discount('coupon', { amount: '25.00', duration: 'once', start: jan1 });
    ref.discount('yen', { percent: '15', duration: 'forever', start: jan1 });
    // Added first, applied last: 10.00 + OCR 4.00 = 14.00; 50 % of OCR = 2.00; 10 % of 14.00 = 1.40; then 20.00 capped at 10.60.
    ref.discount('mixed', { amount: '20.00', duration: 'repeating', periods: 1, start: jan1 });
    ref.discount('mixed', { percent: '50', duration: 'forever', features: ['OCR'], start: jan1 });
    ref.discount('mixed', { percent: '10', duration: 'forever', start: jan1 });
    ref.ingest([{ tenant: 'mixed', feature: 'OCR', quantity: '4', occurredAt: T('2026-01-10T00:00:00Z') }]);
    const invs = ref.generate(T('2026-03-01T01:00:00Z'));
    const of = (tenant: string) => invs.filter((i) => i.tenant === tenant).map((i) => [i.lines.filter((l) => l.kind === 'discount').map((l) => l.amountMinor), i.totalMinor]);
    expect(of('coupon')).toEqual([[[-1000n], 0n], [[], 1000n]]);
    expect(of('yen')).toEqual([[[-150n], 850n], [[-150n], 850n]]);
    expect(of('mixed')).toEqual([[[-200n, -140n, -1060n], 0n], [[-100n], 900n]]);
  });

  it('DESIGN.md §13 worked example: commitment, discount, tax, prepaid credit and a credit note; JPY and inclusive EUR', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'API_CALL', name: 'API calls', aggregation: 'sum' }],
      plans: [
        { key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month', minimumCommitment: '150.00', features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } } } },
        { key: 'yen', name: 'Yen', currency: 'JPY', price: '1000', interval: 'month', features: {} },
        { key: 'euro', name: 'Euro', currency: 'EUR', price: '119.00', interval: 'month', features: {} },
      ],
    });
    const jan1 = T('2026-01-01T00:00:00Z');
    for (const [tenant, plan] of [['acme', 'growth'], ['yen', 'yen'], ['euro', 'euro']]) ref.subscribe(jan1, tenant, plan);
    ref.discount('acme', { percent: '10', duration: 'forever', start: jan1 });
    ref.tax('acme', { name: 'VAT', rate: '19', inclusive: false });
    ref.grant('acme', { amount: '50.00', currency: 'USD', priority: 0, effective: jan1 });
    ref.discount('yen', { percent: '15', duration: 'forever', start: jan1 });
    ref.tax('yen', { name: 'JCT', rate: '10', inclusive: false });
    ref.tax('euro', { name: 'VAT', rate: '19', inclusive: true });
    ref.ingest([{ tenant: 'acme', feature: 'API_CALL', quantity: '3000', occurredAt: T('2026-01-10T00:00:00Z') }]);
    const [jan, euroJan, yenJan] = ref.generate(T('2026-02-01T01:00:00Z'));
    const kinds = (i: RefInvoice) => i.lines.map((l) => `${l.kind} ${minorToMajor(l.amountMinor, i.currency)}`);
    expect(kinds(jan)).toEqual(['base_fee 100.00', 'overage 20.00', 'commitment 30.00', 'discount -15.00', 'tax 25.65', 'prepaid_credit -50.00']);
    expect([jan.grossMinor, jan.totalMinor]).toEqual([16065n, 11065n]);
    expect(ref.creditNote(T('2026-02-02T00:00:00Z'), 'acme', 0, 100)).toBe(16065n); // all of it: 110.65 off the due, 50.00 back as credit
    expect(jan.totalMinor - jan.noteReductionMinor).toBe(0n);
    expect(kinds(yenJan)).toEqual(['base_fee 1000', 'discount -150', 'tax 85']);
    expect(yenJan.totalMinor).toBe(935n);
    expect(kinds(euroJan)).toEqual(['base_fee 119.00', 'tax 0.00']);
    expect(euroJan.totalMinor).toBe(11900n);
    ref.ingest([{ tenant: 'acme', feature: 'API_CALL', quantity: '10000', occurredAt: T('2026-02-10T00:00:00Z') }]);
    const [feb] = ref.generate(T('2026-03-01T01:00:00Z'));
    // 190.00 − 19.00 + 32.49 = 203.49, less the 50.00 the credit note gave back.
    expect(kinds(feb)).toEqual(['base_fee 100.00', 'overage 90.00', 'discount -19.00', 'tax 32.49', 'prepaid_credit -50.00']);
    expect(feb.totalMinor).toBe(15349n);
  });

  it('unit grants: 1,000 included + A 500 (priority 0) + B 2,000 (priority 1); 1,500 then 3,200 used; late +100 on the recorded draw', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'API_CALL', name: 'API calls', aggregation: 'sum' }],
      plans: [{ key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month', features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } } } }],
    });
    const jan1 = T('2026-01-01T00:00:00Z');
    ref.subscribe(jan1, 'acme', 'growth');
    ref.unitGrant('acme', 'b', { feature: 'API_CALL', quantity: '2000', priority: 1, effective: jan1 });
    ref.unitGrant('acme', 'a', { feature: 'API_CALL', quantity: '500', priority: 0, effective: jan1, expires: T('2026-02-10T00:00:00Z') });
    ref.ingest([{ tenant: 'acme', feature: 'API_CALL', quantity: '1500', occurredAt: T('2026-01-10T00:00:00Z') }]);
    const [jan] = ref.generate(T('2026-02-01T01:00:00Z'));
    expect(jan.lines.map((l) => `${l.kind} ${l.quantity?.toFixed()} ${l.amountMinor}`)).toEqual(['base_fee 1 10000', 'overage 0 0']); // all 500 from A
    ref.ingest([
      { tenant: 'acme', feature: 'API_CALL', quantity: '3200', occurredAt: T('2026-02-10T00:00:00Z') },
      { tenant: 'acme', feature: 'API_CALL', quantity: '100', occurredAt: T('2026-01-20T00:00:00Z') },
    ]);
    const [feb] = ref.generate(T('2026-03-01T01:00:00Z'));
    // February: A is used up, B gives 2,000: 200 billable. January's late 100 on its 1,500 included: 100 billable.
    expect(feb.lines.map((l) => `${l.kind} ${l.quantity?.toFixed()} ${l.amountMinor}`)).toEqual(['base_fee 1 10000', 'overage 200 200', 'late_usage 100 100']);
    expect(ref.unitGrantDraws()).toBe(2);
  });

  it('rollover: 1,000 included, max 300; 600 / 1,500 / 0 / 1,250 used; carried units never roll twice', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'API_CALL', name: 'API calls', aggregation: 'sum' }],
      plans: [{ key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month', features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' }, rollover: { max: 300 } } } }],
    });
    ref.subscribe(T('2026-01-01T00:00:00Z'), 'acme', 'growth');
    const use = (q: string, at: string) => ref.ingest([{ tenant: 'acme', feature: 'API_CALL', quantity: q, occurredAt: T(at) }]);
    use('600', '2026-01-10T00:00:00Z');
    use('1500', '2026-02-10T00:00:00Z');
    use('1250', '2026-04-10T00:00:00Z');
    const inv = ref.generate(T('2026-05-01T01:00:00Z'));
    const usage = (i: RefInvoice) => i.lines.filter((l) => l.kind === 'overage').map((l) => `${l.quantity?.toFixed()} ${l.amountMinor}`);
    // Jan: first period, nothing carried. Feb: 400 unused, capped at 300: 1,500 − 1,300 = 200.
    // Mar: February's own 1,000 were used up: nothing. Apr: March's 1,000 unused, capped: 1,250 − 1,300.
    expect(inv.map(usage)).toEqual([['0 0'], ['200 200'], [], ['0 0']]);
    expect(ref.carriedPeriods).toBe(2);
  });

  it('reset windows: 1,000 a day; 1,800 on day 1 and 1,200 on day 2 bill 1,000, not 2,000 on the month; late 1,500 on an unused day bills 500', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'API_CALL', name: 'API calls', aggregation: 'sum' }],
      plans: [{ key: 'daily', name: 'Daily', currency: 'USD', price: '100.00', interval: 'month', features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' }, resetEvery: 'day' } } }],
    });
    ref.subscribe(T('2026-01-01T00:00:00Z'), 'acme', 'daily');
    const use = (q: string, at: string) => ref.ingest([{ tenant: 'acme', feature: 'API_CALL', quantity: q, occurredAt: T(at) }]);
    use('1800', '2026-01-01T23:59:59.999Z');
    use('1200', '2026-01-02T00:00:00.000Z');
    const [jan] = ref.generate(T('2026-02-01T01:00:00Z'));
    expect(jan.lines.filter((l) => l.feature).map((l) => `${l.kind} ${l.quantity?.toFixed()} ${l.amountMinor}`)).toEqual(['overage 1000 1000']);
    use('1500', '2026-01-05T12:00:00Z');
    const [feb] = ref.generate(T('2026-03-01T01:00:00Z'));
    expect(feb.lines.filter((l) => l.feature).map((l) => `${l.kind} ${l.quantity?.toFixed()} ${l.amountMinor}`)).toEqual(['late_usage 500 500']);
    expect(ref.resetWindows({ start: T('2026-01-31T00:00:00Z'), end: T('2027-01-31T00:00:00Z') }, 'month').slice(0, 3).map((w) => new Date(w.start).toISOString().slice(0, 10))).toEqual(['2026-01-31', '2026-02-28', '2026-03-31']);
  });

  it('credit notes: a 20.00 note on an open 110.65 leaves 90.65; on KWD only whole 10 fils come off the due', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'OCR', name: 'OCR', aggregation: 'sum' }],
      plans: [
        { key: 'usd', name: 'USD', currency: 'USD', price: '110.65', interval: 'month', features: {} },
        { key: 'kwd', name: 'KWD', currency: 'KWD', price: '2.120', interval: 'month', features: {} },
      ],
    });
    const jan1 = T('2026-01-01T00:00:00Z');
    ref.subscribe(jan1, 'a', 'usd');
    ref.subscribe(jan1, 'k', 'kwd');
    const [a, k] = ref.generate(T('2026-02-01T01:00:00Z'));
    expect(ref.creditNote(T('2026-02-02T00:00:00Z'), 'a', 0, 18)).toBe(1991n); // 18 % of 110.65, rounded down
    expect(a.totalMinor - a.noteReductionMinor).toBe(9074n);
    expect(ref.creditNote(T('2026-02-02T00:00:00Z'), 'k', 0, 1)).toBe(21n); // 0.021: 0.020 off the due, 0.001 credit
    expect(k.totalMinor - k.noteReductionMinor).toBe(2100n);
    const [, kFeb] = ref.generate(T('2026-03-01T01:00:00Z'));
    expect(kFeb.lines.map((l) => [l.kind, l.amountMinor])).toEqual([['base_fee', 2120n], ['prepaid_credit', -1n], ['rounding', 1n]]);
  });

  it('late usage bills the difference on the next invoice; KWD totals round to 10 fils; Stripe units', () => {
    const ref = new ReferenceBilling({
      features: [{ key: 'OCR', name: 'OCR', aggregation: 'sum' }],
      plans: [{ key: 'k', name: 'K', currency: 'KWD', price: '1.234', interval: 'month', features: { OCR: { included: 10, overage: { model: 'per_unit', unitPrice: '0.0125' } } } }],
    });
    ref.subscribe(T('2026-01-01T00:00:00Z'), 'kw', 'k');
    ref.ingest([{ tenant: 'kw', feature: 'OCR', quantity: '12', occurredAt: T('2026-01-10T00:00:00Z') }]);
    const [jan] = ref.generate(T('2026-02-01T01:00:00Z'));
    // 1.234 + 2 × 0.0125 = 1.259 → rounding +0.001 → 1.260
    expect(jan.lines.map((l) => [l.kind, l.amountMinor])).toEqual([['base_fee', 1234n], ['overage', 25n], ['rounding', 1n]]);
    expect(jan.totalMinor).toBe(1260n);
    ref.ingest([{ tenant: 'kw', feature: 'OCR', quantity: '4', occurredAt: T('2026-01-20T00:00:00Z') }]);
    const [feb] = ref.generate(T('2026-03-01T01:00:00Z'));
    // late: 6 × 0.0125 = 0.075 due, 0.025 billed → 0.050; 1.234 + 0.050 = 1.284 → −0.004 → 1.280
    expect(feb.lines.map((l) => [l.kind, l.amountMinor, l.quantity?.toFixed()])).toEqual([['base_fee', 1234n, '1'], ['late_usage', 50n, '4'], ['rounding', -4n, undefined]]);
    expect([stripeUnits('1.28', 'KWD'), stripeUnits('1000', 'ISK'), stripeUnits('1000', 'JPY'), stripeUnits('12.35', 'HUF')]).toEqual([1280n, 100000n, 1000n, 1235n]);
  });
});

// ---- the property test -------------------------------------------------------------------

const SEED = process.env.RATER_SEED ? Number(process.env.RATER_SEED) : Math.floor(Math.random() * 2 ** 31);
const SCENARIOS = Number(process.env.RATER_SCENARIOS ?? 8);
const CURRENCIES = (process.env.RATER_CURRENCIES ?? DEFAULT_CURRENCIES.join(',')).split(',').map((c) => c.trim().toUpperCase()).filter(Boolean);
/** Every scenario whose index is a multiple of this also goes through `stripe sync`. */
const STRIPE_EVERY = 4;

/** Replay a scenario on the real pipeline (library API, in process). */
async function runReal(db: Db, s: Scenario): Promise<void> {
  await applyCatalog(db, s.catalog, { now: EPOCH - 86_400_000, actor: ACTOR });
  for (const t of s.tenants) await createTenant(db, { id: t.id }, { now: EPOCH - 86_400_000, actor: ACTOR });
  let n = 0;
  for (const a of s.actions) {
    const o = { now: a.t, actor: ACTOR };
    if (a.kind === 'subscribe') await subscribe(db, { tenantId: a.tenant, planKey: a.plan, trialDays: a.trialDays }, o);
    else if (a.kind === 'quota') await setQuota(db, { tenantId: a.tenant, featureKey: a.feature, included: a.included, unitPrice: a.unitPrice }, o);
    else if (a.kind === 'change') await changePlan(db, { tenantId: a.tenant, planKey: a.plan, at: a.at }, o);
    else if (a.kind === 'discount') await addDiscount(db, { tenantId: a.tenant, ...a.discount, start: a.discount.start }, o);
    else if (a.kind === 'tax') await setTenantTax(db, a.tenant, a.rate ?? { none: true }, o);
    else if (a.kind === 'grant') {
      const g = a.grant;
      await grantCredit(db, { tenantId: a.tenant, amount: g.amount, currency: g.currency, priority: g.priority, effective: g.effective, expires: g.expires, recurring: g.recurring }, o);
    } else if (a.kind === 'unitGrant') {
      const g = a.grant;
      await addUnitGrant(db, { tenantId: a.tenant, featureKey: g.feature, quantity: g.quantity, priority: g.priority, effective: g.effective, expires: g.expires }, { ...o, id: a.id });
    } else if (a.kind === 'unitGrantVoid') await voidUnitGrant(db, a.tenant, a.id, o);
    else if (a.kind === 'creditNote') {
      const inv = (await listInvoices(db)).filter((i) => i.tenantId === a.tenant).sort((x, y) => x.number.localeCompare(y.number))[a.nth];
      if (!inv) continue;
      const creditable = toMinor(D(inv.total), inv.currency) - inv.creditNotes.reduce((sum, c) => sum + toMinor(D(c.amount), inv.currency), 0n);
      const amount = creditable > 0n ? (creditable * BigInt(a.pct)) / 100n : 0n;
      if (amount > 0n) await createCreditNote(db, { invoice: inv.number, amount: minorToMajor(amount, inv.currency), reason: 'scenario' }, o);
    } else if (a.kind === 'cancel') await cancelSubscription(db, { tenantId: a.tenant, at: a.at }, o);
    else if (a.kind === 'generate') {
      // The stages in `billing run` order: aggregate, overage, invoice.
      await runAggregate(db, { now: a.t });
      await runOverage(db, { now: a.t });
      await generateInvoices(db, { now: a.t, actor: ACTOR, finalize: true });
    } else if (a.kind === 'catalog') await applyCatalog(db, a.catalog, o);
    else {
      const results = await recordUsage(
        db,
        a.events.map((e) => ({ tenantId: e.tenant, featureKey: e.feature, quantity: e.quantity, occurredAt: e.occurredAt, eventId: `e${++n}`, userId: e.userId, metadata: e.metadata })),
        { now: a.t },
      );
      const refused = results.filter((x) => x.status !== 'inserted');
      if (refused.length > 0) throw new Error(`scenario usage refused: ${JSON.stringify(refused)}`);
    }
  }
}

function runReference(s: Scenario): ReferenceBilling {
  const ref = new ReferenceBilling(s.catalog);
  for (const a of s.actions) {
    if (a.kind === 'subscribe') ref.subscribe(a.t, a.tenant, a.plan, a.trialDays);
    else if (a.kind === 'quota') ref.quota(a.tenant, a.feature, { ...(a.included !== undefined ? { included: a.included } : {}), ...(a.unitPrice !== undefined ? { unitPrice: a.unitPrice } : {}) });
    else if (a.kind === 'change') ref.change(a.t, a.tenant, a.plan, a.at);
    else if (a.kind === 'discount') ref.discount(a.tenant, a.discount);
    else if (a.kind === 'tax') ref.tax(a.tenant, a.rate);
    else if (a.kind === 'grant') ref.grant(a.tenant, a.grant);
    else if (a.kind === 'unitGrant') ref.unitGrant(a.tenant, a.id, a.grant);
    else if (a.kind === 'unitGrantVoid') ref.voidUnitGrant(a.t, a.tenant, a.id);
    else if (a.kind === 'creditNote') ref.creditNote(a.t, a.tenant, a.nth, a.pct);
    else if (a.kind === 'cancel') ref.cancel(a.t, a.tenant, a.at);
    else if (a.kind === 'generate') ref.generate(a.t);
    else if (a.kind === 'catalog') ref.applyCatalog(a.catalog);
    else ref.ingest(a.events);
  }
  return ref;
}

/** rated_charges (the overage stage) against the reference, to the minor unit. */
async function chargeProblems(db: Db, s: Scenario, ref: ReferenceBilling): Promise<string[]> {
  const problems: string[] = [];
  for (const { id } of s.tenants) {
    // rated_charges keep the override of when a period was last rated: with an override changed
    // mid-life the reference (current override) would not say what they should hold.
    if (s.lateOverrides.includes(id)) continue;
    const want = ref.expectedCharges(id, s.end);
    const rows = await db.knex('rated_charges').where({ tenant_id: id }).select('feature_key', 'period_start', 'amount_minor');
    const got = new Map(rows.map((r) => [`${r.feature_key}|${Number(r.period_start)}`, BigInt(r.amount_minor)]));
    for (const [k, minor] of want) {
      if (got.get(k) !== minor) problems.push(`rated charge ${id} ${k.replace(/\|(\d+)$/, (_, t) => ` ${day(Number(t))}`)}: overage stage has ${got.get(k) ?? 'no row'}, reference ${minor} minor units`);
    }
    for (const [k, minor] of got) {
      if (!want.has(k) && minor !== 0n) problems.push(`rated charge ${id} ${k}: ${minor} minor units outside any subscription period`);
    }
  }
  return problems;
}

/**
 * `billing report` (through history: every period up to the scenario's end) against the
 * reference, to the minor unit. Reports rate with today's override, like the reference.
 */
async function reportProblems(db: Db, s: Scenario, ref: ReferenceBilling): Promise<string[]> {
  const problems: string[] = [];
  for (const { id } of s.tenants) {
    const want = ref.expectedCharges(id, s.end);
    const got = new Map<string, bigint>();
    for (const r of await buildHistory(db, { now: s.end, tenantId: id, limit: 10_000 })) {
      for (const f of r.features) {
        // A period without a subscription is priced nothing, in no currency (XXX).
        const amount = new Decimal(f.overageAmount);
        got.set(`${f.featureKey}|${Date.parse(r.period.start)}`, amount.isZero() ? 0n : toMinor(amount, r.currency));
      }
    }
    for (const [k, minor] of want) {
      if (got.get(k) !== minor) problems.push(`report ${id} ${k}: report has ${got.get(k) ?? 'no line'}, reference ${minor} minor units`);
    }
    for (const [k, minor] of got) {
      if (!want.has(k) && minor !== 0n) problems.push(`report ${id} ${k}: ${minor} minor units outside any subscription period`);
    }
  }
  return problems;
}

/** `billing verify` finds nothing wrong with what the scenario billed. */
async function verifyProblems(db: Db, ns: string): Promise<string[]> {
  const report = await verifyInvoices(db);
  return report.violations.filter((v) => v.tenantId === undefined || v.tenantId.startsWith(ns)).map((v) => `verify: ${JSON.stringify(v)}`);
}

const day = (t: number) => new Date(t).toISOString().replace(':00.000Z', 'Z');
const qty = (q: string | Decimal | null) => (q === null ? '-' : new Decimal(q.toString()).toFixed());
// The rounding line's quantity is presentation; its amount is what counts.
const lineQty = (kind: string, q: string | Decimal | null) => (kind === 'rounding' ? '*' : qty(q));

/** A line as one comparable string: kind, what, period billed, quantity, amount in major units. */
function refLine(l: RefLine, currency: string): string {
  return `${l.kind} ${l.feature ?? l.plan ?? '-'} ${day(l.periodStart)} q=${lineQty(l.kind, l.quantity)} ${minorToMajor(l.amountMinor, currency)}`;
}

function realLine(l: Invoice['lines'][number]): string {
  return `${l.kind} ${l.featureKey ?? (l.planKey ? `${l.planKey}@${l.planVersion}` : '-')} ${day(l.period.start)} q=${lineQty(l.kind, l.quantity)} ${l.amount}`;
}

function refInvoice(i: RefInvoice): string[] {
  return [`${i.tenant} ${day(i.start)}..${day(i.end)} ${i.currency} due ${minorToMajor(i.totalMinor - i.noteReductionMinor, i.currency)}`, ...i.lines.map((l) => `  ${refLine(l, i.currency)}`).sort()];
}

function realInvoice(i: Invoice): string[] {
  // A base fee line's period is its segment's share; the reference names the invoice period.
  const lines = i.lines.map((l) => `  ${realLine(l.kind === 'base_fee' ? { ...l, period: i.period } : l)}`);
  return [`${i.tenantId} ${day(i.period.start)}..${day(i.period.end)} ${i.currency} due ${i.amountDue}`, ...lines.sort()];
}

/** Every line's amount_minor also adds up to the total's minor units (what Stripe is sent), which is amountDue. */
function minorProblems(i: Invoice): string[] {
  const sum = i.lines.reduce((s, l) => s + BigInt(l.amountMinor), 0n);
  const off = i.lines.filter((l) => l.kind === 'discount').reduce((s, l) => s - BigInt(l.amountMinor), 0n);
  const out = sum === BigInt(i.totalMinor) ? [] : [`${i.number}: lines add up to ${sum} minor units, total_minor is ${i.totalMinor}`];
  const notes = i.creditNotes.reduce((s, c) => s + toMinor(D(c.dueReduction), i.currency), 0n);
  if (minorToMajor(sum - notes, i.currency) !== i.amountDue) out.push(`${i.number}: amountDue ${i.amountDue}, the lines less credit notes add up to ${minorToMajor(sum - notes, i.currency)}`);
  if (minorToMajor(off, i.currency) !== i.discountTotal) out.push(`${i.number}: discountTotal ${i.discountTotal}, the discount lines take off ${minorToMajor(off, i.currency)}`);
  return out;
}

/** Stripe's invoice items against the reference's Stripe-unit conversion of each line. */
async function stripeProblems(db: Db, s: Scenario, invoices: Invoice[]): Promise<string[]> {
  const fake = await FakeStripe.start({ now: s.end + 3_600_000 });
  try {
    const report = await stripeSync(db, {
      now: s.end + 3_600_000,
      actor: ACTOR,
      stripe: { secretKey: 'sk_test_fake', apiBase: fake.url, webhookSecret: null, timeoutMs: 5000, concurrency: 4, maxRequestsPerSecond: 0 },
      random: () => 0.5,
      sleep: async () => {},
    });
    const problems = [...report.errors.map((e) => `stripe sync error: ${JSON.stringify(e)}`)];
    const sent = new Map<string, { amount: string; currency: string }>();
    for (const q of fake.requests) {
      if (q.method !== 'POST' || q.path !== '/v1/invoiceitems' || q.status !== 200) continue;
      const md = q.params.metadata as Record<string, string>;
      sent.set(`${md.billing_invoice_id}#${md.billing_line_no}`, { amount: String(q.params.amount), currency: String(q.params.currency) });
    }
    for (const inv of invoices) {
      for (const l of inv.lines) {
        const got = sent.get(`${inv.id}#${l.lineNo}`);
        const want = stripeUnits(l.amount, inv.currency).toString();
        if (!got || got.amount !== want || got.currency !== inv.currency.toLowerCase()) {
          problems.push(`${inv.number} line ${l.lineNo} (${l.kind} ${l.amount} ${inv.currency}): Stripe got ${got ? `${got.amount} ${got.currency}` : 'nothing'}, expected ${want}`);
        }
      }
    }
    return problems;
  } finally {
    await fake.close();
  }
}

describeEachDb('reference rater vs the pipeline', (t) => {
  it(`${SCENARIOS} random scenarios bill every line and total exactly as the reference`, async () => {
    console.log(`reference rater: ${SCENARIOS} scenarios, seed ${SEED} (currencies ${CURRENCIES.join(',')}; replay one with RATER_SEED=<scenario seed> RATER_SCENARIOS=1)`);
    const { db, dialect } = t();
    const kinds = new Map<string, number>();
    for (let i = 0; i < SCENARIOS; i++) {
      const seed = SEED + i;
      // Each scenario under its own keys, so they share one database.
      const ns = `s${i}-`;
      const s = generateScenario(seed, CURRENCIES, ns);

      const problems: string[] = [];
      let real: Invoice[] = [];
      try {
        await runReal(db, s);
        real = (await listInvoices(db)).filter((inv) => inv.tenantId.startsWith(ns));
      } catch (e) {
        problems.push(`the pipeline failed: ${(e as Error).stack}`);
      }
      const ref = runReference(s);
      const draws = ref.unitGrantDraws();
      if (draws > 0) kinds.set('unit grant draw', (kinds.get('unit grant draw') ?? 0) + draws);
      if (ref.windowedLines > 0) kinds.set('reset windows', (kinds.get('reset windows') ?? 0) + ref.windowedLines);
      if (ref.dimensionLines > 0) kinds.set('dimension value', (kinds.get('dimension value') ?? 0) + ref.dimensionLines);
      if (ref.carriedPeriods > 0) kinds.set('rollover carried', (kinds.get('rollover carried') ?? 0) + ref.carriedPeriods);
      const notes = s.actions.filter((x) => x.kind === 'creditNote').length;
      if (notes > 0) kinds.set('credit note (asked)', (kinds.get('credit note (asked)') ?? 0) + notes);
      const refInvoices = [...ref.invoices.values()].flat();
      for (const l of refInvoices.flatMap((x) => x.lines)) {
        const k = l.kind === 'base_fee' && !l.plan!.endsWith('@1') ? 'base_fee (newer version)' : l.kind;
        kinds.set(k, (kinds.get(k) ?? 0) + 1);
      }
      const expected = refInvoices.sort((a, b) => a.tenant.localeCompare(b.tenant) || a.start - b.start).map(refInvoice);
      const got = real.sort((a, b) => a.tenantId.localeCompare(b.tenantId) || a.period.start - b.period.start).map(realInvoice);
      if (problems.length === 0 && JSON.stringify(got) !== JSON.stringify(expected)) problems.push(diff(expected, got));
      for (const inv of real) problems.push(...minorProblems(inv));
      if (problems.length === 0) problems.push(...(await chargeProblems(db, s, ref)));
      if (problems.length === 0) problems.push(...(await reportProblems(db, s, ref)));
      if (problems.length === 0) problems.push(...(await verifyProblems(db, ns)));
      if (problems.length === 0 && i % STRIPE_EVERY === 0) problems.push(...(await stripeProblems(db, s, real)));
      if (problems.length > 0) {
        const report = [
          `reference rater [${dialect}]: scenario seed ${seed} (run seed ${SEED}, scenario ${i}) disagrees; replay with RATER_SEED=${seed} RATER_SCENARIOS=1`,
          ...problems,
          'scenario:',
          describeScenario(s),
        ].join('\n');
        expect.fail(report);
      }
    }
    console.log(`reference rater [${dialect}]: all agree; lines by kind: ${[...kinds].sort().map(([k, n]) => `${k} ${n}`).join(', ')}`);
  }, 600_000);
});

/** Invoices side by side, per tenant and period: "-" reference only, "+" pipeline only. */
function diff(expected: string[][], got: string[][]): string {
  const key = (inv: string[]) => inv[0].split(' due ')[0];
  const byKey = (xs: string[][]) => new Map(xs.map((x) => [key(x), x]));
  const e = byKey(expected);
  const g = byKey(got);
  const out = ['invoices differ (- reference, + pipeline):'];
  for (const k of [...new Set([...e.keys(), ...g.keys()])].sort()) {
    const a = e.get(k) ?? [];
    const b = g.get(k) ?? [];
    if (JSON.stringify(a) === JSON.stringify(b)) continue;
    out.push(`  ${k}`);
    for (const l of a) if (!b.includes(l)) out.push(`- ${l}`);
    for (const l of b) if (!a.includes(l)) out.push(`+ ${l}`);
  }
  return out.join('\n');
}
