import { describe, expect, it } from 'vitest';
import {
  addMonthsClamped,
  calendarMonth,
  nthPeriod,
  periodContaining,
  periodIndex,
  periodsBetween,
  parseInstant,
  toIso,
} from '../src/domain/period.js';
import { billingPeriodAt } from '../src/subscriptions/timeline.js';
import type { Subscription } from '../src/subscriptions/repository.js';

const t = (iso: string) => Date.parse(iso);
const starts = (anchor: number, interval: 'month' | 'year', n: number) =>
  Array.from({ length: n }, (_, k) => toIso(nthPeriod(anchor, interval, k).start));

describe('anniversary periods (DESIGN.md §5)', () => {
  it('keeps a 31 Jan anchor, clamped to each month end, never drifting', () => {
    const anchor = t('2026-01-31T00:00:00Z');
    expect(starts(anchor, 'month', 5)).toEqual([
      '2026-01-31T00:00:00.000Z',
      '2026-02-28T00:00:00.000Z',
      '2026-03-31T00:00:00.000Z',
      '2026-04-30T00:00:00.000Z',
      '2026-05-31T00:00:00.000Z',
    ]);
  });

  it('clamps to 29 Feb in a leap year', () => {
    const anchor = t('2028-01-31T00:00:00Z');
    expect(starts(anchor, 'month', 3)).toEqual(['2028-01-31T00:00:00.000Z', '2028-02-29T00:00:00.000Z', '2028-03-31T00:00:00.000Z']);
  });

  it('keeps a 30 Jan anchor: 28 Feb, then 30 Mar', () => {
    const anchor = t('2026-01-30T00:00:00Z');
    expect(starts(anchor, 'month', 3)).toEqual(['2026-01-30T00:00:00.000Z', '2026-02-28T00:00:00.000Z', '2026-03-30T00:00:00.000Z']);
  });

  it('keeps a leap-day yearly anchor: 28 Feb in common years, 29 Feb again four years on', () => {
    const anchor = t('2028-02-29T00:00:00Z');
    expect(starts(anchor, 'year', 5)).toEqual([
      '2028-02-29T00:00:00.000Z',
      '2029-02-28T00:00:00.000Z',
      '2030-02-28T00:00:00.000Z',
      '2031-02-28T00:00:00.000Z',
      '2032-02-29T00:00:00.000Z',
    ]);
  });

  it('keeps the time of day of the anchor', () => {
    const anchor = t('2026-01-31T17:45:30.250Z');
    expect(toIso(addMonthsClamped(anchor, 1))).toBe('2026-02-28T17:45:30.250Z');
    expect(toIso(addMonthsClamped(anchor, -2))).toBe('2025-11-30T17:45:30.250Z');
  });

  it('puts an instant exactly at a boundary in the period it starts (half-open [start, end))', () => {
    const anchor = t('2026-01-31T10:00:00Z');
    const feb28 = t('2026-02-28T10:00:00Z');
    expect(periodIndex(anchor, 'month', anchor)).toBe(0);
    expect(periodIndex(anchor, 'month', feb28 - 1)).toBe(0);
    expect(periodIndex(anchor, 'month', feb28)).toBe(1);
    expect(periodIndex(anchor, 'month', anchor - 1)).toBe(-1);
    const p = periodContaining(anchor, 'month', feb28);
    expect([toIso(p.start), toIso(p.end)]).toEqual(['2026-02-28T10:00:00.000Z', '2026-03-31T10:00:00.000Z']);
    const y = t('2025-06-01T00:00:00Z');
    expect(periodIndex(y, 'year', t('2026-06-01T00:00:00Z'))).toBe(1);
    expect(periodIndex(y, 'year', t('2026-05-31T23:59:59.999Z'))).toBe(0);
  });

  it('lists every period overlapping a range, and none for an empty range', () => {
    const anchor = t('2026-01-31T00:00:00Z');
    const ps = periodsBetween(anchor, 'month', t('2026-02-15T00:00:00Z'), t('2026-03-31T00:00:00Z'));
    expect(ps.map((p) => [toIso(p.start), toIso(p.end)])).toEqual([
      ['2026-01-31T00:00:00.000Z', '2026-02-28T00:00:00.000Z'],
      ['2026-02-28T00:00:00.000Z', '2026-03-31T00:00:00.000Z'],
    ]);
    // the end is exclusive: a range ending where a period starts does not include it
    expect(periodsBetween(anchor, 'month', anchor, t('2026-02-28T00:00:00Z'))).toHaveLength(1);
    expect(periodsBetween(anchor, 'month', anchor, anchor)).toEqual([]);
  });

  it('uses calendar months without a subscription, and clips the last period at cancellation', () => {
    const p = billingPeriodAt(null, t('2026-02-10T00:00:00Z'));
    expect(p).toEqual(calendarMonth(t('2026-02-10T00:00:00Z')));
    expect(toIso(p.end)).toBe('2026-03-01T00:00:00.000Z');
    const sub: Subscription = {
      tenantId: 'a', id: 's', status: 'active', anchorAt: t('2026-01-31T00:00:00Z'), interval: 'month', currency: 'USD',
      startedAt: t('2026-01-31T00:00:00Z'), trialEndsAt: null, cancelAt: t('2026-02-15T00:00:00Z'), canceledAt: null,
    };
    const clipped = billingPeriodAt(sub, t('2026-02-10T00:00:00Z'));
    expect([toIso(clipped.start), toIso(clipped.end)]).toEqual(['2026-01-31T00:00:00.000Z', '2026-02-15T00:00:00.000Z']);
  });

  it('parses instants with an offset, bare dates as UTC, and refuses local times', () => {
    expect(parseInstant('2026-01-31T10:00:00+02:00')).toBe(t('2026-01-31T08:00:00Z'));
    expect(parseInstant('2026-01-31')).toBe(t('2026-01-31T00:00:00Z'));
    expect(parseInstant('2026-01-31T10:00:00')).toBeNull();
  });

  it('refuses dates that do not exist and instants outside a Date, instead of rolling them over', () => {
    for (const bad of ['2026-02-30T10:00:00Z', '2026-02-29', '2100-02-29', '2026-04-31', '2026-13-01', '2026-01-01T24:00:00Z', '2026-01-01T10:60:00Z', -8640000000000001, '-8640000000000001', -1e17]) {
      expect([bad, parseInstant(bad)]).toEqual([bad, null]);
    }
    expect(parseInstant('2028-02-29')).toBe(t('2028-02-29T00:00:00Z'));
    expect(parseInstant('2000-02-29T23:59:59.999Z')).toBe(t('2000-02-29T23:59:59.999Z'));
    expect(parseInstant(8640000000000000)).toBe(8.64e15);
  });
});
