import type { PlanFeature, PlanVersion, QuotaOverride } from '../domain/catalog.js';
import { applyOverride } from '../catalog/repository.js';
import type { Instant } from '../domain/period.js';
import { roundMoney } from '../domain/money.js';
import { microToString } from '../domain/quantity.js';
import type { Segment, Subscription } from '../subscriptions/repository.js';
import type { PriceLine } from './price-line.js';
import { chargesEveryEvent, rateUsage, type RatedUsage } from './rate.js';
import { drawnTotal, rateWindowed, windowedDraws } from './reset.js';
import { drawGrants, withGrantDraws, type UnitGrant } from './grants.js';
import { withCarried } from './rollover.js';
import { ANY_VALUE, byDimension, rateByValue } from './dimension.js';

/** Why a summary got a zero charge instead of being priced. */
export type UnratedReason = 'no_subscription' | 'no_plan_segment' | 'plan_version_missing' | 'feature_not_in_plan';

/** One row of rated_charges: a tenant × feature × period, rated on the plan in force at period end. */
export interface RatedCharge {
  tenantId: string;
  featureKey: string;
  periodStart: Instant;
  periodEnd: Instant;
  planKey: string | null;
  planVersion: number | null;
  currency: string;
  used: string;
  included: string | null;
  billable: string;
  amountPrecise: string;
  amount: string;
  amountMinor: string;
  hardStop: boolean;
  isExceeded: boolean;
  /** The terms rated with (after the tenant's quota override), or why nothing was priced. */
  priceSnapshot: PlanFeature | { unrated: UnratedReason };
  lines: PriceLine[];
  ratedAt: Instant;
  /** Micro-units of the summary rated; null for a minimum charged without usage. */
  summaryQuantity: string | null;
}

/** What a period is rated on: the plan in force at its end, or why there is none. */
export type PeriodTerms =
  | { ok: true; subscription: Subscription; segment: Segment; plan: PlanVersion }
  | { ok: false; reason: UnratedReason; currency: string; subscription: Subscription | null; segment: Segment | null };

/** The terms a feature is priced on in a period: its plan's, after the tenant's quota override; null when the plan lacks it. */
export function featureTerms(plan: PlanVersion, featureKey: string, override: QuotaOverride | undefined): PlanFeature | null {
  const pf = plan.features[featureKey];
  return pf ? applyOverride(pf, override) : null;
}

export interface ChargeKey {
  tenantId: string;
  featureKey: string;
  periodStart: Instant;
  periodEnd: Instant;
}

/**
 * What rating may need besides the summed usage. `eventsMicro`: the window's event amounts in
 * time order, micro-units as text (aggregate/usage.ts `eventAmounts`), for percentage pricing.
 */
export interface UsageDetail {
  eventsMicro?: readonly string[];
  /** Units carried over from the previous period (rate/rollover.ts). */
  carried?: string;
  /** A feature with reset windows: the usage of each window of the period, in order (rate/reset.ts). */
  windowsUsed?: readonly string[];
  /** A feature priced by dimension: micro-units used per value (aggregate/usage.ts `dimensionUsage`). */
  valuesUsed?: ReadonlyMap<string, string>;
}
export type ChargeDetail = UsageDetail;

/** Rate one tenant × feature × period. `usedMicro` null: no summary (a minimum-only charge). */
export function rateCharge(
  key: ChargeKey,
  usedMicro: string | null,
  terms: PeriodTerms,
  override: QuotaOverride | undefined,
  ratedAt: Instant,
  grants?: readonly UnitGrant[],
  detail?: UsageDetail,
): RatedCharge {
  const used = microToString(usedMicro ?? '0');
  const base = { ...key, ratedAt, summaryQuantity: usedMicro };
  const pf = terms.ok ? featureTerms(terms.plan, key.featureKey, override) : null;
  if (!terms.ok || !pf) {
    const currency = terms.ok ? terms.plan.currency : terms.currency;
    const zero = roundMoney(0, currency);
    return {
      ...base,
      planKey: terms.ok ? terms.plan.planKey : (terms.segment?.planKey ?? null),
      planVersion: terms.ok ? terms.plan.version : (terms.segment?.planVersion ?? null),
      currency,
      used,
      included: null,
      billable: '0',
      amountPrecise: zero.precise,
      amount: zero.amount,
      amountMinor: zero.minor,
      hardStop: false,
      isExceeded: false,
      priceSnapshot: { unrated: terms.ok ? 'feature_not_in_plan' : terms.reason },
      lines: [],
    };
  }
  // Carried units, then units granted to the tenant, top up the included quantity (percentage has none).
  const own = withCarried(pf, detail?.carried);
  const period = { start: key.periodStart, end: key.periodEnd };
  let r: RatedUsage;
  if (byDimension(pf)) {
    // Without per-value usage (a minimum-only charge, or not read), the total is one '*' value.
    const micro = detail?.valuesUsed ?? new Map(usedMicro === null ? [] : [[ANY_VALUE, usedMicro]]);
    r = rateByValue(pf, new Map([...micro].map(([v, m]) => [v, microToString(m)])), terms.plan.currency).total;
  } else if (pf.resetEvery && !chargesEveryEvent(pf)) {
    // Without per-window usage (a minimum-only charge), the period is one window.
    const windowsUsed = detail?.windowsUsed ?? [used];
    const granted = drawnTotal(windowedDraws(grants, key.featureKey, period, pf, windowsUsed));
    r = rateWindowed(pf, used, { used: windowsUsed, granted }, terms.plan.currency);
  } else {
    const draws = chargesEveryEvent(pf) ? [] : drawGrants(grants, key.featureKey, period, own.included, used);
    const events = detail?.eventsMicro?.map((m) => microToString(m)) ?? (usedMicro === null ? [] : undefined);
    r = rateUsage(withGrantDraws(own, draws), used, terms.plan.currency, events);
  }
  return {
    ...base,
    planKey: terms.plan.planKey,
    planVersion: terms.plan.version,
    currency: terms.plan.currency,
    used: r.used,
    included: r.included,
    billable: r.billable,
    amountPrecise: r.amountPrecise,
    amount: r.amount,
    amountMinor: r.amountMinor,
    hardStop: r.hardStop,
    isExceeded: r.isExceeded,
    priceSnapshot: r.priceSnapshot,
    lines: r.lines,
  };
}
