import type { PlanVersion } from '../domain/catalog.js';
import { Decimal, dec, decStr } from '../domain/decimal.js';
import { roundMoney, type RoundedAmount } from '../domain/money.js';
import { addMonthsClamped, intersect, toIso, type Period } from '../domain/period.js';
import type { Segment, Subscription } from '../subscriptions/repository.js';
import type { BaseFeeDetails, RatedLine } from './lines.js';

/** price × billed / nominal, exact, rounded once (milliseconds and seconds give the same ratio). */
export function prorate(price: string, billedMs: number, nominalMs: number, currency: string): RoundedAmount {
  const precise = billedMs === nominalMs ? dec(price) : dec(price).times(billedMs).div(nominalMs);
  return roundMoney(precise, currency);
}

/** The share of the period billed, shown as the line's quantity (6 decimals; details keep the seconds). */
export function prorationQuantity(billedMs: number, nominalMs: number): string {
  return decStr(dec(billedMs).div(nominalMs).toDecimalPlaces(6, Decimal.ROUND_HALF_UP));
}

const day = (t: number) => toIso(t).slice(0, 10);

/**
 * Base fee in arrears: one line per plan segment overlapping the period, prorated by time
 * over the nominal (unclipped) period. Trial time carries no fee; a cancellation clips the
 * period itself, so the final partial period is prorated up to cancel_at.
 */
export function baseFeeLines(input: {
  sub: Subscription;
  segments: Segment[];
  versions: Map<string, PlanVersion>;
  period: Period;
  nominal: Period;
}): RatedLine[] {
  const { sub, segments, versions, period, nominal } = input;
  const lines: RatedLine[] = [];
  const billable = intersect(period, { start: Math.max(sub.startedAt, sub.trialEndsAt ?? sub.startedAt), end: Infinity });
  for (const seg of segments) {
    const inPeriod = intersect(period, { start: seg.startsAt, end: seg.endsAt ?? Infinity });
    if (!inPeriod) continue;
    const billed = billable && intersect(inPeriod, billable);
    if (!billed) continue; // entirely in trial (or before the start)
    const pv = versions.get(versionKey(seg.planKey, seg.planVersion));
    if (!pv) throw new Error(`plan ${seg.planKey} v${seg.planVersion} of subscription ${sub.id} is missing`);
    const nominalFor = pv.interval === sub.interval ? nominal : { start: nominal.start, end: addMonthsClamped(nominal.start, pv.interval === 'year' ? 12 : 1) };
    const billedMs = billed.end - billed.start;
    const nominalMs = nominalFor.end - nominalFor.start;
    const money = prorate(pv.price, billedMs, nominalMs, sub.currency);
    const full = billedMs === nominalMs;
    const details: BaseFeeDetails = {
      from: billed.start,
      to: billed.end,
      billedSeconds: decStr(dec(billedMs).div(1000)),
      periodSeconds: decStr(dec(nominalMs).div(1000)),
      nominal: nominalFor,
      trialExcluded: sub.trialEndsAt !== null && sub.trialEndsAt > inPeriod.start,
    };
    lines.push({
      kind: 'base_fee',
      featureKey: null,
      description:
        `${pv.name} base fee` +
        (full ? '' : `, ${day(billed.start)} to ${day(billed.end)} (${details.billedSeconds} of ${details.periodSeconds} s)`),
      quantity: prorationQuantity(billedMs, nominalMs),
      unitPrice: pv.price,
      amountPrecise: money.precise,
      amount: money.amount,
      amountMinor: money.minor,
      period: billed,
      planKey: pv.planKey,
      planVersion: pv.version,
      priceSnapshot: { price: pv.price, interval: pv.interval },
      details,
    });
  }
  return lines;
}

export function versionKey(planKey: string, version: number): string {
  return `${planKey}@${version}`;
}
