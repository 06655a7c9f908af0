import { describe, expect, it } from 'vitest';
import type { Feature, PlanFeature, PlanVersion } from '../src/domain/catalog.js';
import type { Segment, Subscription } from '../src/subscriptions/repository.js';
import { baseFeeLines, prorate, versionKey } from '../src/rate/base-fee.js';
import { usageLine } from '../src/rate/usage-lines.js';
import { renderInvoice } from '../src/invoice/export.js';
import type { Invoice } from '../src/invoice/types.js';

const T = (s: string) => Date.parse(s);
const APRIL = { start: T('2026-04-01T00:00:00Z'), end: T('2026-05-01T00:00:00Z') };

function plan(key: string, version: number, price: string, interval: 'month' | 'year' = 'month'): PlanVersion {
  return { planKey: key, version, name: key, currency: 'USD', price, interval, trialDays: 0, features: {} };
}

function sub(over: Partial<Subscription> = {}): Subscription {
  return {
    tenantId: 'acme', id: 'sub_1', status: 'active', anchorAt: APRIL.start, interval: 'month', currency: 'USD',
    startedAt: APRIL.start, trialEndsAt: null, cancelAt: null, canceledAt: null, ...over,
  };
}

function seg(seq: number, planKey: string, version: number, startsAt: number, endsAt: number | null): Segment {
  return { tenantId: 'acme', subscriptionId: 'sub_1', seq, planKey, planVersion: version, startsAt, endsAt };
}

const versions = (...pvs: PlanVersion[]) => new Map(pvs.map((p) => [versionKey(p.planKey, p.version), p]));

describe('base fee proration (by seconds, rounded once per line)', () => {
  it('bills an upgrade exactly half-way through a 30-day month as 5.00 + 10.00', () => {
    const mid = T('2026-04-16T00:00:00Z');
    const lines = baseFeeLines({
      sub: sub(),
      segments: [seg(1, 'basic', 1, APRIL.start, mid), seg(2, 'pro', 1, mid, null)],
      versions: versions(plan('basic', 1, '10.00'), plan('pro', 1, '20.00')),
      period: APRIL,
      nominal: APRIL,
    });
    expect(lines.map((l) => [l.planKey, l.amount, l.quantity])).toEqual([
      ['basic', '5.00', '0.5'],
      ['pro', '10.00', '0.5'],
    ]);
    expect(lines[0].details).toMatchObject({ billedSeconds: '1296000', periodSeconds: '2592000' });
  });

  it('keeps the exact decimal and rounds half away from zero once', () => {
    const third = prorate('29.00', 10 * 86400_000, 30 * 86400_000, 'USD');
    expect(third).toMatchObject({ amount: '9.67', minor: '967' });
    expect(third.precise).toMatch(/^9\.6{50,}7$/); // 60 significant digits, not a float
    expect(prorate('0.05', 1, 2, 'USD')).toEqual({ precise: '0.025', amount: '0.03', minor: '3' });
    expect(prorate('1000', 1, 3, 'JPY')).toMatchObject({ amount: '333', minor: '333' });
  });

  it('charges nothing for trial time and the rest of the period pro rata', () => {
    const trialEnd = T('2026-04-11T00:00:00Z');
    const lines = baseFeeLines({
      sub: sub({ trialEndsAt: trialEnd }),
      segments: [seg(1, 'basic', 1, APRIL.start, null)],
      versions: versions(plan('basic', 1, '30.00')),
      period: APRIL,
      nominal: APRIL,
    });
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ amount: '20.00', period: { start: trialEnd, end: APRIL.end } });
    const inTrial = baseFeeLines({
      sub: sub({ trialEndsAt: APRIL.end }),
      segments: [seg(1, 'basic', 1, APRIL.start, null)],
      versions: versions(plan('basic', 1, '30.00')),
      period: APRIL,
      nominal: APRIL,
    });
    expect(inTrial).toEqual([]);
  });

  it('bills a canceled final period up to cancel_at', () => {
    const cancelAt = T('2026-04-07T12:00:00Z'); // 6.5 days of 30
    const lines = baseFeeLines({
      sub: sub({ cancelAt }),
      segments: [seg(1, 'basic', 1, APRIL.start, cancelAt)],
      versions: versions(plan('basic', 1, '60.00')),
      period: { start: APRIL.start, end: cancelAt },
      nominal: APRIL,
    });
    expect(lines.map((l) => l.amount)).toEqual(['13.00']);
  });
});

const ocr: Feature = { key: 'OCR_SCAN', name: 'OCR Scans', unit: 'scan', type: 'metered', aggregation: 'sum', uniqueBy: null, stripeMeter: null };
const perUnit: PlanFeature = { featureKey: 'OCR_SCAN', enabled: true, included: '50', hardStop: false, limit: null, overage: { model: 'per_unit', unitPrice: '0.05' } };

describe('usage lines bill due now minus billed before', () => {
  const base = { feature: ocr, terms: perUnit, currency: 'USD', period: APRIL, planKey: 'starter', planVersion: 1 } as const;

  it('rates the period on first billing', () => {
    const l = usageLine({ ...base, context: 'current', usedTotal: '80', billed: null })!;
    expect(l).toMatchObject({ kind: 'overage', quantity: '30', unitPrice: '0.05', amount: '1.50', amountMinor: '150', amountPrecise: '1.5' });
  });

  it('omits an unused feature without a minimum, and bills a minimum with no usage', () => {
    expect(usageLine({ ...base, context: 'current', usedTotal: '0', billed: null })).toBeNull();
    const withMin: PlanFeature = { ...perUnit, overage: { model: 'per_unit', unitPrice: '0.05', minimum: '5.00' } };
    expect(usageLine({ ...base, terms: withMin, context: 'current', usedTotal: '0', billed: null })).toMatchObject({ kind: 'minimum', amount: '5.00' });
  });

  it('bills late usage as the difference and turns a decrease into a credit with a reason', () => {
    const billed = { amount: '1.50', usedTotal: '80', snapshot: perUnit };
    const late = usageLine({ ...base, context: 'late', usedTotal: '100.5', billed })!;
    expect(late).toMatchObject({ kind: 'late_usage', quantity: '20.5', amount: '1.03' }); // 2.525 → 2.53 due, 1.50 billed
    expect(late.description).toMatch(/^Late usage for 2026-04-01 to 2026-05-01: OCR Scans, \+20.5 \(now 100.5\)$/);
    const credit = usageLine({ ...base, context: 'late', usedTotal: '60', billed })!;
    expect(credit).toMatchObject({ kind: 'credit', amount: '-1.00', amountMinor: '-100', quantity: '-20' });
    expect((credit.details as { reason: string }).reason).toMatch(/revised from 80 to 60/);
    expect(usageLine({ ...base, context: 'late', usedTotal: '80', billed })).toBeNull();
  });
});

describe('export', () => {
  const inv: Invoice = {
    id: 'in_1', number: 'INV-000001', tenantId: '<script>alert(1)</script>', subscriptionId: 'sub_"x"', period: APRIL,
    status: 'open', currency: 'USD', subtotal: '1.50', discounts: [], discountTotal: '0.00', taxes: [], taxTotal: '0.00', total: '1.50', totalMinor: '150', creditsApplied: '0.00', creditNotes: [], amountDue: '1.50', issuedAt: APRIL.end, dueAt: APRIL.end,
    finalizedAt: APRIL.end, voidedAt: null, voidReason: null, paidAt: null, paymentRef: null, uncollectibleAt: null,
    supersedes: null, billingReason: 'period', createdAt: APRIL.end,
    lines: [{
      lineNo: 1, kind: 'overage', featureKey: 'OCR_SCAN', description: '=HYPERLINK("http://evil") & <b>', quantity: '30',
      unitPrice: '0.05', amountPrecise: '1.5', amount: '1.50', amountMinor: '150', period: APRIL, planKey: 'p', planVersion: 1,
      priceSnapshot: null, details: null,
    }],
  };

  it('escapes every value in HTML and loads nothing external', () => {
    const html = renderInvoice(inv, 'html');
    expect(html).not.toContain('<script>');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('=HYPERLINK(&quot;http://evil&quot;) &amp; &lt;b&gt;');
    expect(html).not.toMatch(/<(script|link|img|iframe)\b/);
    expect(html).not.toMatch(/https?:\/\/(?!evil)/);
  });

  it('makes CSV cells formula-safe', () => {
    const csv = renderInvoice(inv, 'csv');
    expect(csv).toContain(`"'=HYPERLINK(""http://evil"") & <b>"`);
    expect(csv.trim().split('\n')).toHaveLength(3);
  });
});
