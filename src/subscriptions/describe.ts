import { BillingError } from '../domain/errors.js';
import { nthPeriod, type Instant, type Period } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { effectiveStatus } from './lifecycle.js';
import {
  latestSubscription,
  listSegments,
  loadTenant,
  subscriptionAt,
  type Segment,
  type Subscription,
  type SubscriptionStatus,
} from './repository.js';
import { billingPeriodAt, segmentAt } from './timeline.js';

export interface SubscriptionView {
  subscription: Subscription;
  status: SubscriptionStatus;
  /** The billing period containing now (the first one if not started yet); null once ended. */
  currentPeriod: Period | null;
  /** The segment in force now (or the first one if not started yet); null once ended. */
  current: Segment | null;
  segments: Segment[];
}

/** The subscription governing `now` (else the tenant's latest) with its status and segments. */
export async function describeSubscription(db: Db, input: { tenantId: string }, opts: { now: Instant }): Promise<SubscriptionView> {
  const q = db.knex;
  if (!(await loadTenant(q, input.tenantId))) throw new BillingError('not_found', `unknown tenant "${input.tenantId}"`);
  const sub = (await subscriptionAt(q, input.tenantId, opts.now)) ?? (await latestSubscription(q, input.tenantId));
  if (!sub) {
    throw new BillingError('not_found', `tenant "${input.tenantId}" has no subscription (start one with \`billing subscribe ${input.tenantId} PLAN\`)`);
  }
  const segments = await listSegments(q, sub.tenantId, sub.id);
  const status = effectiveStatus(sub, opts.now);
  const ended = status === 'canceled';
  const notStarted = opts.now < sub.startedAt;
  return {
    subscription: sub,
    status,
    currentPeriod: ended ? null : notStarted ? nthPeriod(sub.anchorAt, sub.interval, 0) : billingPeriodAt(sub, opts.now),
    current: ended ? null : notStarted ? (segments[0] ?? null) : segmentAt(segments, opts.now),
    segments,
  };
}
