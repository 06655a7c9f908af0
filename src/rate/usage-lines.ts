import type { Feature, PercentagePricing, PlanFeature } from '../domain/catalog.js';
import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import { toIso, type Period } from '../domain/period.js';
import { chargesEveryEvent, rateUsage, type PriceLine } from './rate.js';
import { rateWindowed, windowsLabel, type WindowedUsage } from './reset.js';
import type { RatedLine as DraftLine, UsageDetails } from './lines.js';

/** What earlier invoices already billed for one (tenant, feature, period). */
export interface Billed {
  amount: string; // sum of rounded line amounts
  usedTotal: string; // usage the latest of those lines was rated on
  snapshot: PlanFeature; // terms of the latest line
  billable?: string; // billable quantity of the latest line (reset windows: not derivable from usedTotal)
}

export interface UsageLineInput {
  /** 'current': the invoice's own period; 'late': an earlier, already invoiced period. */
  context: 'current' | 'late';
  feature: Feature;
  terms: PlanFeature;
  usedTotal: string;
  billed: Billed | null;
  currency: string;
  period: Period;
  planKey: string | null;
  planVersion: number | null;
  /** Percentage terms: the period's event amounts in time order (decimal strings). */
  events?: readonly string[];
  /** Units carried over from the previous period, part of `terms.included` (rate/rollover.ts). */
  carried?: string;
  /** A feature with reset windows (`terms.resetEvery`): each window's usage and what grants cover (rate/reset.ts). */
  windows?: WindowedUsage;
  /** A feature priced by dimension: the value this line bills (`terms` are its entry's; rate/dimension.ts). */
  value?: string;
  /** With `value`: the metadata field it is a value of. */
  dimension?: string;
}

/** Amount a usage line must carry: due now − billed before; exact, since both are rounded. */
export function dueMinusBilled(terms: PlanFeature, usedTotal: string, billedBefore: string, currency: string, events?: readonly string[], windows?: WindowedUsage) {
  // Reset windows price what the windows leave billable; without them the period is one window.
  const rated =
    terms.resetEvery && !chargesEveryEvent(terms)
      ? rateWindowed(terms, usedTotal, windows ?? { used: [usedTotal], granted: '0' }, currency)
      : rateUsage(terms, usedTotal, currency, events);
  const amount = dec(rated.amount).minus(billedBefore);
  return {
    rated,
    amount: formatMoney(amount, currency),
    // First billing keeps the unrounded decimal; a difference of rounded amounts is already exact.
    precise: dec(billedBefore).isZero() ? rated.amountPrecise : decStr(amount),
  };
}

function billableOf(terms: PlanFeature, used: string): Decimal {
  if (chargesEveryEvent(terms)) return dec(used);
  return terms.included === null ? ZERO : Decimal.max(ZERO, dec(used).minus(terms.included));
}

/** "4 events, 800.00, 1.3% + 2.00 per event" (plus how many were free, and a minimum spend). */
function percentageSummary(p: PercentagePricing, events: readonly string[], lines: PriceLine[], currency: string): string {
  const total = events.reduce((s, e) => s.plus(dec(e)), ZERO);
  const n = events.length;
  let s = `${n} event${n === 1 ? '' : 's'}, ${formatMoney(total, currency)}, ${p.rate}%${p.fixedFeePerEvent ? ` + ${p.fixedFeePerEvent}` : ''} per event`;
  const free = lines.find((l) => l.ref === 'free');
  if (free) s += `, ${free.quantity} free`;
  if (lines.some((l) => l.ref === 'minimum')) s += `, minimum spend ${p.minimum}`;
  return s;
}

export function periodLabel(p: Period): string {
  return `${toIso(p.start).slice(0, 10)} to ${toIso(p.end).slice(0, 10)}`;
}

/**
 * One line billing the difference for a feature and period (Kill Bill's "bill only the
 * difference"): null when there is nothing to say. A negative difference is a credit line
 * carrying its reason, never dropped.
 */
export function usageLine(input: UsageLineInput): DraftLine | null {
  const { context, feature, terms, usedTotal, billed, currency, period } = input;
  const billedBefore = billed?.amount ?? '0';
  const usedBefore = billed?.usedTotal ?? '0';
  const { rated, amount, precise } = dueMinusBilled(terms, usedTotal, billedBefore, currency, input.events, input.windows);
  const billableBefore = () => (billed?.billable !== undefined && (billed.snapshot ?? terms).resetEvery ? dec(billed.billable) : billableOf(billed?.snapshot ?? terms, usedBefore));
  const amt = dec(amount);
  const used = dec(usedTotal);
  if (context === 'current' ? used.isZero() && amt.isZero() && !billed : amt.isZero()) return null;

  const name = `${feature.name || feature.key}${input.value !== undefined ? ` (${input.value})` : ''}`;
  let kind: DraftLine['kind'];
  let description: string;
  let quantity: string;
  let reason: string | undefined;
  if (amt.isNegative()) {
    kind = 'credit';
    reason = `usage for ${periodLabel(period)} revised from ${decStr(dec(usedBefore))} to ${rated.used}; ${billedBefore} was billed, ${rated.amount} is due`;
    description = `Credit for ${periodLabel(period)}: ${name}, ${reason}`;
    quantity = decStr(dec(rated.billable).minus(billableBefore()));
  } else if (context === 'late') {
    kind = 'late_usage';
    const delta = used.minus(usedBefore);
    description = `Late usage for ${periodLabel(period)}: ${name}, ${delta.isNegative() ? '' : '+'}${decStr(delta)} (now ${rated.used})`;
    quantity = decStr(dec(rated.billable).minus(billableBefore()));
  } else {
    kind = dec(rated.billable).isZero() && amt.gt(0) ? 'minimum' : 'overage';
    const carried = input.carried !== undefined && dec(input.carried).gt(0) ? ` (${input.carried} carried over)` : '';
    const inc = rated.included === null ? 'unlimited' : rated.included;
    const windowed = terms.resetEvery && input.windows ? windowsLabel(terms.resetEvery, input.windows.used.length, rated.included) : null;
    description =
      terms.overage?.model === 'percentage' && input.events
        ? `${name}: ${percentageSummary(terms.overage, input.events, rated.lines, currency)}`
        : windowed
          ? `${name}: ${windowed}, ${rated.billable} billable`
          : kind === 'minimum'
            ? `${name}: minimum spend (${rated.used} used, ${inc} included${carried})`
            : `${name}: ${rated.used} used, ${inc} included${carried}, ${rated.billable} billable`;
    quantity = rated.billable;
  }
  const details: UsageDetails = {
    usedTotal: rated.used,
    usedBefore: decStr(dec(usedBefore)),
    included: rated.included,
    billable: rated.billable,
    dueAmount: rated.amount,
    duePrecise: rated.amountPrecise,
    billedBefore: formatMoney(billedBefore, currency),
    tiers: rated.lines,
    ...(input.carried !== undefined && dec(input.carried).gt(0) ? { carried: input.carried } : {}),
    ...(terms.resetEvery && input.windows ? { windows: [...input.windows.used], granted: input.windows.granted } : {}),
    ...(reason ? { reason } : {}),
    ...(input.dimension !== undefined ? { dimension: input.dimension } : {}),
  };
  return {
    kind,
    featureKey: feature.key,
    description,
    quantity,
    unitPrice: terms.overage?.model === 'per_unit' ? terms.overage.unitPrice : null,
    amountPrecise: precise,
    amount,
    amountMinor: roundMoney(amount, currency).minor,
    period,
    planKey: input.planKey,
    planVersion: input.planVersion,
    priceSnapshot: terms,
    details,
    ...(input.value !== undefined ? { dimensionValue: input.value } : {}),
  };
}
