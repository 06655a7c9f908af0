import type { Knex } from 'knex';
import { applyOverride, loadFeature, loadPlanVersion, loadQuotaOverride } from '../catalog/repository.js';
import { dec, decStr, Decimal, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { microToDecimal, parseQuantity } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { effectiveStatus } from '../subscriptions/lifecycle.js';
import { listSegments, listSubscriptions, loadTenant, segmentAt } from '../subscriptions/repository.js';
import { tenantUsage } from '../aggregate/usage.js';
import { TenantTimeline } from '../aggregate/windows.js';

export type CheckReason =
  | 'within_plan'
  | 'overage'
  | 'limit_reached'
  | 'feature_disabled'
  | 'feature_not_in_plan'
  | 'no_active_subscription'
  | 'unknown_tenant'
  | 'unknown_feature';

export interface CheckResult {
  allowed: boolean;
  /** What is left before this request: limit − used, never negative; null = unlimited. */
  remaining: string | null;
  reason: CheckReason;
  hardStop: boolean;
  used: string;
  included: string | null;
  limit: string | null;
}

export interface CheckInput {
  tenantId: string;
  featureKey: string;
  /** Units this request would use (default 1). */
  quantity?: string;
}

/** A denial before any terms apply: nothing is available, so nothing remains. */
function denied(reason: CheckReason): CheckResult {
  return { allowed: false, remaining: '0', reason, hardStop: false, used: '0', included: null, limit: null };
}

function parseRequested(raw: string | undefined): Decimal {
  const p = parseQuantity(raw ?? '1');
  if (!p.ok) {
    throw new BillingError('invalid_input', `quantity "${raw}" is not a valid quantity (${p.error.replace(/_/g, ' ')}); use a number >= 0`);
  }
  return dec(p.value);
}

/**
 * Can this tenant use this feature now (DESIGN.md §6)? Usage is the current period's, read
 * from usage_events so that events not yet aggregated count. The plan is the segment in force
 * now, after the tenant's quota override. Denials are results, not errors.
 */
export async function checkEntitlement(
  db: Db,
  input: CheckInput,
  opts: { now: Instant; trx?: Knex.Transaction },
): Promise<CheckResult> {
  const q = opts.trx ?? db.knex;
  const requested = parseRequested(input.quantity);
  const [tenant, feature] = await Promise.all([loadTenant(q, input.tenantId), loadFeature(q, input.featureKey)]);
  if (!tenant) return denied('unknown_tenant');
  if (!feature) return denied('unknown_feature');

  const timeline = new TenantTimeline(await listSubscriptions(q, tenant.id));
  const window = timeline.windowAt(opts.now);
  const sub = window.subscription;
  // Trialing and past-due subscriptions keep their plan's terms; only a live one grants any.
  if (!sub || effectiveStatus(sub, opts.now) === 'canceled') return denied('no_active_subscription');
  const segment = segmentAt(await listSegments(q, tenant.id, sub.id), opts.now);
  const plan = segment ? await loadPlanVersion(q, segment.planKey, segment.planVersion) : null;
  if (!plan) return denied('no_active_subscription');
  const planFeature = plan.features[feature.key];
  if (!planFeature) return denied('feature_not_in_plan');
  const terms = applyOverride(planFeature, await loadQuotaOverride(q, tenant.id, feature.key));
  if (!terms.enabled) return { ...denied('feature_disabled'), hardStop: terms.hardStop };
  if (feature.type === 'boolean') {
    return { allowed: true, remaining: null, reason: 'within_plan', hardStop: false, used: '0', included: null, limit: null };
  }

  const usage = await tenantUsage(db, q, tenant.id, [window], [feature]);
  const used = microToDecimal(usage.get(window.start)?.get(feature.key)?.quantity ?? '0');
  const included = terms.included === null ? null : dec(terms.included);
  // The limit defaults to the allowance (DESIGN.md §3); it denies only under a hard stop.
  const limit = terms.limit !== null ? dec(terms.limit) : included;
  const after = used.plus(requested);
  let allowed = true;
  let reason: CheckReason = 'within_plan';
  if (limit !== null && after.gt(limit) && terms.hardStop) {
    allowed = false;
    reason = 'limit_reached';
  } else if ((limit !== null && after.gt(limit)) || (included !== null && after.gt(included))) {
    reason = 'overage';
  }
  return {
    allowed,
    remaining: limit === null ? null : decStr(Decimal.max(ZERO, limit.minus(used))),
    reason,
    hardStop: terms.hardStop,
    used: decStr(used),
    included: included === null ? null : decStr(included),
    limit: limit === null ? null : decStr(limit),
  };
}
