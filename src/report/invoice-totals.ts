import type { Discount } from '../domain/discount.js';
import type { PlanVersion } from '../domain/catalog.js';
import type { Knex } from 'knex';
import { microToString } from '../domain/quantity.js';
import { versionKey } from '../rate/base-fee.js';
import { ratePeriod } from '../rate/period.js';
import { CatalogCache, type TenantTerms } from '../rate/tenant-terms.js';
import { invoiceTotals, type InvoiceTotals } from '../rate/totals.js';
import type { RatedWindow } from '../rate/window.js';
import { loadDiscountsByTenant } from '../subscriptions/discounts.js';
import { loadTaxRatesByTenant, type TaxRate } from '../subscriptions/taxes.js';
import { subscriptionPeriodAt } from '../subscriptions/timeline.js';

/** What the invoices of rated windows are priced with besides usage: the tenants' discounts and taxes. */
export interface InvoiceExtras {
  discounts: Map<string, Array<{ discount: Discount; usedFor: number[] }>>;
  taxes: Map<string, TaxRate[]>;
}

export async function loadInvoiceExtras(q: Knex, tenantIds: string[]): Promise<InvoiceExtras> {
  return { discounts: await loadDiscountsByTenant(q, tenantIds), taxes: await loadTaxRatesByTenant(q, tenantIds) };
}

/**
 * The totals (DESIGN.md §13) of the invoice a rated window would get, priced by `ratePeriod` on
 * the given usage (feature → micro-units): base fee, usage, minimum commitment, discounts and
 * taxes; before prepaid credits, and without late usage of earlier periods. A once / repeating
 * discount counts only its uses by invoices of earlier periods, so a period already invoiced
 * shows what its invoice took off. Null without a subscription (nothing is invoiced).
 */
export async function windowInvoiceTotals(
  q: Knex,
  cache: CatalogCache,
  t: TenantTerms,
  r: RatedWindow,
  usedMicro: Map<string, string>,
  extras: InvoiceExtras,
): Promise<InvoiceTotals | null> {
  const sub = r.window.subscription;
  if (!sub) return null;
  const period = { start: r.window.start, end: r.window.end };
  const segments = t.segments.get(sub.id) ?? [];
  const versions = new Map<string, PlanVersion>();
  for (const s of segments) {
    if (s.startsAt < period.end && (s.endsAt === null || s.endsAt > period.start)) {
      const pv = await cache.plan(q, s.planKey, s.planVersion);
      if (!pv) throw new Error(`plan ${s.planKey} v${s.planVersion} referenced by a subscription does not exist`);
      versions.set(versionKey(s.planKey, s.planVersion), pv);
    }
  }
  const discounts = (extras.discounts.get(r.tenantId) ?? []).map(({ discount, usedFor }) => ({
    ...discount,
    uses: usedFor.filter((start) => start < period.start).length,
  }));
  const usage = new Map([...usedMicro].map(([k, micro]) => [k, microToString(micro)]));
  const rated = ratePeriod(
    {
      sub,
      segments,
      versions,
      period,
      nominal: subscriptionPeriodAt(sub, period.start).nominal,
      plan: r.terms.ok ? r.terms.plan : null,
      features: await cache.allFeatures(q),
      overrides: t.overrides,
      grants: t.grants,
      carried: new Map([...r.details].filter(([, d]) => d.carried !== undefined).map(([k, d]) => [k, d.carried!])),
      discounts,
      taxes: extras.taxes.get(r.tenantId) ?? [],
      credits: [],
    },
    {
      usage: new Map([[period.start, usage]]),
      billed: new Map(),
      invoiced: new Map(),
      windows: new Map([...r.details].filter(([, d]) => d.windowsUsed).map(([k, d]) => [`${k}|${period.start}`, [...d.windowsUsed!]])),
      events: new Map([[period.start, new Map([...r.eventsMicro].map(([k, es]) => [k, es.map((m) => microToString(m))]))]]),
      values: new Map(
        [...r.details].filter(([, d]) => d.valuesUsed).map(([k, d]) => [`${k}|${period.start}`, new Map([...d.valuesUsed!].map(([v, m]) => [v, microToString(m)]))]),
      ),
    },
  );
  return invoiceTotals(rated.lines, sub.currency);
}
