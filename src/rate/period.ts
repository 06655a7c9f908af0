import type { Feature, PlanFeature, PlanVersion, QuotaOverride } from '../domain/catalog.js';
import type { Period } from '../domain/period.js';
import type { Segment, Subscription } from '../subscriptions/repository.js';
import type { Discount } from '../domain/discount.js';
import { baseFeeLines } from './base-fee.js';
import { discountApplies, discountLines } from './discounts.js';
import { featureTerms as termsOf } from './charge.js';
import { drawGrants, withGrantDraws, type UnitGrant } from './grants.js';
import { withCarried } from './rollover.js';
import { drawnTotal, recordedDrawn, windowedDraws } from './reset.js';
import { SUBTOTAL_KINDS, type CreditDetails, type DiscountDetails, type RatedLine, type TaxDetails } from './lines.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import { roundingLine } from './rounding.js';
import { commitmentLine } from './commitment.js';
import { creditLines, type CreditAvailable } from './credits.js';
import { ownTax, ownTaxBase, taxLines, type TaxRate } from './taxes.js';
import { usageLine, type Billed, type UsageLineInput } from './usage-lines.js';
import { byDimension, sortedValues, valueTerms } from './dimension.js';
import { chargesEveryEvent } from './rate.js';
import { ZERO, dec } from '../domain/decimal.js';

/** Feature key → the terms (plan at period end, after the tenant's override) an invoice priced it on. */
export type FeatureTerms = Record<string, PlanFeature>;

/** An earlier invoiced period whose late usage may still be billed. */
export interface InvoicedPeriod {
  period: Period;
  subscriptionId: string;
  currency: string;
  /** The terms the invoice priced each metered feature on; null for invoices that predate recording them. */
  featureTerms: FeatureTerms | null;
  /** The plan in force at its end today (null: none), for features its invoice recorded no terms for. */
  plan: PlanVersion | null;
}

/** What a subscription period is priced on. */
export interface PeriodRatingTerms {
  sub: Subscription;
  segments: Segment[];
  /** versionKey → plan version, for every segment overlapping the period. */
  versions: Map<string, PlanVersion>;
  period: Period;
  nominal: Period;
  /** The plan in force at the period's end; null without a segment. */
  plan: PlanVersion | null;
  features: Map<string, Feature>;
  overrides: Map<string, QuotaOverride>;
  /** The tenant's grants of units, with what invoiced periods drew (rate/grants.ts). */
  grants?: UnitGrant[];
  /** Feature key → units carried over from the previous period (rate/rollover.ts). */
  carried?: ReadonlyMap<string, string>;
  /** The tenant's discounts, creation order, with their uses so far (which apply is decided here). */
  discounts?: Discount[];
  /** The tax rates the invoice is taxed at (the tenant's, else the catalog's default). */
  taxes?: TaxRate[];
  /** Prepaid credit available at the invoice's issue time, in its currency. */
  credits?: CreditAvailable[];
  /**
   * `threshold`: an invoice before the period ends (DESIGN.md §15), billing only its usage so
   * far (no base fee, late usage or commitment: those wait for the period's final invoice).
   */
  reason?: 'period' | 'threshold';
}

/** The tenant's usage and what earlier invoices billed for it. */
export interface PeriodUsage {
  /** period_start → feature → used (decimal string) */
  usage: Map<number, Map<string, string>>;
  /** `${feature}|${period_start}` → what non-void invoices billed */
  billed: Map<string, Billed>;
  /** period_start → an invoiced period, its subscription, currency and terms */
  invoiced: Map<number, InvoicedPeriod>;
  /** `${feature}|${period_start}` → each reset window's usage (features with `resetEvery`; rate/reset.ts) */
  windows?: Map<string, string[]>;
  /** The lines of this period's earlier threshold invoices (not void), oldest first. */
  prior?: RatedLine[];
  /** period_start → feature → event amounts in time order (decimal strings), for percentage terms. */
  events?: Map<number, Map<string, string[]>>;
  /** `${feature}|${period_start}` → value → used (decimal strings), for features priced by dimension. */
  values?: Map<string, Map<string, string>>;
}

/** The key of what was billed for a feature and period (and value, for a feature priced by dimension). */
export function billedKey(featureKey: string, start: number, value?: string): string {
  return value === undefined ? `${featureKey}|${start}` : `${featureKey}|${start}|${value}`;
}

/**
 * A feature priced by dimension: its usage per value for a period, or null when the values do
 * not add up to its summary (retention deleted events, or they are not summarized yet): no line
 * is written now and what was billed stands. Values billed before but used no more are listed at 0.
 */
function valuesFor(usage: PeriodUsage, start: number, featureKey: string, usedTotal: string): Map<string, string> | null {
  const values = new Map(usage.values?.get(`${featureKey}|${start}`) ?? []);
  const sum = [...values.values()].reduce((s, e) => s.plus(dec(e)), ZERO);
  if (!sum.eq(dec(usedTotal))) return null;
  const prefix = `${featureKey}|${start}|`;
  for (const k of usage.billed.keys()) if (k.startsWith(prefix) && !values.has(k.slice(prefix.length))) values.set(k.slice(prefix.length), '0');
  return values;
}

/** The usage lines of a feature priced by dimension for one period: one per value, each on its entry's terms. */
function valueLines(
  usage: PeriodUsage,
  base: Omit<UsageLineInput, 'terms' | 'usedTotal' | 'billed' | 'value' | 'dimension'>,
  terms: PlanFeature,
  usedTotal: string,
): RatedLine[] {
  const values = valuesFor(usage, base.period.start, base.feature.key, usedTotal);
  if (values === null) return [];
  const out: RatedLine[] = [];
  for (const value of sortedValues(values.keys())) {
    const billed = usage.billed.get(billedKey(base.feature.key, base.period.start, value)) ?? null;
    // Late usage: a value billed before keeps the terms it was billed on.
    const line = usageLine({ ...base, terms: base.context === 'late' && billed ? billed.snapshot : valueTerms(terms, value), usedTotal: values.get(value)!, billed, value, dimension: terms.dimension });
    if (line) out.push(line);
  }
  return out;
}

/**
 * A percentage feature's events for a period, or null when they do not add up to its summary
 * (retention deleted them, or they are not summarized yet): its charge cannot be re-derived,
 * so no line is written now and what was billed stands.
 */
function eventsFor(usage: PeriodUsage, start: number, featureKey: string, usedTotal: string): string[] | null {
  const events = usage.events?.get(start)?.get(featureKey) ?? [];
  const sum = events.reduce((s, e) => s.plus(dec(e)), ZERO);
  return sum.eq(dec(usedTotal)) ? events : null;
}

export interface RatedPeriod {
  lines: RatedLine[];
  /** Stored on the invoice: what its period's late usage is priced on. */
  featureTerms: FeatureTerms;
  /** The once / repeating discounts this invoice uses up (a use is recorded even if nothing was left to take off). */
  discountsUsed: string[];
  /** What the invoice takes from each prepaid credit grant. */
  creditsUsed: Array<{ grantId: string; instance: number; amount: string }>;
  /** What the period's usage draws from each grant of units (recorded with the invoice). */
  grantsUsed: Array<{ grantId: string; periodStart: number; quantity: string }>;
}

/**
 * All money of a subscription period's invoice: base fee per segment, usage per metered feature
 * of the plan in force at period end (with the tenant's overrides), late usage / credits for
 * earlier invoiced periods whose usage changed since they were billed, the minimum-commitment
 * true-up (`commitment.ts`): the subtotal; then in DESIGN.md §13's order the tenant's discounts
 * (`discounts.ts`), taxes (`taxes.ts`), prepaid credits (`credits.ts`) and cash rounding.
 */
export function ratePeriod(terms: PeriodRatingTerms, usage: PeriodUsage): RatedPeriod {
  const { sub, period, plan: pv } = terms;
  const threshold = terms.reason === 'threshold';
  const lines: RatedLine[] = threshold ? [] : baseFeeLines(terms);
  const featureTerms: FeatureTerms = {};
  const grantsUsed: RatedPeriod['grantsUsed'] = [];
  if (pv) {
    for (const featureKey of Object.keys(pv.features).sort()) {
      const feature = terms.features.get(featureKey);
      if (!feature || feature.type !== 'metered') continue;
      const usedTotal = usage.usage.get(period.start)?.get(featureKey) ?? '0';
      // Carried units come before grants; both are part of the stored terms, so late usage is
      // priced on what the period carried and drew. Reset windows: grants cover the windows'
      // billable total, recorded with the invoice and found again by late usage. Percentage: neither.
      const carried = terms.carried?.get(featureKey);
      const planTerms = withCarried(termsOf(pv, featureKey, terms.overrides.get(featureKey))!, carried);
      if (byDimension(planTerms)) {
        featureTerms[featureKey] = planTerms;
        lines.push(...valueLines(usage, { context: 'current', feature, currency: sub.currency, period, planKey: pv.planKey, planVersion: pv.version }, planTerms, usedTotal));
        continue;
      }
      const pct = chargesEveryEvent(planTerms);
      const windowsUsed = planTerms.resetEvery && !pct ? usage.windows?.get(`${featureKey}|${period.start}`) ?? [usedTotal] : null;
      const draws = pct
        ? []
        : windowsUsed
          ? windowedDraws(terms.grants, featureKey, period, planTerms, windowsUsed)
          : drawGrants(terms.grants, featureKey, period, planTerms.included, usedTotal);
      for (const d of draws) grantsUsed.push({ grantId: d.grantId, periodStart: period.start, quantity: d.quantity });
      const ft = windowsUsed ? planTerms : withGrantDraws(planTerms, draws);
      featureTerms[featureKey] = ft;
      const events = pct ? eventsFor(usage, period.start, featureKey, usedTotal) : undefined;
      if (events === null) continue;
      const line = usageLine({
        events,
        context: 'current',
        feature,
        terms: ft,
        usedTotal,
        billed: usage.billed.get(`${featureKey}|${period.start}`) ?? null,
        currency: sub.currency,
        period,
        planKey: pv.planKey,
        planVersion: pv.version,
        carried,
        ...(windowsUsed ? { windows: { used: windowsUsed, granted: drawnTotal(draws) } } : {}),
      });
      if (line) lines.push(line);
    }
  }

  // Usage lines already bill what the period's usage owes less what earlier invoices billed.
  // The period's earlier threshold invoices count in the commitment, discounts and taxes the
  // same way, so the invoices of a period always add up to the one invoice it would have had.
  const prior = usage.prior ?? [];
  const priorCharges = prior.filter((l) => SUBTOTAL_KINDS.includes(l.kind));
  if (!threshold) {
    lines.push(...lateUsageLines(terms, usage));
    const commitment = commitmentLine([...priorCharges, ...lines], { sub, plan: pv, period, nominal: terms.nominal });
    if (commitment) lines.push(commitment);
  }

  const applied = (terms.discounts ?? []).filter((d) => discountApplies(d, period));
  lines.push(...lessBilledBefore(discountLines([...priorCharges, ...lines], applied, sub.currency, period), prior, sub.currency));
  const priorDiscounted = prior.filter((l) => SUBTOTAL_KINDS.includes(l.kind) || l.kind === 'discount');
  lines.push(...lessBilledBefore(taxLines([...priorDiscounted, ...lines], terms.taxes ?? [], sub.currency, period), prior, sub.currency));
  const credits = creditLines(lines, terms.credits ?? [], sub.currency, period);
  lines.push(...credits);

  const rounding = roundingLine(lines, sub.currency, period);
  if (rounding) lines.push(rounding);
  return {
    lines,
    featureTerms,
    discountsUsed: applied.filter((d) => d.duration !== 'forever').map((d) => d.id),
    creditsUsed: credits.map((l) => {
      const d = l.details as CreditDetails;
      return { grantId: d.grantId, instance: d.instance, amount: l.amount.replace(/^-/, '') };
    }),
    grantsUsed,
  };
}

/** The discount id or tax name a discount or tax line is for. */
function adjustmentKey(l: Pick<RatedLine, 'kind' | 'details'>): string {
  const d = l.details as DiscountDetails & TaxDetails;
  return l.kind === 'discount' ? `discount|${d.discountId}` : `tax|${d.name}`;
}

/**
 * The period's discount or tax lines so far, each less what the period's earlier threshold
 * invoices billed with the same discount or rate (kept in its details); a discount or
 * exclusive tax left at zero after a threshold invoice has no line.
 */
function lessBilledBefore(lines: RatedLine[], prior: RatedLine[], currency: string): RatedLine[] {
  if (prior.length === 0) return lines;
  const out: RatedLine[] = [];
  for (const l of lines) {
    const same = prior.filter((p) => p.kind === l.kind && adjustmentKey(p) === adjustmentKey(l));
    if (same.length === 0) {
      out.push(l);
      continue;
    }
    if (l.kind === 'tax') {
      const d = l.details as TaxDetails;
      const before = same.reduce((s, p) => s.plus(ownTax(p.details as TaxDetails)), dec(0));
      const baseBefore = same.reduce((s, p) => s.plus(ownTaxBase(p.details as TaxDetails)), dec(0));
      const details: TaxDetails = { ...d, billedBefore: formatMoney(before, currency), baseBefore: formatMoney(baseBefore, currency) };
      const amount = d.inclusive ? formatMoney(0, currency) : formatMoney(ownTax(details), currency);
      if (!d.inclusive && dec(amount).isZero()) continue;
      const base = formatMoney(ownTaxBase(details), currency);
      const description = `${d.name} ${dec(d.rate).toFixed()}% ${d.inclusive ? 'included in' : 'on'} ${base} (${d.tax} on ${d.base} this period, ${details.billedBefore} billed earlier)`;
      out.push({ ...l, amount, amountPrecise: amount, amountMinor: roundMoney(amount, currency).minor, description, details });
      continue;
    }
    const before = same.reduce((s, p) => s.plus(p.amount), dec(0));
    const amount = formatMoney(dec(l.amount).minus(before), currency);
    if (dec(amount).isZero()) continue;
    const details: DiscountDetails = { ...(l.details as DiscountDetails), billedBefore: formatMoney(before.neg(), currency) };
    const description = `${l.description}, less ${details.billedBefore} taken off earlier this period`;
    out.push({ ...l, amount, amountPrecise: amount, amountMinor: roundMoney(amount, currency).minor, description, details });
  }
  return out;
}

/** Earlier periods (in this invoice's currency) with a usage summary to bill or credit. */
export function periodsWithLateUsage(usage: PeriodUsage, currency: string): InvoicedPeriod[] {
  return [...usage.invoiced.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([, inv]) => inv)
    // Never converted: it waits for an invoice in its own currency. Only features with a
    // summary: a missing summary means "not known", never "zero".
    .filter((inv) => inv.currency === currency && (usage.usage.get(inv.period.start)?.size ?? 0) > 0);
}

function lateUsageLines(terms: PeriodRatingTerms, usage: PeriodUsage): RatedLine[] {
  const out: RatedLine[] = [];
  for (const inv of periodsWithLateUsage(usage, terms.sub.currency)) {
    const start = inv.period.start;
    const pv = inv.plan;
    for (const featureKey of [...usage.usage.get(start)!.keys()].sort()) {
      const feature = terms.features.get(featureKey);
      if (!feature) continue;
      const usedNow = usage.usage.get(start)?.get(featureKey) ?? '0';
      const recorded = inv.featureTerms ? inv.featureTerms[featureKey] ?? null : pv ? termsOf(pv, featureKey, terms.overrides.get(featureKey)) : null;
      if (byDimension(recorded)) {
        const base = { context: 'late' as const, feature, currency: terms.sub.currency, period: inv.period, planKey: pv?.planKey ?? null, planVersion: pv?.version ?? null };
        out.push(...valueLines(usage, base, recorded, usedNow));
        continue;
      }
      const billed = usage.billed.get(`${featureKey}|${start}`) ?? null;
      // Rate on the terms the period was billed with; a feature without a line then, on the terms
      // its invoice recorded (none: the plan lacked it), else on today's terms at its period end.
      const ft =
        billed?.snapshot ?? (inv.featureTerms ? inv.featureTerms[featureKey] ?? null : pv ? termsOf(pv, featureKey, terms.overrides.get(featureKey)) : null);
      if (!ft) continue;
      const usedTotal = usage.usage.get(start)?.get(featureKey) ?? '0';
      // Reset windows: the period's windows now, on what its invoice drew from grants.
      const windowsUsed = ft.resetEvery && !chargesEveryEvent(ft) ? usage.windows?.get(`${featureKey}|${start}`) ?? [usedTotal] : null;
      const granted = windowsUsed ? recordedDrawn(terms.grants, featureKey, inv.period) : '0';
      const events = chargesEveryEvent(ft) ? eventsFor(usage, start, featureKey, usedTotal) : undefined;
      if (events === null) continue;
      const line = usageLine({
        events,
        context: 'late',
        feature,
        terms: ft,
        usedTotal,
        ...(windowsUsed ? { windows: { used: windowsUsed, granted } } : {}),
        billed,
        currency: terms.sub.currency,
        period: inv.period,
        planKey: pv?.planKey ?? null,
        planVersion: pv?.version ?? null,
      });
      if (line) out.push(line);
    }
  }
  return out;
}
