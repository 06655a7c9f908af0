import type { Knex } from 'knex';
import type { Instant, Interval } from '../domain/period.js';

type Q = Knex | Knex.Transaction;

export interface Tenant {
  id: string;
  name: string | null;
  currency: string | null;
  stripeCustomerId: string | null;
  createdAt: Instant;
}

export type SubscriptionStatus = 'trialing' | 'active' | 'past_due' | 'canceled';

export interface Subscription {
  tenantId: string;
  id: string;
  status: SubscriptionStatus;
  anchorAt: Instant;
  interval: Interval;
  currency: string;
  startedAt: Instant;
  trialEndsAt: Instant | null;
  /** When the subscription ends (scheduled or effective); null = open-ended. */
  cancelAt: Instant | null;
  canceledAt: Instant | null;
}

/** One plan in force over [startsAt, endsAt) of a subscription. */
export interface Segment {
  tenantId: string;
  subscriptionId: string;
  seq: number;
  planKey: string;
  planVersion: number;
  startsAt: Instant;
  endsAt: Instant | null;
}

export function tenantFromRow(r: Record<string, any>): Tenant {
  return {
    id: r.id,
    name: r.name ?? null,
    currency: r.currency ?? null,
    stripeCustomerId: r.stripe_customer_id ?? null,
    createdAt: Number(r.created_at),
  };
}

export function subscriptionFromRow(r: Record<string, any>): Subscription {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    tenantId: r.tenant_id,
    id: r.id,
    status: r.status,
    anchorAt: Number(r.anchor_at),
    interval: r.interval,
    currency: r.currency,
    startedAt: Number(r.started_at),
    trialEndsAt: n(r.trial_ends_at),
    cancelAt: n(r.cancel_at),
    canceledAt: n(r.canceled_at),
  };
}

export function segmentFromRow(r: Record<string, any>): Segment {
  return {
    tenantId: r.tenant_id,
    subscriptionId: r.subscription_id,
    seq: Number(r.seq),
    planKey: r.plan_key,
    planVersion: Number(r.plan_version),
    startsAt: Number(r.starts_at),
    endsAt: r.ends_at === null || r.ends_at === undefined ? null : Number(r.ends_at),
  };
}

export async function loadTenant(q: Q, tenantId: string): Promise<Tenant | null> {
  const r = await q('tenants').where({ id: tenantId }).first();
  return r ? tenantFromRow(r) : null;
}

export async function listTenants(q: Q): Promise<Tenant[]> {
  return (await q('tenants').select('*').orderBy('id')).map(tenantFromRow);
}

/** All of a tenant's subscriptions, oldest first. */
export async function listSubscriptions(q: Q, tenantId: string): Promise<Subscription[]> {
  const rows = await q('subscriptions').where({ tenant_id: tenantId }).orderBy('started_at').orderBy('id');
  return rows.map(subscriptionFromRow);
}

/**
 * The subscription that governs instant t: started at or before t and not yet ended at t.
 * A tenant has at most one at a time.
 */
export async function subscriptionAt(q: Q, tenantId: string, t: Instant): Promise<Subscription | null> {
  const r = await q('subscriptions')
    .where({ tenant_id: tenantId })
    .andWhere('started_at', '<=', t)
    .andWhere((w) => w.whereNull('cancel_at').orWhere('cancel_at', '>', t))
    .orderBy('started_at', 'desc')
    .first();
  return r ? subscriptionFromRow(r) : null;
}

/** The tenant's latest subscription, whatever its status (for show/change/cancel). */
export async function latestSubscription(q: Q, tenantId: string): Promise<Subscription | null> {
  const r = await q('subscriptions').where({ tenant_id: tenantId }).orderBy('started_at', 'desc').orderBy('id', 'desc').first();
  return r ? subscriptionFromRow(r) : null;
}

export async function listSegments(q: Q, tenantId: string, subscriptionId: string): Promise<Segment[]> {
  const rows = await q('subscription_segments')
    .where({ tenant_id: tenantId, subscription_id: subscriptionId })
    .orderBy('seq');
  return rows.map(segmentFromRow);
}
