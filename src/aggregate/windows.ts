import { calendarMonth, intersect, periodContaining, type Instant, type Period } from '../domain/period.js';
import type { Subscription } from '../subscriptions/repository.js';

/**
 * A tenant's usage window: the billing period an event belongs to. Under a subscription it is
 * the anniversary period clipped to the subscription's life; outside any subscription it is
 * the calendar month clipped to the gap between subscriptions, so windows never overlap.
 */
export interface Window extends Period {
  subscription: Subscription | null;
}

interface Run {
  start: Instant; // -Infinity for the open start
  end: Instant; // +Infinity for the open end
  subscription: Subscription | null;
}

/** The subscription governing t, by the rule of subscriptionAt (latest started, not ended). */
function governing(subs: Subscription[], t: Instant): Subscription | null {
  let found: Subscription | null = null;
  for (const s of subs) {
    if (s.startedAt <= t && (s.cancelAt === null || s.cancelAt > t) && (!found || s.startedAt >= found.startedAt)) found = s;
  }
  return found;
}

/** A tenant's timeline: maximal runs of time governed by one subscription (or none). */
export class TenantTimeline {
  private readonly runs: Run[];

  constructor(subs: Subscription[]) {
    const breaks = [...new Set(subs.flatMap((s) => (s.cancelAt === null ? [s.startedAt] : [s.startedAt, s.cancelAt])))].sort(
      (a, b) => a - b,
    );
    const bounds = [-Infinity, ...breaks, Infinity];
    const runs: Run[] = [];
    for (let i = 0; i + 1 < bounds.length; i++) {
      const start = bounds[i];
      const sub = governing(subs, start === -Infinity ? bounds[i + 1] - 1 : start);
      const prev = runs[runs.length - 1];
      if (prev && prev.subscription === sub) prev.end = bounds[i + 1];
      else runs.push({ start, end: bounds[i + 1], subscription: sub });
    }
    this.runs = runs;
  }

  /** The window containing t. */
  windowAt(t: Instant): Window {
    const run = this.runs.find((r) => r.start <= t && t < r.end)!;
    const sub = run.subscription;
    const p = sub ? periodContaining(sub.anchorAt, sub.interval, t) : calendarMonth(t);
    const w = intersect(p, { start: run.start, end: run.end })!;
    return { start: w.start, end: w.end, subscription: sub };
  }

  /** The windows overlapping [from, to), in time order. */
  windowsBetween(from: Instant, to: Instant): Window[] {
    const out: Window[] = [];
    for (let t = from; t < to; ) {
      const w = this.windowAt(t);
      out.push(w);
      t = w.end;
    }
    return out;
  }
}

/**
 * What cut a tenant's windows: its subscriptions' starts, ends, anchors and intervals. The
 * aggregate stage stores it per tenant (aggregate_tenants) with the summaries it cut; equal
 * keys mean equal windows. A tenant without subscriptions has the empty key (and no row).
 */
export function windowsKey(subs: Subscription[] | undefined): string {
  return (subs ?? []).map((s) => `${s.id}@${s.anchorAt}/${s.interval}/${s.startedAt}-${s.cancelAt ?? ''}`).join(',');
}
