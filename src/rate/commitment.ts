import type { PlanVersion } from '../domain/catalog.js';
import { Decimal, dec } from '../domain/decimal.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import { addMonthsClamped, intersect, type Period } from '../domain/period.js';
import type { Subscription } from '../subscriptions/repository.js';
import type { CommitmentDetails, RatedLine } from './lines.js';

/**
 * The minimum-commitment true-up of a period (DESIGN.md §13 step 1): when the lines so far (base
 * fee, usage, late usage) sum below the commitment of the plan in force at the period's end,
 * prorated like the base fee (paying time over the nominal period; trial time owes nothing), a
 * line adds the difference. Null when there is nothing to add.
 */
export function commitmentLine(
  lines: RatedLine[],
  input: { sub: Subscription; plan: PlanVersion | null; period: Period; nominal: Period },
): RatedLine | null {
  const { sub, plan, period, nominal } = input;
  if (!plan?.minimumCommitment || dec(plan.minimumCommitment).isZero()) return null;
  const paying = intersect(period, { start: Math.max(sub.startedAt, sub.trialEndsAt ?? sub.startedAt), end: Infinity });
  if (!paying) return null;
  const nominalFor = plan.interval === sub.interval ? nominal : { start: nominal.start, end: addMonthsClamped(nominal.start, plan.interval === 'year' ? 12 : 1) };
  const billedMs = paying.end - paying.start;
  const nominalMs = nominalFor.end - nominalFor.start;
  const committed = roundMoney(billedMs === nominalMs ? dec(plan.minimumCommitment) : dec(plan.minimumCommitment).times(billedMs).div(nominalMs), sub.currency);
  const subtotal = lines.reduce((s, l) => s.plus(l.amount), dec(0));
  const short = dec(committed.amount).minus(subtotal);
  if (short.lte(0)) return null;
  const amount = formatMoney(short, sub.currency);
  const details: CommitmentDetails = {
    commitment: plan.minimumCommitment,
    billedSeconds: dec(billedMs).div(1000).toFixed(),
    periodSeconds: dec(nominalMs).div(1000).toFixed(),
    committed: committed.amount,
    subtotal: formatMoney(subtotal, sub.currency),
  };
  return {
    kind: 'commitment',
    featureKey: null,
    description: `Minimum commitment true-up (${committed.amount} ${sub.currency.toUpperCase()} committed, ${details.subtotal} billed)`,
    quantity: null,
    unitPrice: null,
    amountPrecise: amount,
    amount,
    amountMinor: roundMoney(amount, sub.currency).minor,
    period,
    planKey: plan.planKey,
    planVersion: plan.version,
    priceSnapshot: null,
    details,
  };
}

/** What a commitment line adds, recomputed from its details (for `billing verify`). */
export function commitmentAmount(d: CommitmentDetails, currency: string): string {
  const committed = roundMoney(dec(d.commitment).times(d.billedSeconds).div(d.periodSeconds), currency).amount;
  return formatMoney(Decimal.max(dec(committed).minus(d.subtotal), 0), currency);
}
