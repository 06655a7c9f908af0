import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { asText, withTx } from '../storage/sql.js';
import { governingSubscription } from '../subscriptions/timeline.js';
import { microToString } from '../domain/quantity.js';
import { billingPeriodOf, usageValue } from '../aggregate/value.js';
import type { Aggregation } from '../domain/catalog.js';
import { featureTerms, rateCharge, type RatedCharge, type UsageDetail } from './charge.js';
import { carriedUnits, rolloverSource } from './rollover.js';
import { resetWindows } from './reset.js';
import { chargesEveryEvent } from './rate.js';
import { dimensionUsage, eventAmounts, resetWindowsUsage } from '../aggregate/usage.js';
import { byDimension } from './dimension.js';
import { rateMinimums } from './minimums.js';
import { deleteCharges, upsertCharges, type ChargeId } from './repository.js';
import { CatalogCache, loadTenantTerms, termsForPeriod, type TenantTerms } from './tenant-terms.js';

export interface OverageOptions {
  now: Instant;
  tenantId?: string;
  /** Called with every charge written (the CLI's --json rows). */
  onCharge?: (charge: RatedCharge) => void;
  /** Summaries rated per transaction. */
  pageSize?: number;
}

export interface OverageResult {
  /** Charges written. */
  rated: number;
  /** Of which: minimum spend charged on a period without usage. */
  minimums: number;
  /** Of which: zero charges for usage with no plan to price it (no subscription, feature not in plan). */
  unrated: number;
  /** Minimum charges no longer owed (the plan at period end has none), open or not yet final. */
  removed: number;
}

interface PendingSummary {
  tenant_id: string;
  feature_key: string;
  period_start: number | string;
  period_end: number | string;
  subscription_id: string | null;
  quantity: string;
  /** The summary of the subscription's previous period (rollover), if any. */
  prev_quantity: string | null;
  event_count: number | string;
  aggregation: Aggregation | null;
  prev_event_count: number | string | null;
}

/**
 * Summaries to (re)rate: never rated, still open at `now` (terms may change until the period
 * ends), last rated before the period ended (a plan change may have come after that run),
 * changed since rated (late usage, a period cut short), or with a unit grant live in it added
 * or voided since rated (grants may be back-dated). Closed, unchanged periods rated after
 * their end keep their charge, so an hourly run only touches what moved. An average also
 * moves with its event count alone (a late zero): re-rated when merged into since rated.
 */
function pendingSummaries(db: Db, opts: OverageOptions, after: [string, string, number] | null, limit: number) {
  return db
    .knex('usage_summaries as s')
    .leftJoin('rated_charges as c', (j) => {
      j.on('c.tenant_id', 's.tenant_id').andOn('c.feature_key', 's.feature_key').andOn('c.period_start', 's.period_start');
    })
    // The previous period's summary: what it left unused rolls over into this one.
    .leftJoin('usage_summaries as p', (j) => {
      j.on('p.tenant_id', 's.tenant_id').andOn('p.feature_key', 's.feature_key').andOn('p.period_end', 's.period_start').andOn('p.subscription_id', 's.subscription_id');
    })
    .leftJoin('features as f', 'f.key', 's.feature_key')
    .select('s.tenant_id', 's.feature_key', 's.period_start', 's.period_end', 's.subscription_id', 's.event_count', 'f.aggregation')
    .select('p.event_count AS prev_event_count')
    .select(asText(db, 's.quantity').wrap('(', ') AS quantity'))
    .select(asText(db, 'p.quantity').wrap('(', ') AS prev_quantity'))
    .where((w) =>
      w
        .whereNull('c.tenant_id')
        .orWhere('s.period_end', '>', opts.now)
        .orWhereRaw('c.rated_at < s.period_end')
        .orWhereRaw('c.period_end <> s.period_end')
        .orWhereNull('c.summary_quantity')
        .orWhereRaw('c.summary_quantity <> s.quantity')
        // New events since it was rated: with reset windows they may move the billable
        // quantity while the period's total (a max, say) stays.
        .orWhereRaw('s.computed_at > c.rated_at')
        // Late usage of the previous period changes what rolls over into this one.
        .orWhereRaw('p.computed_at > c.rated_at')
        .orWhereRaw("f.aggregation = 'avg' AND s.computed_at >= c.rated_at")
        .orWhereExists((g) =>
          g
            .from('unit_grants as g')
            .whereRaw('g.tenant_id = s.tenant_id AND g.feature_key = s.feature_key')
            .whereRaw('g.effective_at < s.period_end AND (g.expires_at IS NULL OR g.expires_at > s.period_start)')
            .whereRaw('(g.created_at > c.rated_at OR g.voided_at > c.rated_at)'),
        ),
    )
    .modify((b) => {
      if (opts.tenantId !== undefined) b.andWhere('s.tenant_id', opts.tenantId);
      if (after) b.andWhereRaw('(s.tenant_id, s.feature_key, s.period_start) > (?, ?, ?)', after);
    })
    .orderBy([{ column: 's.tenant_id' }, { column: 's.feature_key' }, { column: 's.period_start' }])
    .limit(limit) as unknown as Promise<PendingSummary[]>;
}

/**
 * The `billing overage` stage: rate every usage summary in scope on the plan in force at its
 * period end (after the tenant's quota override) and upsert rated_charges; then charge minimum
 * spends on periods without usage. Idempotent: a rerun writes identical rows (but rated_at).
 */
export async function runOverage(db: Db, opts: OverageOptions): Promise<OverageResult> {
  const pageSize = opts.pageSize ?? 1000;
  const cache = new CatalogCache();
  const plans = cache.lookup(db.knex);
  const features = await cache.allFeatures(db.knex);
  const result: OverageResult = { rated: 0, minimums: 0, unrated: 0, removed: 0 };
  const write = async (charges: RatedCharge[], remove: ChargeId[] = []) => {
    if (charges.length === 0 && remove.length === 0) return;
    await withTx(db, async (trx) => {
      await upsertCharges(trx, charges);
      await deleteCharges(trx, remove);
    });
    result.removed += remove.length;
    for (const c of charges) {
      result.rated++;
      if (c.summaryQuantity === null) result.minimums++;
      if ('unrated' in c.priceSnapshot) result.unrated++;
      opts.onCharge?.(c);
    }
  };

  let terms = new Map<string, TenantTerms>();
  let after: [string, string, number] | null = null;
  for (;;) {
    const page = await pendingSummaries(db, opts, after, pageSize);
    if (page.length === 0) break;
    const missing = [...new Set(page.map((r) => r.tenant_id))].filter((id) => !terms.has(id));
    for (const [id, t] of await loadTenantTerms(db.knex, missing)) terms.set(id, t);
    const rows = [];
    for (const r of page) {
      const t = terms.get(r.tenant_id)!;
      const period = { start: Number(r.period_start), end: Number(r.period_end) };
      const sub = governingSubscription(t.subscriptions, r.subscription_id ?? null, period.start);
      const pt = await termsForPeriod(t, sub, period, plans);
      const key = { tenantId: r.tenant_id, featureKey: r.feature_key, periodStart: period.start, periodEnd: period.end };
      const override = t.overrides.get(r.feature_key);
      const pf = pt.ok ? featureTerms(pt.plan, r.feature_key, override) : null;
      const detail: UsageDetail = {};
      if (pf && chargesEveryEvent(pf)) {
        // Percentage prices the window's events: read only for a window being (re)rated.
        const events = await eventAmounts(db.knex, r.tenant_id, r.feature_key, period);
        // Events that no longer add up to the summary (retention deleted them) cannot re-derive
        // the charge: the window keeps the one it has.
        if (events.reduce((s, e) => s + BigInt(e), 0n) !== BigInt(r.quantity)) continue;
        detail.eventsMicro = events;
      }
      if (byDimension(pf) && features.has(r.feature_key)) {
        // Prices by dimension: the window's usage per value; values that no longer add up to the
        // summary (retention) cannot re-derive the charge either.
        const values = await dimensionUsage(db, r.tenant_id, features.get(r.feature_key)!, pf.dimension, period);
        if ([...values.values()].reduce((s, m) => s + BigInt(m), 0n) !== BigInt(r.quantity)) continue;
        detail.valuesUsed = values;
      }
      // avg and weighted_sum store an accumulator (value.ts): rate the value, remember the accumulator.
      const window = { start: period.start, subscription: r.subscription_id === null ? null : sub };
      const used = usageValue(r.aggregation ?? 'sum', r.quantity, Number(r.event_count), billingPeriodOf(window));
      const source = await rolloverSource(t, sub, period, r.feature_key, pf, plans);
      if (pf?.rollover && source) {
        const prev = usageValue(r.aggregation ?? 'sum', r.prev_quantity, Number(r.prev_event_count ?? 0), billingPeriodOf({ start: source.period.start, subscription: sub }));
        detail.carried = carriedUnits(pf, source, microToString(prev ?? '0'));
      } else if (pf?.rollover) detail.carried = '0';
      rows.push({ r, t, key, pt, pf, detail, period, used });
    }
    // Features with reset windows: each window's usage, for the whole page in one read.
    const windowed = rows.filter((x) => x.pf?.resetEvery && features.has(x.key.featureKey));
    const windowsUsed = await resetWindowsUsage(
      db,
      windowed.map((x) => ({ tenantId: x.key.tenantId, feature: features.get(x.key.featureKey)!, windows: resetWindows(x.period, x.pf!.resetEvery!), subscriptionId: x.r.subscription_id })),
    );
    const byRow = new Map(windowed.map((x, i) => [x, windowsUsed[i].map(microToString)]));
    const charges: RatedCharge[] = rows.map((x) =>
      ({
        ...rateCharge(x.key, x.used, x.pt, x.t.overrides.get(x.key.featureKey), opts.now, x.t.grants, { ...x.detail, ...(byRow.has(x) ? { windowsUsed: byRow.get(x) } : {}) }),
        summaryQuantity: x.r.quantity,
      }),
    );
    await write(charges);
    const last = page[page.length - 1];
    after = [last.tenant_id, last.feature_key, Number(last.period_start)];
    // Pages come in tenant order: only the last tenant can continue on the next page.
    terms = new Map([[last.tenant_id, terms.get(last.tenant_id)!]]);
    if (page.length < pageSize) break;
  }

  await rateMinimums(db.knex, opts, plans, write);
  return result;
}
