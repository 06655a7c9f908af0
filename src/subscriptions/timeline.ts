import { calendarMonth, intersect, periodContaining, periodsBetween, type Instant, type Period } from '../domain/period.js';
import type { Segment, Subscription } from './repository.js';

// The one place that answers "which subscription, period and plan segment hold at t".
// Pure functions over rows already loaded (repository.ts reads them).

/** A subscription period to invoice: clipped to the subscription's life; `nominal` is the full anniversary period. */
export interface BillingPeriod {
  period: Period;
  nominal: Period;
}

/**
 * The subscription governing t among a tenant's: started at or before t, not yet ended, the
 * latest started (the rule of subscriptionAt, over an in-memory list).
 */
export function subscriptionAtIn(subs: Subscription[], t: Instant): Subscription | null {
  let found: Subscription | null = null;
  for (const s of subs) {
    if (s.startedAt <= t && (s.cancelAt === null || s.cancelAt > t)) {
      if (!found || s.startedAt >= found.startedAt) found = s;
    }
  }
  return found;
}

/**
 * The subscription a usage summary belongs to: the one the aggregate recorded, else the one
 * in force at the period start.
 */
export function governingSubscription(subs: Subscription[], subscriptionId: string | null, periodStart: Instant): Subscription | null {
  if (subscriptionId !== null) {
    const byId = subs.find((s) => s.id === subscriptionId);
    if (byId) return byId;
  }
  return subscriptionAtIn(subs, periodStart);
}

/** The segment in force at instant t. */
export function segmentAt(segments: Segment[], t: Instant): Segment | null {
  for (const s of segments) if (s.startsAt <= t && (s.endsAt === null || t < s.endsAt)) return s;
  return null;
}

/**
 * The segment whose plan rates a period's usage: the one in force at its last instant
 * (DESIGN.md §8); for a period cut short by a cancellation, the last one that started inside.
 */
export function segmentAtPeriodEnd(segments: Segment[], period: Period): Segment | null {
  const atEnd = segmentAt(segments, period.end - 1);
  if (atEnd) return atEnd;
  let last: Segment | null = null;
  for (const s of segments) if (s.startsAt < period.end && (!last || s.seq > last.seq)) last = s;
  return last;
}

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

/**
 * The subscription's period containing t: its anniversary period clipped to the subscription's
 * life, which is exactly the window usage is summarised under (src/aggregate/windows.ts).
 */
export function subscriptionPeriodAt(sub: Subscription, t: Instant): BillingPeriod {
  const nominal = periodContaining(sub.anchorAt, sub.interval, t);
  const period = { start: Math.max(nominal.start, sub.startedAt), end: Math.min(nominal.end, sub.cancelAt ?? Infinity) };
  return { period, nominal };
}

/** Periods of a subscription that have ended by `now`, oldest first. */
export function endedPeriods(sub: Subscription, now: Instant): BillingPeriod[] {
  const until = Math.min(now, sub.cancelAt ?? Infinity);
  const out: BillingPeriod[] = [];
  for (const nominal of periodsBetween(sub.anchorAt, sub.interval, sub.startedAt, until)) {
    const { period } = subscriptionPeriodAt(sub, Math.max(nominal.start, sub.startedAt));
    if (period.start < period.end && period.end <= now) out.push({ period, nominal });
  }
  return out;
}

/** The subscription's billing periods that have started by `now`. */
export function startedPeriods(sub: Subscription, now: Instant): Period[] {
  const out: Period[] = [];
  const end = sub.cancelAt ?? Number.POSITIVE_INFINITY;
  for (let t = sub.startedAt; t < end && t <= now; ) {
    const p = billingPeriodAt(sub, t);
    out.push(p);
    t = p.end;
  }
  return out;
}
