import { byDimension } from './dimension.js';
import type { Feature, PlanFeature, QuotaOverride } from '../domain/catalog.js';
import { microToString } from '../domain/quantity.js';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { dimensionUsage, eventAmounts, resetWindowsUsage, usageByTenant, wholeWindowsUsage, type UsageByWindow } from '../aggregate/usage.js';
import { chargesEveryEvent } from './rate.js';
import { windowsKey, type Window } from '../aggregate/windows.js';
import type { UnitGrant } from './grants.js';
import { featureTerms, rateCharge, type ChargeDetail, type PeriodTerms, type RatedCharge } from './charge.js';
import { resetWindows } from './reset.js';
import { carriedUnits, rolloverSource, type RolloverSource } from './rollover.js';
import { CatalogCache, termsForPeriod, type TenantTerms } from './tenant-terms.js';

/**
 * Why a window is rated, which decides the usage it is rated on:
 * - `report`: a period's whole usage (summaries plus newer events, aggregate/usage.ts);
 * - `estimate`: only the usage up to `asOf` (events after it, a backfill or a replay with
 *   --now, are not part of the run rate).
 * Invoices and previews are priced by `ratePeriod` (period.ts): they bill due − billed before.
 */
export type WindowContext = { kind: 'report' } | { kind: 'estimate'; asOf: Instant };

export interface RatedWindow {
  tenantId: string;
  window: Window;
  terms: PeriodTerms;
  /** Rated charges by feature key, in key order. */
  charges: RatedCharge[];
  /** Micro-units used per feature (absent: no usage). */
  usedMicro: Map<string, string>;
  /** Per feature: units carried over (rollover), each reset window's usage, a percentage feature's event amounts. */
  details: Map<string, ChargeDetail>;
  /** Percentage features' event amounts (micro-units, time order), what their charges price. */
  eventsMicro: Map<string, string[]>;
}

/**
 * A window's charges: every enabled metered feature of the plan in force at its end (a minimum
 * applies without usage) and every feature with usage, each priced by `rateCharge`.
 */
export function rateWindowCharges(
  tenantId: string,
  window: Window,
  terms: PeriodTerms,
  usedMicro: Map<string, string>,
  features: Map<string, Feature>,
  overrides: Map<string, QuotaOverride>,
  now: Instant,
  grants?: readonly UnitGrant[],
  details?: ReadonlyMap<string, ChargeDetail>,
): RatedCharge[] {
  const keys = new Set([...usedMicro.keys()]);
  if (terms.ok) {
    for (const [key, pf] of Object.entries(terms.plan.features)) {
      if (pf.enabled && features.get(key)?.type !== 'boolean') keys.add(key);
    }
  }
  return [...keys]
    .sort()
    .map((featureKey) =>
      rateCharge({ tenantId, featureKey, periodStart: window.start, periodEnd: window.end }, usedMicro.get(featureKey) ?? null, terms, overrides.get(featureKey), now, grants, details?.get(featureKey)),
    );
}

/** Rate tenants' windows (reports, history, estimates), not persisted. */
export async function rateWindows(
  db: Db,
  terms: Map<string, TenantTerms>,
  windows: Map<string, Window[]>,
  now: Instant,
  context: WindowContext = { kind: 'report' },
): Promise<RatedWindow[]> {
  const cache = new CatalogCache();
  const features = await cache.allFeatures(db.knex);
  const usage = await windowUsage(db, terms, windows, [...features.values()], context);
  const plans = cache.lookup(db.knex);
  const pending: Array<{ tenantId: string; w: Window; pt: PeriodTerms; sources: Map<string, { source: RolloverSource; terms: PlanFeature }> }> = [];
  const previous = new Map<string, Window[]>(); // windows rollover reads beyond those asked for
  for (const [tenantId, ws] of windows) {
    const t = terms.get(tenantId)!;
    for (const w of ws) {
      const pt = await termsForPeriod(t, w.subscription, w, plans);
      const sources = new Map<string, { source: RolloverSource; terms: PlanFeature }>();
      const plan = pt.ok ? pt.plan : null;
      for (const featureKey of Object.keys(plan?.features ?? {})) {
        const pf = featureTerms(plan!, featureKey, t.overrides.get(featureKey));
        const source = await rolloverSource(t, w.subscription, w, featureKey, pf, plans);
        if (!source) continue;
        sources.set(featureKey, { source, terms: pf! });
        const list = previous.get(tenantId) ?? [];
        if (!usage.get(tenantId)?.has(source.period.start) && !list.some((x) => x.start === source.period.start)) {
          previous.set(tenantId, [...list, { ...source.period, subscription: w.subscription }]);
        }
      }
      pending.push({ tenantId, w, pt, sources });
    }
  }
  // The previous periods are whole: their usage is read like a report's (aggregate/usage.ts).
  const prevUsage = previous.size > 0 ? await windowUsage(db, terms, previous, [...features.values()], { kind: 'report' }) : new Map<string, UsageByWindow>();
  // Features with reset windows: each window's usage (cut at the estimate's instant), in one read.
  const until = context.kind === 'estimate' ? context.asOf + 1 : Infinity;
  const windowed = pending.flatMap(({ tenantId, w, pt }) =>
    Object.entries(pt.ok ? pt.plan.features : {})
      .filter(([key, pf]) => pf.resetEvery && features.has(key))
      .map(([key, pf]) => ({
        tenantId,
        start: w.start,
        feature: features.get(key)!,
        windows: resetWindows(w, pf.resetEvery!).map((x) => ({ start: x.start, end: Math.max(x.start, Math.min(x.end, until)) })),
        subscriptionId: w.subscription?.id ?? null,
      })),
  );
  const windowsUsed = await resetWindowsUsage(db, windowed);
  const out: RatedWindow[] = [];
  for (const { tenantId, w, pt, sources } of pending) {
    const t = terms.get(tenantId)!;
    const usedMicro = usage.get(tenantId)?.get(w.start) ?? new Map<string, string>();
    const details = new Map<string, ChargeDetail>();
    for (const [featureKey, { source, terms: pf }] of sources) {
      const prev = usage.get(tenantId)?.get(source.period.start) ?? prevUsage.get(tenantId)?.get(source.period.start);
      details.set(featureKey, { carried: carriedUnits(pf, source, microToString(prev?.get(featureKey) ?? '0')) });
    }
    windowed.forEach((x, i) => {
      if (x.tenantId === tenantId && x.start === w.start) details.set(x.feature.key, { ...details.get(x.feature.key), windowsUsed: windowsUsed[i].map(microToString) });
    });
    const eventsMicro = await percentageEvents(db, tenantId, w, pt, usedMicro, t.overrides, context);
    for (const [key, events] of eventsMicro) details.set(key, { ...details.get(key), eventsMicro: events });
    for (const [key, values] of await valuesUsed(db, tenantId, w, pt, usedMicro, features, context)) details.set(key, { ...details.get(key), valuesUsed: values });
    const charges = rateWindowCharges(tenantId, w, pt, usedMicro, features, t.overrides, now, t.grants, details);
    out.push({ tenantId, window: w, terms: pt, charges, usedMicro, details, eventsMicro });
  }
  return out;
}

/**
 * The events of a window's percentage features with usage (up to `asOf` for an estimate).
 * A window past retention prices the events left.
 */
async function percentageEvents(
  db: Db,
  tenantId: string,
  w: Window,
  terms: PeriodTerms,
  usedMicro: Map<string, string>,
  overrides: Map<string, QuotaOverride>,
  context: WindowContext,
): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  if (!terms.ok) return out;
  const end = context.kind === 'estimate' ? Math.max(w.start, Math.min(w.end, context.asOf + 1)) : w.end;
  for (const key of [...usedMicro.keys()].sort()) {
    const pf = featureTerms(terms.plan, key, overrides.get(key));
    if (pf && chargesEveryEvent(pf)) out.set(key, await eventAmounts(db.knex, tenantId, key, { start: w.start, end }));
  }
  return out;
}

/**
 * Usage per value of a window's features priced by dimension with usage (up to `asOf` for an
 * estimate), from the window's events (aggregate/usage.ts `dimensionUsage`).
 */
async function valuesUsed(
  db: Db,
  tenantId: string,
  w: Window,
  terms: PeriodTerms,
  usedMicro: Map<string, string>,
  features: Map<string, Feature>,
  context: WindowContext,
): Promise<Map<string, Map<string, string>>> {
  const out = new Map<string, Map<string, string>>();
  if (!terms.ok) return out;
  const end = context.kind === 'estimate' ? Math.max(w.start, Math.min(w.end, context.asOf + 1)) : w.end;
  for (const key of [...usedMicro.keys()].sort()) {
    const pf = terms.plan.features[key];
    const feature = features.get(key);
    if (feature && byDimension(pf)) out.set(key, await dimensionUsage(db, tenantId, feature, pf.dimension, { start: w.start, end }));
  }
  return out;
}

/** Whole windows: tenants with many events from their summaries (aggregate/usage.ts). Windows cut short: every event. */
function windowUsage(
  db: Db,
  terms: Map<string, TenantTerms>,
  windows: Map<string, Window[]>,
  features: Feature[],
  context: WindowContext,
): Promise<Map<string, UsageByWindow>> {
  if (context.kind === 'estimate') {
    const until = context.asOf;
    const cut = new Map([...windows].map(([id, ws]) => [id, ws.map((w) => ({ ...w, end: Math.max(w.start, Math.min(w.end, until + 1)) }))]));
    return usageByTenant(db, cut, features);
  }
  const keys = new Map([...windows.keys()].map((id) => [id, windowsKey(terms.get(id)?.subscriptions)]));
  return wholeWindowsUsage(db, windows, features, keys);
}

export function currencyOf(r: RatedWindow): string {
  return r.terms.ok ? r.terms.plan.currency : r.terms.currency;
}
