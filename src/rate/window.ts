import type { Feature, QuotaOverride } from '../domain/catalog.js';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { eventAmounts, usageByTenant, wholeWindowsUsage, type UsageByWindow } from '../aggregate/usage.js';
import { windowsKey, type Window } from '../aggregate/windows.js';
import type { UnitGrant } from './grants.js';
import { featureTerms, rateCharge, type PeriodTerms, type RatedCharge } from './charge.js';
import { chargesEveryEvent } from './rate.js';
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
  eventsMicro?: Map<string, string[]>,
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
      rateCharge(
        { tenantId, featureKey, periodStart: window.start, periodEnd: window.end },
        usedMicro.get(featureKey) ?? null,
        terms,
        overrides.get(featureKey),
        now,
        grants,
        eventsMicro?.has(featureKey) ? { eventsMicro: eventsMicro.get(featureKey) } : undefined,
      ),
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
  const out: RatedWindow[] = [];
  for (const [tenantId, ws] of windows) {
    const t = terms.get(tenantId)!;
    for (const w of ws) {
      const usedMicro = usage.get(tenantId)?.get(w.start) ?? new Map<string, string>();
      const pt = await termsForPeriod(t, w.subscription, w, plans);
      const eventsMicro = await percentageEvents(db, tenantId, w, pt, usedMicro, t.overrides, context);
      const charges = rateWindowCharges(tenantId, w, pt, usedMicro, features, t.overrides, now, t.grants, eventsMicro);
      out.push({ tenantId, window: w, terms: pt, charges, usedMicro, eventsMicro });
    }
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
