import { calendarMonth, intersect, periodContaining, type Instant, type Period } from '../domain/period.js';
import type { Subscription } from './repository.js';

/**
 * The billing period containing t: the subscription's anniversary period, clipped to end at
 * its cancellation, or the calendar month for a tenant without one (DESIGN.md §5).
 */
export function billingPeriodAt(sub: Subscription | null, t: Instant): Period {
  if (!sub) return calendarMonth(t);
  const p = periodContaining(sub.anchorAt, sub.interval, t);
  if (sub.cancelAt !== null) return intersect(p, { start: p.start, end: sub.cancelAt }) ?? p;
  return p;
}
