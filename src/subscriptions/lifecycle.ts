import type { Knex } from 'knex';
import { loadCurrentPlanVersion, loadPlanVersion } from '../catalog/repository.js';
import type { PlanVersion } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { periodContaining, toIso, type Instant } from '../domain/period.js';
import { writeAudit, type AuditEntry } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import {
  listSegments,
  listSubscriptions,
  subscriptionFromRow,
  type Segment,
  type Subscription,
  type SubscriptionStatus,
} from './repository.js';
import { segmentAt } from './timeline.js';
import { emitEvent, type NewEvent } from '../webhooks/events.js';
import { segmentJson, subscriptionJson } from './json.js';

/** subscription.changed (DESIGN.md §15): what happened, the subscription and its plan segments as --json shows them. */
export function subscriptionChanged(action: 'create' | 'change' | 'cancel', sub: Subscription, segments: Segment[], at: Instant, effectiveAt?: Instant): NewEvent {
  return {
    type: 'subscription.changed',
    tenantId: sub.tenantId,
    data: { action, subscription: subscriptionJson(sub), segments: segments.map(segmentJson), ...(effectiveAt === undefined ? {} : { effectiveAt: toIso(effectiveAt) }) },
    at,
  };
}

type Trx = Knex.Transaction;
type Opts = { now: Instant; actor: string };
export type At = 'now' | 'period-end' | number;

const DAY_MS = 86_400_000;

/**
 * Status as of `now`: canceled once its end has passed, past_due while dunning says so,
 * trialing until the trial ends, else active.
 */
export function effectiveStatus(sub: Subscription, now: Instant): SubscriptionStatus {
  if (sub.status === 'canceled' || (sub.cancelAt !== null && now >= sub.cancelAt)) return 'canceled';
  if (sub.status === 'past_due') return 'past_due';
  if (sub.trialEndsAt !== null && now < sub.trialEndsAt) return 'trialing';
  return 'active';
}

function subscriptionRow(s: Subscription) {
  return {
    tenant_id: s.tenantId,
    id: s.id,
    status: s.status,
    anchor_at: s.anchorAt,
    interval: s.interval,
    currency: s.currency,
    started_at: s.startedAt,
    trial_ends_at: s.trialEndsAt,
    cancel_at: s.cancelAt,
    canceled_at: s.canceledAt,
  };
}

/** The tenant, row-locked so that two subscribes for one tenant take turns. */
async function requireTenant(trx: Trx, tenantId: string): Promise<{ currency: string | null }> {
  const t = await trx('tenants').where({ id: tenantId }).forUpdate().first();
  if (!t) throw new BillingError('not_found', `unknown tenant "${tenantId}" (create it with \`billing tenant create ${tenantId}\`)`);
  return t;
}

async function requirePlan(trx: Trx, planKey: string): Promise<PlanVersion> {
  const p = await loadCurrentPlanVersion(trx, planKey);
  if (!p) throw new BillingError('not_found', `unknown plan "${planKey}" (see \`billing catalog show\`)`);
  return p;
}

/** The tenant's subscription that has not ended by `now` (current or starting later), locked for update. */
async function liveSubscription(trx: Trx, tenantId: string, now: Instant): Promise<Subscription> {
  const r = await trx('subscriptions')
    .where({ tenant_id: tenantId })
    .andWhere((w) => w.whereNull('cancel_at').orWhere('cancel_at', '>', now))
    .andWhereNot({ status: 'canceled' })
    .orderBy('started_at', 'desc')
    .forUpdate()
    .first();
  if (!r) {
    throw new BillingError('not_found', `tenant "${tenantId}" has no live subscription (start one with \`billing subscribe ${tenantId} PLAN\`)`);
  }
  return subscriptionFromRow(r);
}

/** Rewrite a subscription's segments: delete those gone, update the rest, insert new ones. */
async function saveSegments(trx: Trx, sub: Subscription, before: Segment[], after: Segment[], now: Instant): Promise<void> {
  const keep = new Set(after.map((s) => s.seq));
  const gone = before.filter((s) => !keep.has(s.seq)).map((s) => s.seq);
  const where = { tenant_id: sub.tenantId, subscription_id: sub.id };
  if (gone.length > 0) await trx('subscription_segments').where(where).whereIn('seq', gone).delete();
  for (const s of after) {
    const old = before.find((b) => b.seq === s.seq);
    const cols = { plan_key: s.planKey, plan_version: s.planVersion, starts_at: s.startsAt, ends_at: s.endsAt };
    if (!old) await trx('subscription_segments').insert(newSegmentRow(s, now));
    else if (old.planKey !== s.planKey || old.planVersion !== s.planVersion || old.startsAt !== s.startsAt || old.endsAt !== s.endsAt) {
      await trx('subscription_segments').where({ ...where, seq: s.seq }).update(cols);
    }
  }
}

/** A tenant's `ordinal`-th subscription, starting on `plan` at `start`, and its first segment. */
export function newSubscription(
  input: { tenantId: string; plan: PlanVersion; start: Instant; trialDays?: number; ordinal: number },
  now: Instant,
): { sub: Subscription; segment: Segment } {
  const { plan, start } = input;
  const trialDays = input.trialDays ?? plan.trialDays;
  const trialEndsAt = trialDays > 0 ? start + trialDays * DAY_MS : null;
  const sub: Subscription = {
    tenantId: input.tenantId,
    id: `sub_${input.tenantId}_${input.ordinal}`,
    // Stored status is a snapshot (a backdated start may be past its trial); effectiveStatus is the truth.
    status: trialEndsAt !== null && now < trialEndsAt ? 'trialing' : 'active',
    anchorAt: start,
    interval: plan.interval,
    currency: plan.currency,
    startedAt: start,
    trialEndsAt,
    cancelAt: null,
    canceledAt: null,
  };
  const segment: Segment = { tenantId: sub.tenantId, subscriptionId: sub.id, seq: 1, planKey: plan.planKey, planVersion: plan.version, startsAt: start, endsAt: null };
  return { sub, segment };
}

export function newSubscriptionRow(sub: Subscription, now: Instant) {
  return { ...subscriptionRow(sub), created_at: now, updated_at: now };
}

export function newSegmentRow(s: Segment, now: Instant) {
  return { tenant_id: s.tenantId, subscription_id: s.subscriptionId, seq: s.seq, plan_key: s.planKey, plan_version: s.planVersion, starts_at: s.startsAt, ends_at: s.endsAt, created_at: now };
}

export function subscriptionCreated(sub: Subscription, segment: Segment, opts: Opts): AuditEntry {
  return { at: opts.now, actor: opts.actor, tenantId: sub.tenantId, entity: 'subscription', entityId: sub.id, action: 'create', after: { subscription: sub, segments: [segment] } };
}

/**
 * Start a subscription on the plan's current version, anchored at its start (anniversary
 * periods). Trial days: the flag's, else the plan's. One live subscription per tenant.
 */
export async function subscribe(
  db: Db,
  input: { tenantId: string; planKey: string; start?: number; trialDays?: number },
  opts: Opts,
): Promise<Subscription> {
  const start = input.start ?? opts.now;
  if (input.trialDays !== undefined && (!Number.isInteger(input.trialDays) || input.trialDays < 0)) {
    throw new BillingError('invalid_input', `trial days must be a whole number ≥ 0 (got ${input.trialDays})`);
  }
  return withTx(db, async (trx) => {
    const tenant = await requireTenant(trx, input.tenantId);
    const plan = await requirePlan(trx, input.planKey);
    if (tenant.currency !== null && tenant.currency !== plan.currency) {
      throw new BillingError(
        'invalid_input',
        `plan "${plan.planKey}" is billed in ${plan.currency} but tenant "${input.tenantId}" uses ${tenant.currency}`,
      );
    }
    const existing = await listSubscriptions(trx, input.tenantId);
    // The new subscription is open-ended, so it overlaps any other that has not ended by its start.
    const clash = existing.find((s) => s.status !== 'canceled' && (s.cancelAt === null || s.cancelAt > start));
    if (clash) {
      const until = clash.cancelAt === null ? '' : ` until ${toIso(clash.cancelAt)}`;
      throw new BillingError(
        'conflict',
        `tenant "${input.tenantId}" already has subscription ${clash.id}${until}; use \`billing subscription change\` to move it to another plan`,
      );
    }
    const { sub, segment } = newSubscription({ tenantId: input.tenantId, plan, start, trialDays: input.trialDays, ordinal: existing.length + 1 }, opts.now);
    await trx('subscriptions').insert(newSubscriptionRow(sub, opts.now));
    await saveSegments(trx, sub, [], [segment], opts.now);
    await writeAudit(trx, subscriptionCreated(sub, segment, opts));
    await emitEvent(trx, subscriptionChanged('create', sub, [segment], opts.now));
    return sub;
  });
}

/** Resolve --at against the subscription: never before now, never before it starts. */
function resolveAt(sub: Subscription, at: At, now: Instant): Instant {
  const ref = Math.max(now, sub.startedAt);
  if (at === 'now') return ref;
  if (at === 'period-end') return periodContaining(sub.anchorAt, sub.interval, ref).end;
  if (!Number.isFinite(at)) throw new BillingError('invalid_input', '--at must be now, period-end or an ISO 8601 instant');
  if (at < now) throw new BillingError('invalid_input', `--at ${toIso(at)} is in the past (now is ${toIso(now)})`);
  return Math.max(at, sub.startedAt);
}

/** Segments up to `end`: later (scheduled) ones dropped, the last one closed at `end`. */
function truncateSegments(segments: Segment[], end: Instant | null): Segment[] {
  const out = segments.filter((s, i) => i === 0 || end === null || s.startsAt < end).map((s) => ({ ...s }));
  out[out.length - 1].endsAt = end;
  return out;
}

/**
 * Move a subscription to the current version of a plan (another plan, or a newer version of
 * the same one). An upgrade (higher base price) takes effect now by default, anything else at
 * period end, stored as a future segment. Changing currency or interval is refused.
 */
export async function changePlan(
  db: Db,
  input: { tenantId: string; planKey: string; at?: At },
  opts: Opts,
): Promise<{ subscription: Subscription; segments: Segment[]; effectiveAt: number; changed: boolean }> {
  return withTx(db, async (trx) => {
    const sub = await liveSubscription(trx, input.tenantId, opts.now);
    const target = await requirePlan(trx, input.planKey);
    const before = await listSegments(trx, sub.tenantId, sub.id);
    const ref = Math.max(opts.now, sub.startedAt);
    const current = segmentAt(before, ref) ?? before[before.length - 1];
    const currentPlan = await loadPlanVersion(trx, current.planKey, current.planVersion);
    if (!currentPlan) throw new BillingError('internal', `plan ${current.planKey} v${current.planVersion} of ${sub.id} is missing`);
    if (target.currency !== sub.currency) {
      throw new BillingError(
        'invalid_input',
        `plan "${target.planKey}" is billed in ${target.currency} but subscription ${sub.id} is in ${sub.currency}; cancel it and subscribe anew`,
      );
    }
    if (target.interval !== sub.interval) {
      throw new BillingError(
        'invalid_input',
        `plan "${target.planKey}" bills per ${target.interval} but subscription ${sub.id} per ${sub.interval}; changing the interval is not supported: cancel at period end and subscribe anew`,
      );
    }
    let after: Segment[];
    let effectiveAt: Instant;
    if (target.planKey === current.planKey && target.version === current.planVersion) {
      // Back to the plan in force: only a scheduled change can be undone.
      // Already there and nothing scheduled: a no-op, like finalizing an open invoice.
      if (before.every((s) => s.startsAt <= ref)) return { subscription: sub, segments: before, effectiveAt: ref, changed: false };
      after = truncateSegments(before.filter((s) => s.startsAt <= ref), sub.cancelAt);
      effectiveAt = ref;
    } else {
      const upgrade = dec(target.price).gt(dec(currentPlan.price));
      effectiveAt = resolveAt(sub, input.at ?? (upgrade ? 'now' : 'period-end'), opts.now);
      if (sub.cancelAt !== null && effectiveAt >= sub.cancelAt) {
        throw new BillingError('invalid_input', `subscription ${sub.id} ends at ${toIso(sub.cancelAt)}, before the change would take effect (${toIso(effectiveAt)})`);
      }
      // Segments from the effective instant on are replaced (a newer change supersedes a scheduled one).
      const kept = before.filter((s) => s.startsAt < effectiveAt).map((s) => ({ ...s }));
      if (kept.length > 0) kept[kept.length - 1].endsAt = effectiveAt;
      const seq = Math.max(0, ...kept.map((s) => s.seq)) + 1;
      after = [
        ...kept,
        { tenantId: sub.tenantId, subscriptionId: sub.id, seq, planKey: target.planKey, planVersion: target.version, startsAt: effectiveAt, endsAt: sub.cancelAt },
      ];
    }
    await saveSegments(trx, sub, before, after, opts.now);
    await trx('subscriptions').where({ tenant_id: sub.tenantId, id: sub.id }).update({ updated_at: opts.now });
    await writeAudit(trx, {
      at: opts.now,
      actor: opts.actor,
      tenantId: sub.tenantId,
      entity: 'subscription',
      entityId: sub.id,
      action: 'change',
      before: { subscription: sub, segments: before },
      after: { subscription: sub, segments: after, effectiveAt },
    });
    await emitEvent(trx, subscriptionChanged('change', sub, after, opts.now, effectiveAt));
    return { subscription: sub, segments: after, effectiveAt, changed: true };
  });
}

/**
 * End a subscription now or at period end (the default): cancel_at is set, segments after it
 * dropped and the last one closed there. Rescheduling a pending cancellation is allowed.
 */
export async function cancelSubscription(
  db: Db,
  input: { tenantId: string; at?: At },
  opts: Opts,
): Promise<Subscription> {
  return withTx(db, async (trx) => {
    const sub = await liveSubscription(trx, input.tenantId, opts.now);
    const before = await listSegments(trx, sub.tenantId, sub.id);
    const end = resolveAt(sub, input.at ?? 'period-end', opts.now);
    const immediate = end <= opts.now;
    const updated: Subscription = {
      ...sub,
      cancelAt: end,
      canceledAt: immediate ? end : null,
      status: immediate ? 'canceled' : sub.status,
    };
    const after = truncateSegments(before, end);
    await saveSegments(trx, sub, before, after, opts.now);
    await trx('subscriptions')
      .where({ tenant_id: sub.tenantId, id: sub.id })
      .update({ cancel_at: updated.cancelAt, canceled_at: updated.canceledAt, status: updated.status, updated_at: opts.now });
    await writeAudit(trx, {
      at: opts.now,
      actor: opts.actor,
      tenantId: sub.tenantId,
      entity: 'subscription',
      entityId: sub.id,
      action: 'cancel',
      before: { subscription: sub, segments: before },
      after: { subscription: updated, segments: after },
    });
    await emitEvent(trx, subscriptionChanged('cancel', updated, after, opts.now));
    return updated;
  });
}
