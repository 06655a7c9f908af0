import { describe, expect, it } from 'vitest';
import { priceBillable, rateUsage, type PriceLine } from '../src/rate/rate.js';
import { roundMoney } from '../src/domain/money.js';
import { dec, decStr } from '../src/domain/decimal.js';
import type { PlanFeature, Pricing, Tier } from '../src/domain/catalog.js';

const tier = (upTo: string | null, unitPrice: string, flatPrice: string | null = null): Tier => ({ upTo, unitPrice, flatPrice });
const TIERS = [tier('100', '0.02'), tier('1000', '0.01', '1.00'), tier(null, '0.005', '2.00')];

function terms(over: Partial<PlanFeature> = {}): PlanFeature {
  return { featureKey: 'OCR_SCAN', enabled: true, included: '50', hardStop: false, limit: null, overage: null, ...over };
}

/** Every line obeys amount = quantity × unitPrice + flatPrice, and the lines add up to the total. */
function expectConsistent(amount: string, lines: PriceLine[]): void {
  for (const l of lines) {
    const expected = dec(l.quantity).times(l.unitPrice ?? 0).plus(l.flatPrice ?? 0);
    expect(decStr(expected), `line ${l.ref}`).toBe(l.amount);
  }
  expect(decStr(lines.reduce((s, l) => s.plus(l.amount), dec(0)))).toBe(amount);
}

type Case = { name: string; billable: string; amount: string; refs: string[]; quantities?: string[] };

function runCases(pricing: Pricing, cases: Case[]): void {
  it.each(cases)('$name: $billable → $amount', ({ billable, amount, refs, quantities }) => {
    const r = priceBillable(pricing, billable);
    expect(r.amount).toBe(amount);
    expect(r.lines.map((l) => l.ref)).toEqual(refs);
    if (quantities) expect(r.lines.map((l) => l.quantity)).toEqual(quantities);
    expectConsistent(r.amount, r.lines);
  });
}

describe('per_unit', () => {
  runCases({ model: 'per_unit', unitPrice: '0.05' }, [
    { name: 'no usage, no charge', billable: '0', amount: '0', refs: [] },
    { name: 'seed example', billable: '25', amount: '1.25', refs: ['unit'], quantities: ['25'] },
    { name: 'decimal quantity', billable: '2.5', amount: '0.125', refs: ['unit'] },
    { name: 'micro quantity', billable: '0.000001', amount: '0.00000005', refs: ['unit'] },
  ]);
  describe('12-decimal unit price', () => {
    runCases({ model: 'per_unit', unitPrice: '5.123456789012' }, [
      { name: 'exact product', billable: '7', amount: '35.864197523084', refs: ['unit'] },
      { name: 'decimal × decimal', billable: '0.5', amount: '2.561728394506', refs: ['unit'] },
    ]);
  });
  describe('sub-cent unit price', () => {
    runCases({ model: 'per_unit', unitPrice: '0.001' }, [{ name: 'thousandths', billable: '3', amount: '0.003', refs: ['unit'] }]);
  });
});

describe('package (size 100, 5.00 each)', () => {
  runCases({ model: 'package', size: '100', packagePrice: '5.00' }, [
    { name: 'no usage', billable: '0', amount: '0', refs: [] },
    { name: 'one unit buys a package', billable: '1', amount: '5', refs: ['package'], quantities: ['1'] },
    { name: 'exact multiple', billable: '100', amount: '5', refs: ['package'], quantities: ['1'] },
    { name: 'just above', billable: '101', amount: '10', refs: ['package'], quantities: ['2'] },
    { name: 'exact multiple of two', billable: '200', amount: '10', refs: ['package'], quantities: ['2'] },
    { name: 'fraction just above', billable: '200.000001', amount: '15', refs: ['package'], quantities: ['3'] },
  ]);
  describe('decimal size 2.5', () => {
    runCases({ model: 'package', size: '2.5', packagePrice: '1.10' }, [
      { name: 'exact', billable: '5', amount: '2.2', refs: ['package'], quantities: ['2'] },
      { name: 'above', billable: '5.1', amount: '3.3', refs: ['package'], quantities: ['3'] },
    ]);
  });
});

// DESIGN.md §14: 1,000 at 1 % + 200; 10,000 at 2 % + 300; above at 3 % + 400.
describe('graduated_percentage (≤1000 @1% +200; ≤10000 @2% +300; above @3% +400)', () => {
  const pct = { model: 'graduated_percentage' as const, tiers: [
    { upTo: '1000', rate: '1', flatPrice: '200' }, { upTo: '10000', rate: '2', flatPrice: '300' }, { upTo: null, rate: '3', flatPrice: '400' },
  ] };
  runCases(pct, [
    { name: 'nothing billable', billable: '0', amount: '0', refs: [] },
    { name: 'inside tier 1', billable: '500', amount: '205', refs: ['tier-1'], quantities: ['500'] },
    { name: 'the spec example: 210 + 81 + 300', billable: '5050', amount: '591', refs: ['tier-1', 'tier-2'], quantities: ['1000', '4050'] },
    { name: 'into the open tier', billable: '10000.5', amount: '1090.015', refs: ['tier-1', 'tier-2', 'tier-3'], quantities: ['1000', '9000', '0.5'] },
  ]);
});

// DESIGN.md §14: per event max(min, min(max, amount × rate / 100 + fee)); lines break it down.
describe('percentage (priced from the events in time order)', () => {
  const pct = (p: Partial<Extract<Pricing, { model: 'percentage' }>>): PlanFeature =>
    terms({ included: '0', overage: { model: 'percentage', rate: '1.3', fixedFeePerEvent: '2.00', ...p } });
  it.each([
    { name: 'the reference: 50, 100, 250, 400', t: pct({}), events: ['50', '100', '250', '400'], amount: '18.4', refs: ['percentage', 'event-fee'], quantities: ['800', '4'] },
    { name: 'freeEvents 3: whole events free', t: pct({ freeEvents: 3 }), events: ['50', '100', '250', '400'], amount: '7.2', refs: ['free', 'percentage', 'event-fee'], quantities: ['3', '400', '1'] },
    { name: 'min 1.75 / max 12 at 2.99 %', t: pct({ rate: '2.99', fixedFeePerEvent: undefined, perEventMin: '1.75', perEventMax: '12' }), events: ['10', '80', '10000'], amount: '16.142', refs: ['percentage', 'event-minimum', 'event-maximum'], quantities: ['10090', '1', '1'] },
    { name: 'freeEvents 0 frees nothing', t: pct({ freeEvents: 0 }), events: ['50'], amount: '2.65', refs: ['percentage', 'event-fee'], quantities: ['50', '1'] },
    { name: 'everything free, then the pricing minimum tops up', t: pct({ freeAmount: '1000', minimum: '1.00' }), events: ['50'], amount: '1', refs: ['free', 'minimum'], quantities: ['1', '1'] },
    { name: 'a quota override of included does not apply', t: { ...pct({}), included: '500' }, events: ['50', '100'], amount: '5.95', refs: ['percentage', 'event-fee'], quantities: ['150', '2'] },
  ])('$name → $amount', ({ t, events, amount, refs, quantities }) => {
    const used = events.reduce((s, e) => s.plus(e), dec(0)).toFixed();
    const r = rateUsage(JSON.parse(JSON.stringify(t)) as PlanFeature, used, 'USD', events);
    expect([r.amountPrecise, r.billable, r.included]).toEqual([amount, used, '0']);
    expect(r.lines.map((l) => l.ref)).toEqual(refs);
    expect(r.lines.map((l) => l.quantity)).toEqual(quantities);
    expectConsistent(r.amountPrecise, r.lines);
  });
  it('refuses to price a percentage quantity without its events', () => {
    expect(() => rateUsage(pct({}), '10', 'USD')).toThrow(/needs the window's event amounts/);
    expect(rateUsage(pct({}), '0', 'USD').amount).toBe('0.00');
  });
});

describe('graduated (≤100 @0.02; ≤1000 @0.01 +1.00; above @0.005 +2.00)', () => {
  runCases({ model: 'graduated', tiers: TIERS }, [
    { name: 'no usage, no flat price', billable: '0', amount: '0', refs: [] },
    { name: 'inside tier 1', billable: '50', amount: '1', refs: ['tier-1'], quantities: ['50'] },
    { name: 'exactly at upTo stays in tier 1', billable: '100', amount: '2', refs: ['tier-1'], quantities: ['100'] },
    { name: 'just above reaches tier 2 and its flat price', billable: '100.5', amount: '3.005', refs: ['tier-1', 'tier-2'], quantities: ['100', '0.5'] },
    { name: 'exactly at tier 2 upTo', billable: '1000', amount: '12', refs: ['tier-1', 'tier-2'], quantities: ['100', '900'] },
    { name: 'one unit into the last tier', billable: '1001', amount: '14.005', refs: ['tier-1', 'tier-2', 'tier-3'], quantities: ['100', '900', '1'] },
  ]);
  describe('flat price on the first tier', () => {
    runCases({ model: 'graduated', tiers: [tier('10', '1', '5'), tier(null, '0.5')] }, [
      { name: 'not reached without usage', billable: '0', amount: '0', refs: [] },
      { name: 'reached by the first unit', billable: '1', amount: '6', refs: ['tier-1'] },
      { name: 'second tier without flat', billable: '12', amount: '16', refs: ['tier-1', 'tier-2'] },
    ]);
  });
});

describe('volume (same tiers: all units at the tier the total falls in)', () => {
  runCases({ model: 'volume', tiers: TIERS }, [
    { name: 'no usage', billable: '0', amount: '0', refs: [] },
    { name: 'decimal in tier 1', billable: '0.5', amount: '0.01', refs: ['tier-1'] },
    { name: 'exactly at upTo stays in tier 1', billable: '100', amount: '2', refs: ['tier-1'], quantities: ['100'] },
    { name: 'just above: all units at tier 2 plus flat', billable: '101', amount: '2.01', refs: ['tier-2'], quantities: ['101'] },
    { name: 'exactly at tier 2 upTo', billable: '1000', amount: '11', refs: ['tier-2'] },
    { name: 'a micro-unit above', billable: '1000.000001', amount: '7.000000005', refs: ['tier-3'] },
  ]);
});

describe('minimum and maximum', () => {
  describe('per_unit 0.10 with minimum 5 and maximum 10', () => {
    runCases({ model: 'per_unit', unitPrice: '0.10', minimum: '5', maximum: '10' }, [
      { name: 'minimum applies with zero usage', billable: '0', amount: '5', refs: ['minimum'] },
      { name: 'minimum tops up', billable: '20', amount: '5', refs: ['unit', 'minimum'] },
      { name: 'exactly the minimum: no top-up line', billable: '50', amount: '5', refs: ['unit'] },
      { name: 'between', billable: '60', amount: '6', refs: ['unit'] },
      { name: 'exactly the maximum: no cap line', billable: '100', amount: '10', refs: ['unit'] },
      { name: 'maximum caps with a negative line', billable: '150', amount: '10', refs: ['unit', 'maximum'] },
    ]);
  });
  it('represents the cap as a negative adjustment and the top-up as a positive one', () => {
    const capped = priceBillable({ model: 'graduated', tiers: TIERS, maximum: '3' }, '1001');
    expect(capped.lines.at(-1)).toMatchObject({ ref: 'maximum', quantity: '1', unitPrice: null, flatPrice: '-11.005', amount: '-11.005' });
    const topped = priceBillable({ model: 'package', size: '10', packagePrice: '2', minimum: '7.5' }, '15');
    expect(topped.lines.at(-1)).toMatchObject({ ref: 'minimum', amount: '3.5' });
    expect(topped.amount).toBe('7.5');
  });
});

describe('rateUsage', () => {
  it('seed example: 50 included OCR scans, 0.05 per scan, 75 scans → billable 25, 1.25', () => {
    const r = rateUsage(terms({ overage: { model: 'per_unit', unitPrice: '0.05' } }), '75', 'USD');
    expect(r).toMatchObject({ used: '75', included: '50', billable: '25', amountPrecise: '1.25', amount: '1.25', amountMinor: '125', isExceeded: true, hardStop: false });
    expect(r.lines.map((l) => l.ref)).toEqual(['unit']);
  });

  it('bills nothing within the allowance, and exactly at it', () => {
    const t = terms({ overage: { model: 'per_unit', unitPrice: '0.05' } });
    expect(rateUsage(t, '10', 'USD')).toMatchObject({ billable: '0', amount: '0.00', amountMinor: '0', isExceeded: false, lines: [] });
    expect(rateUsage(t, '50', 'USD')).toMatchObject({ billable: '0', isExceeded: false });
    expect(rateUsage(t, '50.000001', 'USD')).toMatchObject({ billable: '0.000001', isExceeded: true, amount: '0.00' });
  });

  it('is exact with decimal quantities (0.1 + 0.2 is 0.3)', () => {
    const r = rateUsage(terms({ included: '0.1', overage: { model: 'per_unit', unitPrice: '10' } }), '0.3', 'USD');
    expect(r.billable).toBe('0.2');
    expect(r.amount).toBe('2.00');
  });

  it('unlimited included: nothing billable, never exceeded', () => {
    const r = rateUsage(terms({ included: null, overage: { model: 'per_unit', unitPrice: '1' } }), '1000000', 'USD');
    expect(r).toMatchObject({ included: null, billable: '0', amount: '0.00', isExceeded: false });
  });

  it('no overage pricing: billable reported, amount 0, no lines; minimum needs pricing', () => {
    const r = rateUsage(terms({ hardStop: true }), '75', 'USD');
    expect(r).toMatchObject({ billable: '25', amountPrecise: '0', amount: '0.00', amountMinor: '0', isExceeded: true, hardStop: true, lines: [] });
  });

  it('disabled feature: never charged', () => {
    const r = rateUsage(terms({ enabled: false, overage: { model: 'per_unit', unitPrice: '1', minimum: '5' } }), '75', 'USD');
    expect(r).toMatchObject({ billable: '25', amount: '0.00', lines: [] });
  });

  it('minimum applies with zero usage through rateUsage', () => {
    const r = rateUsage(terms({ overage: { model: 'per_unit', unitPrice: '0.05', minimum: '9.99' } }), '0', 'USD');
    expect(r).toMatchObject({ billable: '0', amount: '9.99', amountMinor: '999', isExceeded: false });
    expect(r.lines.map((l) => l.ref)).toEqual(['minimum']);
  });

  it('isExceeded with unlimited included under a hard-stop limit compares with the limit', () => {
    const t = terms({ included: null, hardStop: true, limit: '100' });
    expect(rateUsage(t, '100', 'USD').isExceeded).toBe(false);
    expect(rateUsage(t, '100.5', 'USD').isExceeded).toBe(true);
    expect(rateUsage(terms({ included: null, limit: '100' }), '500', 'USD').isExceeded).toBe(false);
  });

  it('snapshots the terms it rated with', () => {
    const t = terms({ overage: { model: 'volume', tiers: TIERS } });
    expect(rateUsage(t, '60', 'USD').priceSnapshot).toEqual(t);
  });

  it.each([
    // [unitPrice, billable, currency, precise, amount, minor]
    ['0.005', '1', 'USD', '0.005', '0.01', '1'],
    ['0.004999', '1', 'USD', '0.004999', '0.00', '0'],
    ['0.015', '1', 'USD', '0.015', '0.02', '2'],
    ['0.5', '3', 'JPY', '1.5', '2', '2'],
    ['0.49', '1', 'JPY', '0.49', '0', '0'],
    ['1.2345', '1', 'KWD', '1.2345', '1.235', '1235'],
    ['1.2344', '1', 'KWD', '1.2344', '1.234', '1234'],
    ['5.123456789012', '7', 'USD', '35.864197523084', '35.86', '3586'],
  ])('rounds once, half away from zero: %s × %s %s', (unitPrice, billable, currency, precise, amount, minor) => {
    const r = rateUsage(terms({ included: '0', overage: { model: 'per_unit', unitPrice } }), billable, currency);
    expect(r).toMatchObject({ amountPrecise: precise, amount, amountMinor: minor });
  });

  it('rounds once per feature, not per tier line', () => {
    // tier lines 0.005 + 0.005 would round to 0.01 + 0.01; the feature total 0.01 rounds once.
    const r = rateUsage(terms({ included: '0', overage: { model: 'graduated', tiers: [tier('1', '0.005'), tier(null, '0.005')] } }), '2', 'USD');
    expect(r.lines.map((l) => l.amount)).toEqual(['0.005', '0.005']);
    expect(r.amount).toBe('0.01');
  });
});

describe('roundMoney with negative values (half away from zero)', () => {
  it.each([
    ['-0.005', 'USD', '-0.01', '-1'],
    ['-0.004', 'USD', '0.00', '0'],
    ['-2.5', 'JPY', '-3', '-3'],
    ['-1.2345', 'KWD', '-1.235', '-1235'],
  ])('%s %s → %s', (v, currency, amount, minor) => {
    const r = roundMoney(v, currency);
    expect(r.amount).toBe(amount);
    expect(r.minor).toBe(minor);
  });
});

describe('invalid pricing is refused, not priced silently wrong', () => {
  it.each<[string, Pricing]>([
    ['last tier bounded', { model: 'graduated', tiers: [tier('10', '1')] }],
    ['unbounded tier before the last', { model: 'volume', tiers: [tier(null, '1'), tier(null, '2')] }],
    ['bounds not increasing', { model: 'graduated', tiers: [tier('10', '1'), tier('10', '2'), tier(null, '3')] }],
    ['no tiers', { model: 'volume', tiers: [] }],
    ['package size zero', { model: 'package', size: '0', packagePrice: '1' }],
    ['float price', { model: 'per_unit', unitPrice: 0.05 as unknown as string }],
  ])('%s', (_name, pricing) => {
    expect(() => priceBillable(pricing, '5')).toThrow(expect.objectContaining({ code: 'catalog_invalid' }));
  });
});
