import { Decimal, dec } from '../domain/decimal.js';
import { formatMoney, roundMoney } from '../domain/money.js';
import type { Instant, Period } from '../domain/period.js';
import { adjustmentLine, type CreditDetails, type RatedLine } from './lines.js';
import type { CreditAvailable } from '../subscriptions/credits.js';
export type { CreditAvailable };


/** The order credits are consumed in: lowest priority number, then earliest expiry (never last), then oldest. */
export function creditOrder(a: CreditAvailable, b: CreditAvailable): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt ?? Infinity;
  const eb = b.expiresAt ?? Infinity;
  if (ea !== eb) return ea < eb ? -1 : 1;
  return a.seq - b.seq || a.instance - b.instance;
}

/**
 * The prepaid-credit lines of an invoice (DESIGN.md §13 step 4): grants (already filtered to
 * those effective at issue time, unexpired, in its currency) applied in `creditOrder` to the
 * total so far, never past it. Negative lines.
 */
export function creditLines(lines: RatedLine[], credits: CreditAvailable[], currency: string, period: Period): RatedLine[] {
  let left = Decimal.max(lines.reduce((s, l) => s.plus(l.amount), dec(0)), 0);
  const out: RatedLine[] = [];
  for (const c of [...credits].sort(creditOrder)) {
    if (left.isZero()) break;
    const take = Decimal.min(dec(c.balance), left);
    if (take.lte(0)) continue;
    left = left.minus(take);
    const amount = formatMoney(take.neg(), currency);
    const details: CreditDetails = { grantId: c.grantId, instance: c.instance, balanceBefore: formatMoney(c.balance, currency) };
    out.push(adjustmentLine('prepaid_credit', `Prepaid credit: ${c.name} (${c.grantId}${c.instance > 0 ? ` #${c.instance + 1}` : ''})`, amount, roundMoney(amount, currency).minor, period, details));
  }
  return out;
}
