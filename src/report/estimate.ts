import { loadFeatures } from '../catalog/repository.js';
import type { Aggregation } from '../domain/catalog.js';
import { Decimal, dec, decStr, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { formatMoney } from '../domain/money.js';
import { periodToJson, type Instant } from '../domain/period.js';
import { decimalToMicro, microToString, QUANTITY_SCALE } from '../domain/quantity.js';
import { loadTenantTerms } from '../rate/tenant-terms.js';
import { currencyOf, rateWindowCharges, rateWindows } from '../rate/window.js';
import type { Db } from '../storage/db.js';
import { TenantTimeline } from '../aggregate/windows.js';

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
  const [rated] = await rateWindows(db, terms, new Map([[opts.tenantId, [window]]]), opts.now, { kind: 'estimate', asOf: opts.now });
  const features = await loadFeatures(q);
  const currency = currencyOf(rated);
  const length = new Decimal(window.end - window.start);
  const elapsed = new Decimal(opts.now - window.start);

  const projectionOf = (featureKey: string): Projection => {
    const aggregation = features.get(featureKey)?.aggregation ?? 'sum';
    return aggregation === 'sum' || aggregation === 'count' ? 'run_rate' : 'current_value';
  };
  const projectedMicro = new Map(
    rated.charges.map((c) => {
      const used = dec(c.used);
      const projected =
        projectionOf(c.featureKey) === 'run_rate' && elapsed.gt(0)
          ? used.times(length).div(elapsed).toDecimalPlaces(QUANTITY_SCALE, Decimal.ROUND_HALF_UP)
          : used;
      return [c.featureKey, decimalToMicro(projected)];
    }),
  );
  // The projection is priced exactly as the usage so far: the same window, terms and charges.
  const projectedCharges = new Map(
    rateWindowCharges(opts.tenantId, window, rated.terms, projectedMicro, features, t.overrides, opts.now).map((c) => [c.featureKey, c]),
  );

  const estimates = rated.charges.map(
    (c): FeatureEstimate => ({
      featureKey: c.featureKey,
      aggregation: features.get(c.featureKey)?.aggregation ?? 'sum',
      used: c.used,
      projection: projectionOf(c.featureKey),
      projectedUsed: microToString(projectedMicro.get(c.featureKey)!),
      overageAmount: c.amount,
      projectedOverageAmount: projectedCharges.get(c.featureKey)!.amount,
    }),
  );
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
