import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { TenantTimeline, type Window } from './windows.js';

/** `current`, `previous`, or a month `YYYY-MM`. */
export type PeriodSpec = string;

const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** `name` is what the caller typed the spec as: the CLI's --period, the HTTP API's period parameter. */
export function checkPeriodSpec(spec: string, name = '--period'): PeriodSpec {
  if (spec === 'current' || spec === 'previous' || MONTH_RE.test(spec)) return spec;
  throw new BillingError('usage', `${name} "${spec}" is not current, previous or YYYY-MM (e.g. 2026-03)`);
}

/**
 * The window a period spec names for one tenant: `current` contains now, `previous` is the one
 * before it, and `YYYY-MM` is the billing period that starts in that month (a subscriber's
 * anniversary period, e.g. 15 Mar – 15 Apr for 2026-03). When several start in the month (a
 * cancellation, a new subscription) the first one under a subscription wins; when none does
 * (a yearly plan) it is the period containing the month's first instant.
 */
export function selectWindow(timeline: TenantTimeline, spec: PeriodSpec, now: Instant): Window {
  if (spec === 'current') return timeline.windowAt(now);
  if (spec === 'previous') return timeline.windowAt(timeline.windowAt(now).start - 1);
  const m = MONTH_RE.exec(spec);
  if (!m) throw new BillingError('usage', `period "${spec}" is not current, previous or YYYY-MM`);
  const from = Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
  const to = Date.UTC(Number(m[1]), Number(m[2]), 1);
  const starting = timeline.windowsBetween(from, to).filter((w) => w.start >= from);
  return starting.find((w) => w.subscription !== null) ?? starting[0] ?? timeline.windowAt(from);
}
