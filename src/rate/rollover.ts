import { applyOverride } from '../catalog/repository.js';
import type { PlanFeature } from '../domain/catalog.js';
import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import type { Period } from '../domain/period.js';
import type { Subscription } from '../subscriptions/repository.js';
import { subscriptionPeriodAt } from '../subscriptions/timeline.js';
import { termsForPeriod, type PlanLookup, type TenantTerms } from './tenant-terms.js';

/*
 * Rollover (DESIGN.md §14): a plan feature with `rollover: { max }` carries into a period
 * min(max, max(0, included(P−1) − used(P−1))), where included(P−1) is the previous period's own
 * included quantity (its plan at period end after the tenant's override; no carried units, no
 * grants), so carried units never roll twice. Only periods of one subscription carry.
 */

/** The subscription's period before `period`; null for its first. */
export function previousPeriod(sub: Subscription, period: Period): Period | null {
  if (period.start <= sub.startedAt) return null;
  return subscriptionPeriodAt(sub, period.start - 1).period;
}

/** Where a period's carried units come from: the previous period and its own included quantity. */
export interface RolloverSource {
  period: Period;
  included: string;
}

/**
 * The previous period a feature's terms carry from, or null when nothing can carry: no
 * rollover on the period's own terms, unlimited included, the subscription's first period, or
 * a previous period whose plan lacks the feature or includes it without limit.
 */
export async function rolloverSource(
  t: TenantTerms,
  sub: Subscription | null,
  period: Period,
  featureKey: string,
  terms: PlanFeature | null,
  plans: PlanLookup,
): Promise<RolloverSource | null> {
  if (!sub || !terms?.rollover || terms.included === null) return null;
  const prev = previousPeriod(sub, period);
  if (!prev) return null;
  const pt = await termsForPeriod(t, sub, prev, plans);
  const pf = pt.ok ? pt.plan.features[featureKey] : undefined;
  const included = pf ? applyOverride(pf, t.overrides.get(featureKey)).included : null;
  return included === null ? null : { period: prev, included };
}

/** Units carried into a period: min(max, max(0, included(P−1) − used(P−1))). */
export function carriedUnits(terms: PlanFeature, source: RolloverSource | null, prevUsed: string): string {
  if (!source || !terms.rollover || terms.included === null) return '0';
  return decStr(Decimal.min(dec(terms.rollover.max), Decimal.max(ZERO, dec(source.included).minus(prevUsed))));
}

/** The terms with carried units added to `included` (drawn before grants: they come first). */
export function withCarried(terms: PlanFeature, carried: string | undefined): PlanFeature {
  if (carried === undefined || terms.included === null || dec(carried).isZero()) return terms;
  return { ...terms, included: decStr(dec(terms.included).plus(carried)) };
}
