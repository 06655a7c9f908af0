import { toIso } from '../domain/period.js';
import type { CreditGrant } from './credits.js';
import type { Segment, Subscription } from './repository.js';

/** The --json shapes of subscriptions and credit grants (the CLI and webhook events share them). */

const iso = (t: number | null) => (t === null ? null : toIso(t));

export function subscriptionJson(s: Subscription) {
  return { ...s, anchorAt: iso(s.anchorAt), startedAt: iso(s.startedAt), trialEndsAt: iso(s.trialEndsAt), cancelAt: iso(s.cancelAt), canceledAt: iso(s.canceledAt) };
}

export function segmentJson(s: Segment) {
  return { seq: s.seq, planKey: s.planKey, planVersion: s.planVersion, startsAt: iso(s.startsAt), endsAt: iso(s.endsAt) };
}

export function grantToJson(g: CreditGrant) {
  return {
    id: g.id,
    tenant: g.tenantId,
    name: g.name,
    currency: g.currency,
    amount: g.amount,
    priority: g.priority,
    effective: toIso(g.effectiveAt),
    expires: g.expiresAt === null ? null : toIso(g.expiresAt),
    recurring: g.recurring,
    source: g.source,
    createdAt: toIso(g.createdAt),
    voidedAt: g.voidedAt === null ? null : toIso(g.voidedAt),
  };
}
