import type { Aggregation } from '../domain/catalog.js';
import { Decimal, dec, decStr } from '../domain/decimal.js';
import { calendarMonth, periodContaining, type Instant, type Interval, type Period } from '../domain/period.js';

/*
 * A feature's value from what a summary (or a read of events) holds. Most aggregations store
 * the value itself; `avg` and `weighted_sum` store an additive accumulator, so incremental
 * merges stay plain sums, and every reader turns it into the value here, nowhere else.
 * - avg: the sum of quantities; value = sum / event_count.
 * - weighted_sum: Σ quantity × (window end − occurred_at) in whole seconds; value = that /
 *   the length in seconds of the billing period the window belongs to (before any clipping,
 *   so a window cut short by a cancellation prorates).
 * Both round half away from zero to micro-units.
 */

/** Aggregations whose stored quantity is an accumulator, not the value. */
export const ACCUMULATED: ReadonlySet<Aggregation> = new Set<Aggregation>(['avg', 'weighted_sum']);

/** Whole seconds of an instant, as the SQL accumulators count them (instants are >= 0). */
export const seconds = (t: Instant): number => Math.floor(t / 1000);

/** The billing period a window belongs to, before clipping: the anniversary period, or the calendar month without a subscription. */
export function billingPeriodOf(window: { start: Instant; subscription: { anchorAt: Instant; interval: Interval } | null }): Period {
  const sub = window.subscription;
  return sub ? periodContaining(sub.anchorAt, sub.interval, window.start) : calendarMonth(window.start);
}

/**
 * The value in micro-units (text) of a stored quantity `raw` (micro-units, or the
 * accumulator), with the window's event count and the billing period it belongs to.
 * Null stays null (no events).
 */
export function usageValue(aggregation: Aggregation, raw: string | null, events: number, billingPeriod: Period): string | null {
  if (raw === null || !ACCUMULATED.has(aggregation)) return raw;
  const divisor = aggregation === 'avg' ? events : seconds(billingPeriod.end) - seconds(billingPeriod.start);
  if (divisor <= 0) return '0';
  return decStr(dec(raw).div(divisor).toDecimalPlaces(0, Decimal.ROUND_HALF_UP));
}
