import type { Knex } from 'knex';
import { dec } from '../domain/decimal.js';
import type { Pricing } from '../domain/catalog.js';
import type { Instant } from '../domain/period.js';
import { startedPeriods } from '../subscriptions/timeline.js';
import { featureTerms, rateCharge, type RatedCharge } from './charge.js';
import { carriedUnits, rolloverSource } from './rollover.js';
import { microToString } from '../domain/quantity.js';
import { billingPeriodOf, usageValue } from '../aggregate/value.js';
import type { ChargeId } from './repository.js';
import { loadTenantTerms, termsForPeriod, type PlanLookup } from './tenant-terms.js';

type Q = Knex | Knex.Transaction;

const TENANTS_PER_BATCH = 200;

/** 'plan@version' → feature keys whose pricing has a minimum spend. */
async function versionsWithMinimum(q: Q): Promise<Map<string, string[]>> {
  const out = new Map<string, string[]>();
  const rows = await q('plan_features').select('plan_key', 'version', 'feature_key', 'overage').whereNotNull('overage');
  for (const r of rows) {
    const p = JSON.parse(r.overage) as Pricing;
    if (p.minimum === null || p.minimum === undefined || !dec(p.minimum).gt(0)) continue;
    const k = `${r.plan_key}@${r.version}`;
    out.set(k, [...(out.get(k) ?? []), r.feature_key]);
  }
  return out;
}

/**
 * Charges for features with a minimum spend in periods without any usage (the summary pass
 * never sees them). A period charged after its end stays as it is; the open period, and a
 * closed one last charged while open, is re-rated so it follows the terms it ends with.
 */
export async function rateMinimums(
  q: Q,
  opts: { now: Instant; tenantId?: string },
  plans: PlanLookup,
  write: (charges: RatedCharge[], remove?: ChargeId[]) => Promise<void>,
): Promise<void> {
  const minimums = await versionsWithMinimum(q);
  if (minimums.size === 0) return;
  const planKeys = [...new Set([...minimums.keys()].map((k) => k.slice(0, k.lastIndexOf('@'))))];
  const features = [...new Set([...minimums.values()].flat())];
  const segs = await q('subscription_segments')
    .distinct('tenant_id', 'subscription_id', 'plan_key', 'plan_version')
    .whereIn('plan_key', planKeys)
    .modify((b) => {
      if (opts.tenantId !== undefined) b.where('tenant_id', opts.tenantId);
    })
    .orderBy('tenant_id');
  const wanted = new Map<string, Set<string>>(); // tenant → subscriptions ever on a minimum plan
  for (const s of segs) {
    if (!minimums.has(`${s.plan_key}@${s.plan_version}`)) continue;
    if (!wanted.has(s.tenant_id)) wanted.set(s.tenant_id, new Set());
    wanted.get(s.tenant_id)!.add(s.subscription_id);
  }
  const tenantIds = [...wanted.keys()];
  for (let i = 0; i < tenantIds.length; i += TENANTS_PER_BATCH) {
    const batch = tenantIds.slice(i, i + TENANTS_PER_BATCH);
    const [terms, summaries, charges] = await Promise.all([
      loadTenantTerms(q, batch),
      q('usage_summaries')
        .leftJoin('features as f', 'f.key', 'usage_summaries.feature_key')
        .select('tenant_id', 'feature_key', 'period_start', 'event_count', 'f.aggregation', q.raw('CAST(quantity AS TEXT) AS quantity_text'))
        .whereIn('tenant_id', batch)
        .whereIn('feature_key', features),
      q('rated_charges')
        .select('tenant_id', 'feature_key', 'period_start', 'period_end', 'rated_at')
        .whereIn('tenant_id', batch)
        .whereIn('feature_key', features)
        .whereNull('summary_quantity'),
    ]);
    const key = (t: string, f: string, start: unknown) => `${t}\u0000${f}\u0000${Number(start)}`;
    const withUsage = new Set(summaries.map((r) => key(r.tenant_id, r.feature_key, r.period_start)));
    const summaryByKey = new Map(summaries.map((r) => [key(r.tenant_id, r.feature_key, r.period_start), r]));
    // Charges that are final: rated after their period ended.
    const final = new Map(
      charges.filter((r) => Number(r.rated_at) >= Number(r.period_end)).map((r) => [key(r.tenant_id, r.feature_key, r.period_start), Number(r.period_end)]),
    );
    const out: RatedCharge[] = [];
    const expected = new Set<string>();
    for (const tenantId of batch) {
      const t = terms.get(tenantId)!;
      for (const sub of t.subscriptions) {
        if (!wanted.get(tenantId)!.has(sub.id)) continue;
        for (const period of startedPeriods(sub, opts.now)) {
          const pt = await termsForPeriod(t, sub, period, plans);
          if (!pt.ok) continue;
          for (const featureKey of minimums.get(`${pt.plan.planKey}@${pt.plan.version}`) ?? []) {
            const k = key(tenantId, featureKey, period.start);
            expected.add(k);
            if (withUsage.has(k)) continue;
            const closedAndCharged = final.get(k) === period.end && period.end <= opts.now;
            if (closedAndCharged) continue;
            const chargeKey = { tenantId, featureKey, periodStart: period.start, periodEnd: period.end };
            // Carried units are part of the terms a charge states, usage or not (rate/rollover.ts).
            const pf = featureTerms(pt.plan, featureKey, t.overrides.get(featureKey));
            const source = await rolloverSource(t, sub, period, featureKey, pf, plans);
            const prev = source && summaryByKey.get(key(tenantId, featureKey, source.period.start));
            const prevUsed = prev ? usageValue(prev.aggregation ?? 'sum', prev.quantity_text, Number(prev.event_count), billingPeriodOf({ start: source.period.start, subscription: sub })) : null;
            const detail = pf?.rollover ? { carried: carriedUnits(pf, source, microToString(prevUsed ?? '0')) } : undefined;
            out.push(rateCharge(chargeKey, null, pt, t.overrides.get(featureKey), opts.now, t.grants, detail));
          }
        }
      }
    }
    // A minimum charge no longer owed (moved to a plan without one before the period ended)
    // goes away; final charges stay (their terms can no longer change).
    const stale = charges
      .filter((r) => Number(r.rated_at) < Number(r.period_end) && !expected.has(key(r.tenant_id, r.feature_key, r.period_start)))
      .map((r) => ({ tenantId: r.tenant_id, featureKey: r.feature_key, periodStart: Number(r.period_start) }));
    await write(out, stale);
  }
}
