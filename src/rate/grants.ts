import type { PlanFeature } from '../domain/catalog.js';
import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import type { Period } from '../domain/period.js';
import type { UnitGrant } from '../subscriptions/unit-grants.js';
export type { UnitGrant };

/** What a period draws from one grant. */
export interface GrantDraw {
  grantId: string;
  quantity: string;
  /** The grant's balance after this draw. */
  remaining: string;
}

/** Live in a period: effective before it ends, not expired or voided before it starts. */
export function grantLive(g: UnitGrant, p: Period): boolean {
  return g.effectiveAt < p.end && (g.expiresAt === null || g.expiresAt > p.start) && (g.voidedAt === null || g.voidedAt > p.start);
}

/** Drawing order: lowest priority number, then earliest expiry (never last), then oldest. */
export function grantOrder(a: UnitGrant, b: UnitGrant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt ?? Infinity;
  const eb = b.expiresAt ?? Infinity;
  if (ea !== eb) return ea < eb ? -1 : 1;
  return a.seq - b.seq;
}

/** A grant's balance as seen by a period: its quantity less what other periods drew. */
export function grantBalance(g: UnitGrant, p: Period): Decimal {
  let left = dec(g.quantity);
  for (const [start, q] of g.draws) if (start !== p.start) left = left.minus(q);
  return Decimal.max(ZERO, left);
}

/**
 * What a period's usage beyond the plan's included quantity draws from the tenant's live grants
 * of the feature. An invoiced period keeps what it drew (a zero draw marks one that drew nothing).
 */
export function drawGrants(grants: readonly UnitGrant[] | undefined, featureKey: string, p: Period, included: string | null, used: string): GrantDraw[] {
  if (!grants || included === null) return [];
  const mine = grants.filter((g) => g.featureKey === featureKey);
  if (mine.some((g) => g.draws.has(p.start))) {
    return mine
      .filter((g) => dec(g.draws.get(p.start) ?? '0').gt(0))
      .sort(grantOrder)
      .map((g) => ({ grantId: g.id, quantity: g.draws.get(p.start)!, remaining: decStr(grantBalance(g, p).minus(g.draws.get(p.start)!)) }));
  }
  let need = Decimal.max(ZERO, dec(used).minus(included));
  const out: GrantDraw[] = [];
  for (const g of mine.filter((x) => grantLive(x, p)).sort(grantOrder)) {
    if (need.isZero()) break;
    const balance = grantBalance(g, p);
    const take = Decimal.min(balance, need);
    if (take.lte(0)) continue;
    need = need.minus(take);
    out.push({ grantId: g.id, quantity: decStr(take), remaining: decStr(balance.minus(take)) });
  }
  return out;
}

/** The terms with what the period drew from grants added to `included`: the one place grants enter rating. */
export function withGrantDraws(terms: PlanFeature, draws: readonly GrantDraw[]): PlanFeature {
  if (draws.length === 0 || terms.included === null) return terms;
  const extra = draws.reduce((s, d) => s.plus(d.quantity), ZERO);
  return { ...terms, included: decStr(dec(terms.included).plus(extra)) };
}
