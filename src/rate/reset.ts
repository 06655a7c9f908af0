import type { PlanFeature, ResetEvery } from '../domain/catalog.js';
import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import { roundMoney } from '../domain/money.js';
import { addMonthsClamped, type Instant, type Period } from '../domain/period.js';
import { priceBillable, type RatedUsage } from './rate.js';
import { drawGrants, type GrantDraw, type UnitGrant } from './grants.js';

/*
 * Reset windows (DESIGN.md §14): a plan feature with `resetEvery` applies its included quantity
 * (and limit) per window inside the billing period. Windows start at the period's start and
 * repeat every day / 7 days / month (the period start's day of month, clamped to month ends,
 * as anniversaries are cut); the last is clipped to the period's end. billable = Σ over windows
 * max(0, used_w − included), priced once on that sum (tiers apply to the period's total).
 */

const DAY = 86_400_000;

/** The start of window k of a period starting at `start`. */
function windowStart(start: Instant, every: ResetEvery, k: number): Instant {
  if (every === 'month') return addMonthsClamped(start, k);
  return start + k * (every === 'week' ? 7 : 1) * DAY;
}

/** The period's reset windows, in time order. */
export function resetWindows(period: Period, every: ResetEvery): Period[] {
  const out: Period[] = [];
  for (let k = 0; ; k++) {
    const start = windowStart(period.start, every, k);
    if (start >= period.end) return out;
    out.push({ start, end: Math.min(windowStart(period.start, every, k + 1), period.end) });
  }
}

/** The window containing t (an instant on a boundary belongs to the window it starts). */
export function resetWindowAt(period: Period, every: ResetEvery, t: Instant): Period {
  return resetWindows(period, every).find((w) => w.start <= t && t < w.end) ?? { start: period.start, end: period.end };
}

/** Σ over windows of max(0, used_w − included): what the windows' usage leaves billable. */
export function windowsBillable(included: string | null, windowsUsed: readonly string[]): string {
  if (included === null) return '0';
  return decStr(windowsUsed.reduce((s, u) => s.plus(Decimal.max(ZERO, dec(u).minus(included))), ZERO));
}

/** A windowed feature's usage: each window's, in order, and what grants gave the period. */
export interface WindowedUsage {
  used: readonly string[];
  /** Units the period's grants cover of the windows' billable total. */
  granted: string;
}

/**
 * Rate a feature with reset windows: the windows' billable total less what grants cover,
 * priced once. `used` is the period's usage (reported as is); `included` the per-window quantity.
 */
export function rateWindowed(terms: PlanFeature, used: string, windows: WindowedUsage, currency: string): RatedUsage {
  const over = dec(windowsBillable(terms.included, windows.used));
  const billable = Decimal.max(ZERO, over.minus(windows.granted));
  const priced = terms.overage && terms.enabled ? priceBillable(terms.overage, decStr(billable)) : { amount: '0', lines: [] };
  const money = roundMoney(priced.amount, currency);
  return {
    used: decStr(dec(used)),
    included: terms.included,
    billable: decStr(billable),
    amountPrecise: money.precise,
    amount: money.amount,
    amountMinor: money.minor,
    isExceeded: over.gt(0),
    hardStop: terms.hardStop,
    lines: priced.lines,
    priceSnapshot: terms,
  };
}

const NOUN: Record<ResetEvery, [string, string]> = { day: ['daily', 'day'], week: ['weekly', 'week'], month: ['monthly', 'month'] };

/** "31 daily windows, 1000 a day" for an invoice line. */
export function windowsLabel(every: ResetEvery, count: number, included: string | null): string {
  const [adj, noun] = NOUN[every];
  return `${count} ${adj} window${count === 1 ? '' : 's'}, ${included ?? 'unlimited'} a ${noun}`;
}

/** What a windowed period draws from grants: they cover the windows' billable total, like usage beyond `included`. */
export function windowedDraws(grants: readonly UnitGrant[] | undefined, featureKey: string, period: Period, terms: PlanFeature, windowsUsed: readonly string[]): GrantDraw[] {
  return drawGrants(grants, featureKey, period, terms.included === null ? null : '0', windowsBillable(terms.included, windowsUsed));
}

export function drawnTotal(draws: readonly GrantDraw[]): string {
  return decStr(draws.reduce((s, d) => s.plus(d.quantity), ZERO));
}

/** What an invoiced period recorded drawing from the feature's grants (late usage keeps it). */
export function recordedDrawn(grants: readonly UnitGrant[] | undefined, featureKey: string, period: Period): string {
  return decStr((grants ?? []).filter((g) => g.featureKey === featureKey).reduce((s, g) => s.plus(g.draws.get(period.start) ?? '0'), ZERO));
}
