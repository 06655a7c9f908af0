import type { Knex } from 'knex';
import { applyOverride } from '../catalog/repository.js';
import type { Feature, PlanFeature } from '../domain/catalog.js';
import { dec, decStr, Decimal, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { microToDecimal, parseQuantity } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { preparedRaw } from '../storage/sql.js';
import { effectiveStatus } from '../subscriptions/lifecycle.js';
import { segmentAt } from '../subscriptions/timeline.js';
import { readState } from '../aggregate/watermark.js';
import type { Window } from '../aggregate/windows.js';
import { summaryPlusNewSql, wholeWindowSql } from './window-usage.js';
import { readTermsEpoch, termsCache, TermsGeneration, TERMS_EPOCH_SQL } from './terms-cache.js';

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

type Resolved =
  | { denial: CheckResult }
  | { feature: Feature; window: Window; terms: PlanFeature; windowsKey: string };

/** The terms in force for this tenant and feature now, or the denial that precedes usage. */
async function resolveTerms(gen: TermsGeneration, q: Knex | Knex.Transaction, input: CheckInput, now: Instant): Promise<Resolved> {
  const tenant = await gen.tenant(q, input.tenantId);
  const feature = await gen.feature(q, input.featureKey);
  if (!tenant) return { denial: denied('unknown_tenant') };
  if (!feature) return { denial: denied('unknown_feature') };
  const window = tenant.timeline.windowAt(now);
  const sub = window.subscription;
  // Trialing and past-due subscriptions keep their plan's terms; only a live one grants any.
  if (!sub || effectiveStatus(sub, now) === 'canceled') return { denial: denied('no_active_subscription') };
  const segment = segmentAt(tenant.segments.get(sub.id) ?? [], now);
  const plan = segment ? await gen.plan(q, segment.planKey, segment.planVersion) : null;
  if (!plan) return { denial: denied('no_active_subscription') };
  const planFeature = plan.features[feature.key];
  if (!planFeature) return { denial: denied('feature_not_in_plan') };
  const terms = applyOverride(planFeature, tenant.overrides.get(feature.key));
  if (!terms.enabled) return { denial: { ...denied('feature_disabled'), hardStop: terms.hardStop } };
  if (feature.type === 'boolean') {
    return { denial: { allowed: true, remaining: null, reason: 'within_plan', hardStop: false, used: '0', included: null, limit: null } };
  }
  return { feature, window, terms, windowsKey: tenant.windowsKey };
}

/**
 * Per handle: the aggregate watermark it saw last (-1: none), the next check's guess, and the
 * tenant × feature pairs whose summaries could not be trusted at it (re-cut since, new, a hole
 * open, a unique set not filled yet), which read their events directly until such a read
 * finds them trusted or the watermark moves.
 */
const aggregateSeen = new WeakMap<Db, { watermark: number; untrusted: Set<string> }>();
const MAX_UNTRUSTED = 10_000;

type UsedRow = { epoch: number | string; watermark: number | string | null; quantity: string | null };

/**
 * The window's usage of the feature and the terms epoch, in one statement: the summary plus
 * the events not aggregated yet when it can be trusted (window-usage.ts), else every event of
 * the window. A second statement when an aggregate run moved the watermark since this
 * handle's last check, or the tenant's summaries are being re-cut.
 */
async function readUsed(
  db: Db,
  q: Knex | Knex.Transaction,
  tenantId: string,
  r: { feature: Feature; window: Window; windowsKey: string },
): Promise<{ used: Decimal; epoch: number }> {
  const group = { tenantId, start: r.window.start, end: r.window.end };
  const first = <T>(res: any): T => (db.dialect === 'pg' ? res.rows : res)[0];
  let state = aggregateSeen.get(db);
  if (!state) {
    // A handle's first check (every `billing check` process): ask for the watermark first,
    // so that even the first answer can come from the summary.
    aggregateSeen.set(db, (state = { watermark: (await readState(q)).watermark ?? -1, untrusted: new Set() }));
  }
  const seen = (row: UsedRow) => {
    const w = row.watermark === null ? -1 : Number(row.watermark);
    if (w !== state.watermark) state.untrusted.clear();
    state.watermark = w;
    return w;
  };
  const groupKey = `${tenantId}\u0000${r.feature.key}`;
  let guess = state.untrusted.has(groupKey) ? -1 : state.watermark;
  for (let attempt = 0; guess >= 0 && attempt < 2; attempt++) {
    const fast = summaryPlusNewSql(db, r.feature, group, { windowsKey: r.windowsKey, watermark: guess });
    const row = first<UsedRow & { ok: number | string }>(
      await preparedRaw(db, q, `SELECT ${TERMS_EPOCH_SQL} AS epoch, u.* FROM (${fast.sql}) u`, fast.bindings),
    );
    if (Number(row.ok) === 1) return { used: microToDecimal(row.quantity ?? '0'), epoch: Number(row.epoch) };
    const now = seen(row);
    if (now === guess) {
      // The watermark held, so something else is untrusted: read the events from now on.
      if (state.untrusted.size >= MAX_UNTRUSTED) state.untrusted.clear();
      state.untrusted.add(groupKey);
      break;
    }
    guess = now;
  }
  const whole = wholeWindowSql(db, r.feature, group, state.watermark < 0 ? null : r.windowsKey);
  const row = first<UsedRow & { trusted: number | string }>(
    await preparedRaw(db, q, `SELECT ${TERMS_EPOCH_SQL} AS epoch, u.* FROM (${whole.sql}) u`, whole.bindings),
  );
  seen(row);
  if (Number(row.trusted) === 1) state.untrusted.delete(groupKey);
  return { used: microToDecimal(row.quantity ?? '0'), epoch: Number(row.epoch) };
}

function decide(terms: PlanFeature, used: Decimal, requested: Decimal): CheckResult {
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

/** Past this many epoch changes during one check, answer from the last read (see below). */
const MAX_ATTEMPTS = 3;

/**
 * Can this tenant use this feature now (DESIGN.md §6)? Usage is the current period's, read
 * from usage_events so that events not yet aggregated count. The plan is the segment in force
 * now, after the tenant's quota override. Denials are results, not errors.
 *
 * Terms (tenant, subscriptions, plan, overrides, features) come from a per-handle cache that
 * is exact: every change to them moves terms_epoch (by trigger), and each check reads the
 * epoch in its usage query; a different epoch drops the cache and the check runs again. So
 * a steady-state check is one statement. Inside a caller's transaction nothing is cached
 * (the transaction may see terms no one else does).
 */
export async function checkEntitlement(
  db: Db,
  input: CheckInput,
  opts: { now: Instant; trx?: Knex.Transaction },
): Promise<CheckResult> {
  const requested = parseRequested(input.quantity);
  if (opts.trx) {
    const r = await resolveTerms(new TermsGeneration(null), opts.trx, input, opts.now);
    return 'denial' in r ? r.denial : decide(r.terms, (await readUsed(db, opts.trx, input.tenantId, r)).used, requested);
  }
  const cache = termsCache(db);
  for (let attempt = 1; ; attempt++) {
    const gen = await cache.current();
    const r = await resolveTerms(gen, db.knex, input, opts.now);
    const read = 'denial' in r ? { used: null, epoch: await readTermsEpoch(db, db.knex) } : await readUsed(db, db.knex, input.tenantId, r);
    // Terms changing under every attempt: the last answer is as good as any taken during
    // those changes, which a caller could not order against this check anyway.
    if (read.epoch === gen.epoch || attempt >= MAX_ATTEMPTS) {
      return 'denial' in r ? r.denial : decide(r.terms, read.used!, requested);
    }
    cache.advance(read.epoch);
  }
}
