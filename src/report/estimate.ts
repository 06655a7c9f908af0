import { loadFeatures } from '../catalog/repository.js';
import type { Aggregation } from '../domain/catalog.js';
import { Decimal, dec, decStr, ZERO } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { formatMoney } from '../domain/money.js';
import { periodToJson, type Instant } from '../domain/period.js';
import { decimalToMicro, microToString, QUANTITY_SCALE } from '../domain/quantity.js';
import { CatalogCache, loadTenantTerms } from '../rate/tenant-terms.js';
import type { InvoiceTotals } from '../rate/totals.js';
import { loadInvoiceExtras, windowInvoiceTotals } from './invoice-totals.js';
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
  /** Billable quantity beyond the allowance at the projection. */
  projectedOverage: string;
  /** Requests past the limit are denied: a projection past it is never billed. */
  hardStop: boolean;
}

/** An invoice's totals as DESIGN.md §13 names them (before prepaid credits). */
export type EstimateInvoice = Pick<InvoiceTotals, 'subtotal' | 'discounts' | 'discountTotal' | 'taxes' | 'taxTotal' | 'total'>;

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
  /** The period's invoice if it closed now (base fee for the whole period) and at the projection; null without a subscription. */
  invoice: EstimateInvoice | null;
  projectedInvoice: EstimateInvoice | null;
  /** Their totals (0 without a subscription). */
  totalAmount: string;
  projectedTotalAmount: string;
}

function invoicePart(t: InvoiceTotals | null): EstimateInvoice | null {
  return t && { subtotal: t.subtotal, discounts: t.discounts, discountTotal: t.discountTotal, taxes: t.taxes, taxTotal: t.taxTotal, total: t.total };
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

  // Percentage prices the events so far: transactions yet to come have no amounts to price.
  const perEvent = new Set(rated.charges.filter((c) => 'overage' in c.priceSnapshot && c.priceSnapshot.overage?.model === 'percentage').map((c) => c.featureKey));
  const projectionOf = (featureKey: string): Projection => {
    if (perEvent.has(featureKey)) return 'current_value';
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
  // Prices by dimension: each value projected at the run rate, the feature's projection their sum.
  const projectedDetails = new Map(rated.details);
  for (const [key, d] of rated.details) {
    if (!d.valuesUsed || projectionOf(key) !== 'run_rate' || !elapsed.gt(0)) continue;
    const values = new Map(
      [...d.valuesUsed].map(([v, m]) => [v, decimalToMicro(dec(microToString(m)).times(length).div(elapsed).toDecimalPlaces(QUANTITY_SCALE, Decimal.ROUND_HALF_UP))]),
    );
    projectedDetails.set(key, { ...d, valuesUsed: values });
    projectedMicro.set(key, [...values.values()].reduce((s, m) => s + BigInt(m), 0n).toString());
  }
  // The projection is priced exactly as the usage so far: the same window, terms and charges.
  const projectedCharges = new Map(
    rateWindowCharges(opts.tenantId, window, rated.terms, projectedMicro, features, t.overrides, opts.now, t.grants, projectedDetails).map((c) => [c.featureKey, c]),
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
      projectedOverage: projectedCharges.get(c.featureKey)!.billable,
      hardStop: c.hardStop,
    }),
  );
  // The invoice totals go through the rating path too, on the usage so far and on the projection.
  const extras = await loadInvoiceExtras(q, [opts.tenantId]);
  const cache = new CatalogCache();
  const invoice = await windowInvoiceTotals(q, cache, t, rated, rated.usedMicro, extras);
  const projectedInvoice = await windowInvoiceTotals(q, cache, t, { ...rated, details: projectedDetails }, projectedMicro, extras);
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
    invoice: invoicePart(invoice),
    projectedInvoice: invoicePart(projectedInvoice),
    totalAmount: invoice?.total ?? formatMoney(ZERO, currency),
    projectedTotalAmount: projectedInvoice?.total ?? formatMoney(ZERO, currency),
  };
}
