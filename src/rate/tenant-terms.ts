import type { Knex } from 'knex';
import type { Feature, PlanVersion, QuotaOverride } from '../domain/catalog.js';
import type { Period } from '../domain/period.js';
import { loadFeatures, loadPlanVersion, loadQuotaOverrides } from '../catalog/repository.js';
import {
  segmentFromRow,
  subscriptionFromRow,
  tenantFromRow,
  type Segment,
  type Subscription,
  type Tenant,
} from '../subscriptions/repository.js';
import { segmentAtPeriodEnd } from '../subscriptions/timeline.js';
import type { PeriodTerms } from './charge.js';
import { loadUnitGrants, type UnitGrant } from '../subscriptions/unit-grants.js';

type Q = Knex | Knex.Transaction;

/** Everything needed to rate one tenant's periods, loaded once per batch. */
export interface TenantTerms {
  tenant: Tenant | null;
  subscriptions: Subscription[];
  segments: Map<string, Segment[]>; // by subscription id, in seq order
  overrides: Map<string, QuotaOverride>;
  /** Grants of units, with what invoiced periods drew from them. */
  grants: UnitGrant[];
}

/**
 * Load the tenants' subscriptions, segments and quota overrides in a few bulk queries: the one
 * loader of a tenant's terms (rating, reports, entitlement checks).
 */
export async function loadTenantTerms(q: Q, tenantIds: string[]): Promise<Map<string, TenantTerms>> {
  const out = new Map<string, TenantTerms>();
  if (tenantIds.length === 0) return out;
  // One after another: in parallel, a cold PostgreSQL pool would open a connection for each.
  const tenants = await q('tenants').whereIn('id', tenantIds);
  const subs = await q('subscriptions').whereIn('tenant_id', tenantIds).orderBy('started_at').orderBy('id');
  const segs = await q('subscription_segments').whereIn('tenant_id', tenantIds).orderBy('tenant_id').orderBy('subscription_id').orderBy('seq');
  const withOverrides = await q('quota_overrides').distinct('tenant_id').whereIn('tenant_id', tenantIds);
  for (const id of tenantIds) out.set(id, { tenant: null, subscriptions: [], segments: new Map(), overrides: new Map(), grants: [] });
  for (const r of tenants) out.get(r.id)!.tenant = tenantFromRow(r);
  for (const r of subs) out.get(r.tenant_id)!.subscriptions.push(subscriptionFromRow(r));
  for (const r of segs) {
    const s = segmentFromRow(r);
    const m = out.get(s.tenantId)!.segments;
    if (!m.has(s.subscriptionId)) m.set(s.subscriptionId, []);
    m.get(s.subscriptionId)!.push(s);
  }
  for (const [id, gs] of await loadUnitGrants(q, tenantIds)) out.get(id)!.grants = gs;
  // Overrides are rare: only tenants that have one pay a query.
  for (const r of withOverrides) out.get(r.tenant_id)!.overrides = await loadQuotaOverrides(q, r.tenant_id);
  return out;
}

export type PlanLookup = (planKey: string, version: number) => Promise<PlanVersion | null>;

/**
 * The one cache of catalog rows: plan versions (immutable once created) and features, memoised
 * as promises so concurrent callers share a load; a failed load is not remembered. One per run
 * (a stage, an invoice generation) or per terms epoch (entitlement checks); read through the
 * caller's q.
 */
export class CatalogCache {
  private readonly plans = new Map<string, Promise<PlanVersion | null>>();
  private features: Promise<Map<string, Feature>> | null = null;

  plan(q: Q, planKey: string, version: number): Promise<PlanVersion | null> {
    const k = `${planKey}@${version}`;
    const hit = this.plans.get(k);
    if (hit) return hit;
    const p = loadPlanVersion(q, planKey, version);
    this.plans.set(k, p);
    p.catch(() => this.plans.get(k) === p && this.plans.delete(k));
    return p;
  }

  allFeatures(q: Q): Promise<Map<string, Feature>> {
    if (this.features) return this.features;
    const p = loadFeatures(q);
    this.features = p;
    p.catch(() => this.features === p && (this.features = null));
    return p;
  }

  /** Plan versions as a lookup bound to q. */
  lookup(q: Q): PlanLookup {
    return (planKey, version) => this.plan(q, planKey, version);
  }
}

/** The plan a tenant's period is rated on: the subscription's segment in force at period end. */
export async function termsForPeriod(
  t: TenantTerms,
  subscription: Subscription | null,
  period: Period,
  plans: PlanLookup,
): Promise<PeriodTerms> {
  // A charge needs a currency column even when nothing is priced; XXX is ISO 4217 "no currency".
  const fallback = subscription?.currency ?? t.tenant?.currency ?? 'XXX';
  if (!subscription) return { ok: false, reason: 'no_subscription', currency: fallback, subscription: null, segment: null };
  const segment = segmentAtPeriodEnd(t.segments.get(subscription.id) ?? [], period);
  if (!segment) return { ok: false, reason: 'no_plan_segment', currency: fallback, subscription, segment: null };
  const plan = await plans(segment.planKey, segment.planVersion);
  if (!plan) return { ok: false, reason: 'plan_version_missing', currency: fallback, subscription, segment };
  return { ok: true, subscription, segment, plan };
}
