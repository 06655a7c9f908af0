import type { Knex } from 'knex';
import { applyOverride } from '../catalog/repository.js';
import type { Feature, PlanFeature, QuotaOverride } from '../domain/catalog.js';
import { dec, decStr, Decimal, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { toIso, type Instant, type Period } from '../domain/period.js';
import { microToDecimal, microToString, parseQuantity } from '../domain/quantity.js';
import { handleOn, type Db } from '../storage/db.js';
import { effectiveStatus } from '../subscriptions/lifecycle.js';
import { segmentAt, segmentAtPeriodEnd } from '../subscriptions/timeline.js';
import type { Segment, Subscription } from '../subscriptions/repository.js';
import { carriedUnits, previousPeriod, withCarried, type RolloverSource } from '../rate/rollover.js';
import { dimensionUsage, resetWindowsUsage, usageOf, wholeWindowsUsage } from '../aggregate/usage.js';
import { byDimension, valueTerms } from '../rate/dimension.js';
import { resetWindows, windowedDraws, windowsBillable } from '../rate/reset.js';
import type { Window } from '../aggregate/windows.js';
import { drawGrants, grantBalance, grantLive, grantOrder, type UnitGrant } from '../rate/grants.js';
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
  /** Live grants of units counted in the allowance (only when there are any), in drawing order. */
  grants?: CheckGrant[];
  /** Units carried over from the previous period, counted in included and limit (only on a feature with rollover). */
  carried?: string;
  /** A feature with reset windows: the window the check counts usage in (ISO instants). */
  window?: { start: string; end: string };
  /** A feature priced by dimension: the metadata field and the value checked (its entry's terms, its usage). */
  dimension?: { field: string; value: string };
}

/** The reset window a check counts in, its usage, and what the period's earlier windows left billable. */
interface ResetState {
  window: { start: number; end: number };
  used: Decimal;
  earlierBillable: Decimal;
  /** Every window's usage so far, in order (the grants' draws). */
  windowsUsed: string[];
}

/** A grant counted in a check: its balance this period, what usage so far draws, what is left. */
export interface CheckGrant {
  id: string;
  balance: string;
  drawn: string;
  remaining: string;
  /** ISO instant; null: never. */
  expires: string | null;
}

export interface CheckInput {
  tenantId: string;
  featureKey: string;
  /** Units this request would use (default 1). */
  quantity?: string;
  /** A feature priced by dimension (DESIGN.md §14): the value of its metadata field to check. */
  dimension?: string;
  /** The metadata of the event about to be recorded (consume): its field gives the value when `dimension` is absent. */
  metadata?: Record<string, unknown>;
  /** Alerts: a feature priced by dimension answers for all its values (its total usage; no included or limit). */
  wholeFeature?: boolean;
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
  | { feature: Feature; window: Window; terms: PlanFeature; windowsKey: string; grants: UnitGrant[]; rollover: RolloverSource | null; dimension?: { field: string; value: string } };

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
  const period = { start: window.start, end: window.end };
  if (byDimension(terms) && !input.wholeFeature) {
    // Each value is its own entitlement: its entry's terms on its own usage (no grants or rollover yet).
    // An event being consumed checks the value it carries ('*' without the field, as it is billed).
    const carried = input.metadata ? input.metadata[terms.dimension] : undefined;
    const value = input.dimension ?? (input.metadata ? (carried === undefined || carried === null || carried === '' ? '*' : String(carried)) : undefined);
    if (value === undefined) {
      throw new BillingError('usage', `${feature.key} is priced per value of its events' "${terms.dimension}": give the value to check (--dimension VALUE)`);
    }
    const dimension = { field: terms.dimension, value };
    return { feature, window, terms: valueTerms(terms, value), windowsKey: tenant.windowsKey, grants: [], rollover: null, dimension };
  }
  if (input.dimension !== undefined && !byDimension(terms)) throw new BillingError('usage', `${feature.key} is not priced by dimension: check it without a dimension value (--dimension)`);
  const grants = tenant.grants.filter((g) => g.featureKey === feature.key && grantLive(g, period) && grantBalance(g, period).gt(0)).sort(grantOrder);
  return { feature, window, terms, windowsKey: tenant.windowsKey, grants, rollover: await rolloverOf(gen, q, tenant, sub, period, feature.key, terms) };
}

/** Where the period's carried units come from (rate/rollover.ts's rule, on the cached terms). */
async function rolloverOf(
  gen: TermsGeneration,
  q: Knex | Knex.Transaction,
  tenant: { segments: Map<string, Segment[]>; overrides: Map<string, QuotaOverride> },
  sub: Subscription,
  period: Period,
  featureKey: string,
  terms: PlanFeature,
): Promise<RolloverSource | null> {
  if (!terms.rollover || terms.included === null) return null;
  const prev = previousPeriod(sub, period);
  const segment = prev && segmentAtPeriodEnd(tenant.segments.get(sub.id) ?? [], prev);
  const plan = segment ? await gen.plan(q, segment.planKey, segment.planVersion) : null;
  const pf = plan?.features[featureKey];
  const included = pf ? applyOverride(pf, tenant.overrides.get(featureKey)).included : null;
  return prev && included !== null ? { period: prev, included } : null;
}

/** Units carried into the period: the previous period's usage read like the current one's. */
async function carriedOf(db: Db, tenantId: string, r: { feature: Feature; window: Window; windowsKey: string; terms: PlanFeature; rollover: RolloverSource | null }): Promise<string | undefined> {
  if (!r.terms.rollover || r.terms.included === null) return undefined;
  if (!r.rollover) return '0';
  // A whole, ended period: read as reports read one, from its summary once past retention.
  const window = { ...r.rollover.period, subscription: r.window.subscription };
  const usage = await wholeWindowsUsage(db, new Map([[tenantId, [window]]]), [r.feature], new Map([[tenantId, r.windowsKey]]));
  return carriedUnits(r.terms, r.rollover, microToString(usage.get(tenantId)?.get(window.start)?.get(r.feature.key) ?? '0'));
}

/** The window's usage of the feature (aggregate's read model) and the terms epoch, read in one statement. */
async function readUsed(db: Db, tenantId: string, r: { feature: Feature; window: Window; windowsKey: string }): Promise<{ used: Decimal; epoch: number }> {
  const u = await usageOf(db, { tenantId, ...r }, { alongside: TERMS_EPOCH_SQL });
  return { used: microToDecimal(u.quantity ?? '0'), epoch: Number(u.alongside) };
}

function decide(r: { terms: PlanFeature; window: Window; grants: UnitGrant[] }, periodUsed: Decimal, requested: Decimal, carried?: string, reset?: ResetState): CheckResult {
  // Reset windows: usage, included and limit are the current window's (rate/reset.ts).
  const used = reset ? reset.used : periodUsed;
  // Carried units raise the allowance and an explicit limit, before grants (rate/rollover.ts).
  const terms = carried === undefined ? r.terms : { ...withCarried(r.terms, carried), limit: r.terms.limit === null ? null : decStr(dec(r.terms.limit).plus(carried)) };
  const period = { start: r.window.start, end: r.window.end };
  // Live grants' balance tops up the allowance, and an explicit limit with it (rate/grants.ts).
  // With reset windows, what earlier windows' billable usage drew is gone.
  const balance = terms.included === null ? ZERO : r.grants.reduce((s, g) => s.plus(grantBalance(g, period)), ZERO);
  const granted = reset ? Decimal.max(ZERO, balance.minus(reset.earlierBillable)) : balance;
  const included = terms.included === null ? null : dec(terms.included).plus(granted);
  // The limit defaults to the allowance (DESIGN.md §3); it denies only under a hard stop.
  const limit = terms.limit !== null ? dec(terms.limit).plus(granted) : included;
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
    ...(terms.included !== null && r.grants.length > 0 ? { grants: checkGrants(r.grants, period, terms, used, reset) } : {}),
    ...(carried !== undefined ? { carried } : {}),
    ...(reset ? { window: { start: toIso(reset.window.start), end: toIso(reset.window.end) } } : {}),
  };
}

function checkGrants(grants: UnitGrant[], period: { start: number; end: number }, terms: PlanFeature, used: Decimal, reset?: ResetState): CheckGrant[] {
  const drawn = reset
    ? windowedDraws(grants, grants[0].featureKey, period, terms, reset.windowsUsed)
    : drawGrants(grants, grants[0].featureKey, period, terms.included, decStr(used));
  const draws = new Map(drawn.map((d) => [d.grantId, d.quantity]));
  return grants.map((g) => {
    const balance = grantBalance(g, period);
    const drawn = dec(draws.get(g.id) ?? '0');
    return { id: g.id, balance: decStr(balance), drawn: decStr(drawn), remaining: decStr(balance.minus(drawn)), expires: g.expiresAt === null ? null : toIso(g.expiresAt) };
  });
}

/**
 * A feature with reset windows: the window containing `now` (at a boundary, the new one) and
 * the usage of each window of the period up to it, read from their events (aggregate/usage.ts).
 */
async function resetStateOf(db: Db, tenantId: string, r: { feature: Feature; window: Window; terms: PlanFeature }, now: Instant): Promise<ResetState | undefined> {
  const every = r.terms.resetEvery;
  if (!every) return undefined;
  const windows = resetWindows({ start: r.window.start, end: r.window.end }, every).filter((w) => w.start <= now);
  const [micro] = await resetWindowsUsage(db, [{ tenantId, feature: r.feature, windows, subscriptionId: r.window.subscription?.id ?? null }]);
  const windowsUsed = micro.map(microToString);
  return {
    window: windows[windows.length - 1],
    used: dec(windowsUsed[windowsUsed.length - 1]),
    earlierBillable: dec(windowsBillable(r.terms.included, windowsUsed.slice(0, -1))),
    windowsUsed,
  };
}

/** A feature priced by dimension: the value's usage of the window, from its events; else the feature's. */
async function usedOf(db: Db, tenantId: string, r: { feature: Feature; window: Window; dimension?: { field: string; value: string } }, featureUsed: Decimal): Promise<Decimal> {
  if (!r.dimension) return featureUsed;
  const values = await dimensionUsage(db, tenantId, r.feature, r.dimension.field, r.window);
  return microToDecimal(values.get(r.dimension.value) ?? '0');
}

function withDimension(c: CheckResult, r: { dimension?: { field: string; value: string } }): CheckResult {
  return r.dimension ? { ...c, dimension: r.dimension } : c;
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
    if ('denial' in r) return r.denial;
    const h = handleOn(db, opts.trx);
    const used = await usedOf(h, input.tenantId, r, (await readUsed(h, input.tenantId, r)).used);
    return withDimension(decide(r, used, requested, await carriedOf(h, input.tenantId, r), await resetStateOf(h, input.tenantId, r, opts.now)), r);
  }
  const cache = termsCache(db);
  for (let attempt = 1; ; attempt++) {
    const gen = await cache.current();
    const r = await resolveTerms(gen, db.knex, input, opts.now);
    const read = 'denial' in r ? { used: null, epoch: await readTermsEpoch(db) } : await readUsed(db, input.tenantId, r);
    // Terms changing under every attempt: the last answer is as good as any taken during
    // those changes, which a caller could not order against this check anyway.
    if (read.epoch === gen.epoch || attempt >= MAX_ATTEMPTS) {
      if ('denial' in r) return r.denial;
      const used = await usedOf(db, input.tenantId, r, read.used!);
      return withDimension(decide(r, used, requested, await carriedOf(db, input.tenantId, r), await resetStateOf(db, input.tenantId, r, opts.now)), r);
    }
    cache.advance(read.epoch);
  }
}
