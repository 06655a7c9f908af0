import type { Knex } from 'knex';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { asText, bool } from '../storage/sql.js';
import type { RatedCharge } from './charge.js';

type Q = Knex | Knex.Transaction;

export const CHARGE_KEY = ['tenant_id', 'feature_key', 'period_start'];

export function chargeToRow(c: RatedCharge): Record<string, unknown> {
  return {
    tenant_id: c.tenantId,
    feature_key: c.featureKey,
    period_start: c.periodStart,
    period_end: c.periodEnd,
    plan_key: c.planKey,
    plan_version: c.planVersion,
    currency: c.currency,
    used: c.used,
    included: c.included,
    billable: c.billable,
    amount_precise: c.amountPrecise,
    amount: c.amount,
    amount_minor: c.amountMinor,
    hard_stop: c.hardStop,
    is_exceeded: c.isExceeded,
    price_snapshot: JSON.stringify(c.priceSnapshot),
    details: JSON.stringify(c.lines),
    rated_at: c.ratedAt,
    summary_quantity: c.summaryQuantity,
  };
}

/** Map a rated_charges row (amount_minor and summary_quantity selected as text). */
export function chargeFromRow(r: Record<string, any>): RatedCharge {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    tenantId: r.tenant_id,
    featureKey: r.feature_key,
    periodStart: Number(r.period_start),
    periodEnd: Number(r.period_end),
    planKey: r.plan_key ?? null,
    planVersion: n(r.plan_version),
    currency: r.currency,
    used: r.used,
    included: r.included ?? null,
    billable: r.billable,
    amountPrecise: r.amount_precise,
    amount: r.amount,
    amountMinor: String(r.amount_minor),
    hardStop: bool(r.hard_stop),
    isExceeded: bool(r.is_exceeded),
    priceSnapshot: r.price_snapshot ? JSON.parse(r.price_snapshot) : { unrated: 'no_subscription' },
    lines: r.details ? JSON.parse(r.details) : [],
    ratedAt: Number(r.rated_at),
    summaryQuantity: r.summary_quantity === null || r.summary_quantity === undefined ? null : String(r.summary_quantity),
  };
}

export type ChargeId = { tenantId: string; featureKey: string; periodStart: Instant };

export async function deleteCharges(trx: Q, ids: ChargeId[]): Promise<void> {
  for (const id of ids) {
    await trx('rated_charges').where({ tenant_id: id.tenantId, feature_key: id.featureKey, period_start: id.periodStart }).del();
  }
}

/** Insert or replace charges by (tenant, feature, period start), in chunks that fit SQLite's variable limit. */
export async function upsertCharges(trx: Q, charges: RatedCharge[], chunk = 400): Promise<void> {
  for (let i = 0; i < charges.length; i += chunk) {
    const rows = charges.slice(i, i + chunk).map(chargeToRow);
    await trx('rated_charges').insert(rows).onConflict(CHARGE_KEY).merge();
  }
}

const COLUMNS = [
  'tenant_id', 'feature_key', 'period_start', 'period_end', 'plan_key', 'plan_version', 'currency', 'used',
  'included', 'billable', 'amount_precise', 'amount', 'hard_stop', 'is_exceeded', 'price_snapshot', 'details', 'rated_at',
];

/** A tenant's rated charges, optionally for one period start, ordered by period then feature. */
export async function loadRatedCharges(
  db: Db,
  tenantId: string,
  opts: { periodStart?: Instant } = {},
): Promise<RatedCharge[]> {
  const rows = await db.knex('rated_charges')
    .select(...COLUMNS)
    .select(asText(db, 'amount_minor').wrap('(', ') AS amount_minor'), asText(db, 'summary_quantity').wrap('(', ') AS summary_quantity'))
    .where({ tenant_id: tenantId })
    .modify((b) => {
      if (opts.periodStart !== undefined) b.andWhere({ period_start: opts.periodStart });
    })
    .orderBy('period_start')
    .orderBy('feature_key');
  return rows.map(chargeFromRow);
}
