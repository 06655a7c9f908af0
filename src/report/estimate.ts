import { loadFeatures } from '../catalog/repository.js';
import type { Aggregation } from '../domain/catalog.js';
import { Decimal, dec, decStr, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { formatMoney } from '../domain/money.js';
import { periodToJson, type Instant } from '../domain/period.js';
import { decimalToMicro, microToString, QUANTITY_SCALE } from '../domain/quantity.js';
import { rateCharge } from '../rate/charge.js';
import { loadTenantTerms } from '../rate/tenant-terms.js';
import type { Db } from '../storage/db.js';
import { TenantTimeline } from '../aggregate/windows.js';
import { currencyOf, rateWindows } from './report.js';

export type Projection = 'run_rate' | 'current_value';

export interface FeatureEstimate {
  featureKey: string;
  aggregation: Aggregation;
  used: string;
  /** run_rate: used × period length / elapsed; current_value: gauges (max, last, unique) stay. */
  projection: Projection;
  projectedUsed: string;
  overageAmount: string;
  projectedOverageAmount: string;
}

export interface TenantEstimate {
  tenantId: string;
  currency: string;
  period: { start: string; end: string };
  asOf: string;
  /** Share of the period elapsed at `now`, 0..1 (6 decimals). */
  elapsed: string;
  features: FeatureEstimate[];
  totalOverageAmount: string;
  projectedTotalOverageAmount: string;
}

/**
 * Projected usage and overage cost at the end of the current period. Accumulating features
 * (sum, count) extrapolate the run rate so far: used × period length / elapsed, rounded to
 * the micro-unit. Gauges (max, last, unique) are projected at their current value: more
 * time does not raise a peak or a head count by itself. Priced like `billing report`.
 */
export async function buildEstimate(db: Db, opts: { now: Instant; tenantId: string }): Promise<TenantEstimate> {
  const q = db.knex;
  const terms = await loadTenantTerms(q, [opts.tenantId]);
  const t = terms.get(opts.tenantId)!;
  if (!t.tenant) throw new BillingError('not_found', `tenant "${opts.tenantId}" does not exist (see \`billing tenant list\`)`);
  const window = new TenantTimeline(t.subscriptions).windowAt(opts.now);
  // Usage so far: events after `now` (a backfill, a replay with --now) are not part of the run rate.
  const [rated] = await rateWindows(db, q, terms, new Map([[opts.tenantId, [window]]]), opts.now, opts.now);
  const features = await loadFeatures(q);
  const currency = currencyOf(rated);
  const length = new Decimal(window.end - window.start);
  const elapsed = new Decimal(opts.now - window.start);

  const estimates = rated.charges.map((c): FeatureEstimate => {
    const aggregation = features.get(c.featureKey)?.aggregation ?? 'sum';
    const projection: Projection = aggregation === 'sum' || aggregation === 'count' ? 'run_rate' : 'current_value';
    const used = dec(c.used);
    const projected =
      projection === 'run_rate' && elapsed.gt(0)
        ? used.times(length).div(elapsed).toDecimalPlaces(QUANTITY_SCALE, Decimal.ROUND_HALF_UP)
        : used;
    const key = { tenantId: opts.tenantId, featureKey: c.featureKey, periodStart: window.start, periodEnd: window.end };
    const projectedCharge = rateCharge(key, decimalToMicro(projected), rated.terms, t.overrides.get(c.featureKey), opts.now);
    return {
      featureKey: c.featureKey,
      aggregation,
      used: c.used,
      projection,
      projectedUsed: microToString(decimalToMicro(projected)),
      overageAmount: c.amount,
      projectedOverageAmount: projectedCharge.amount,
    };
  });
  const total = (pick: (f: FeatureEstimate) => string) => formatMoney(estimates.reduce((s, f) => s.plus(dec(pick(f))), ZERO), currency);
  return {
    tenantId: opts.tenantId,
    currency,
    period: periodToJson(window),
    asOf: new Date(opts.now).toISOString(),
    elapsed: decStr(elapsed.div(length).toDecimalPlaces(6, Decimal.ROUND_HALF_UP)),
    features: estimates,
    totalOverageAmount: total((f) => f.overageAmount),
    projectedTotalOverageAmount: total((f) => f.projectedOverageAmount),
  };
}
