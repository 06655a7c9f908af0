import type { Knex } from 'knex';
import type { PlanFeature, QuotaOverride } from '../domain/catalog.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { parseQuantity } from '../domain/quantity.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { listSegments, loadTenant, subscriptionAt } from './repository.js';
import { segmentAt } from './timeline.js';
import { limitFollowsIncluded, loadFeature, loadPlanVersion, loadQuotaOverride, loadQuotaOverrides } from '../catalog/repository.js';

export interface QuotaInput {
  tenantId: string;
  featureKey: string;
  /** undefined: keep; null: unlimited. */
  included?: string | null;
  /** undefined: keep; null: back to the plan's pricing. */
  unitPrice?: string | null;
  hardStop?: boolean;
  /** undefined: keep; null: back to the plan's limit rule (see effectiveLimit). */
  limit?: string | null;
}

const PRICE = /^\d{1,18}(\.\d{1,12})?$/;

function quantity(v: string, what: string): string {
  const q = parseQuantity(v);
  if (!q.ok) throw new BillingError('invalid_input', `${what} "${v}" must be a non-negative number up to 1e12 with at most 6 decimals`);
  return q.value;
}

/**
 * Upsert one tenant's override of one feature's terms: only the fields given change. Read
 * back through applyOverride (catalog/repository.ts): included_set marks `included` as
 * overridden, NULL then meaning unlimited.
 */
export async function setQuota(db: Db, input: QuotaInput, opts: { now: Instant; actor: string }): Promise<QuotaOverride> {
  const given = (['included', 'unitPrice', 'hardStop', 'limit'] as const).filter((k) => input[k] !== undefined);
  if (given.length === 0) {
    throw new BillingError('usage', 'nothing to set: give --included, --unit-price, --hard-stop/--no-hard-stop or --limit');
  }
  const included = input.included === undefined || input.included === null ? input.included : quantity(input.included, 'included');
  const limit = input.limit === undefined || input.limit === null ? input.limit : quantity(input.limit, 'limit');
  if (typeof input.unitPrice === 'string' && !PRICE.test(input.unitPrice)) {
    throw new BillingError('invalid_input', `unit price "${input.unitPrice}" must be a non-negative decimal with at most 12 decimals, like "0.05"`);
  }
  return withTx(db, async (trx) => {
    // Row-locked so that two first-time sets for one tenant do not both insert.
    if (!(await trx('tenants').where({ id: input.tenantId }).forUpdate().first())) {
      throw new BillingError('not_found', `unknown tenant "${input.tenantId}" (create it with \`billing tenant create\`)`);
    }
    const feature = await loadFeature(trx, input.featureKey);
    if (!feature) throw new BillingError('not_found', `unknown feature "${input.featureKey}" (see \`billing catalog show\`)`);
    if (feature.type === 'boolean') {
      throw new BillingError('invalid_input', `${feature.key} is a boolean feature: it has no quota (enable it in a plan instead)`);
    }
    const key = { tenant_id: input.tenantId, feature_key: input.featureKey };
    const before = await loadQuotaOverride(trx, input.tenantId, input.featureKey);
    const row: Record<string, unknown> = { updated_at: opts.now };
    if (included !== undefined) Object.assign(row, { included, included_set: true });
    if (input.unitPrice !== undefined) row.unit_price = input.unitPrice;
    if (input.hardStop !== undefined) row.hard_stop = input.hardStop;
    if (limit !== undefined) row.limit = limit;
    if (before) await trx('quota_overrides').where(key).update(row);
    else await trx('quota_overrides').insert({ ...key, included_set: false, ...row });
    const after = (await loadQuotaOverride(trx, input.tenantId, input.featureKey))!;
    refuseInconsistent(await planFeatureAt(trx, input.tenantId, input.featureKey, opts.now), after);
    await writeAudit(trx, {
      at: opts.now,
      actor: opts.actor,
      tenantId: input.tenantId,
      entity: 'quota',
      entityId: `${input.tenantId}/${input.featureKey}`,
      action: before ? 'update' : 'create',
      before: before ?? undefined,
      after,
    });
    return after;
  });
}

/** The plan's terms for the feature under the tenant's subscription at `now`, if any. */
async function planFeatureAt(trx: Knex.Transaction, tenantId: string, featureKey: string, now: Instant): Promise<PlanFeature | null> {
  const sub = await subscriptionAt(trx, tenantId, now);
  const seg = sub ? segmentAt(await listSegments(trx, tenantId, sub.id), now) : null;
  const plan = seg ? await loadPlanVersion(trx, seg.planKey, seg.planVersion) : null;
  return plan?.features[featureKey] ?? null;
}

/**
 * Refuse terms that cut a tenant off short of what it pays for (a limit below included), or
 * a hard stop with nothing to stop at. Judged against the plan in force now; without one,
 * against the override alone.
 */
function refuseInconsistent(pf: PlanFeature | null, o: QuotaOverride): void {
  const included = o.included !== undefined ? o.included : pf ? pf.included : undefined;
  const hardStop = o.hardStop ?? pf?.hardStop ?? false;
  let limit: string | null = null;
  let whose = '';
  if (o.limit !== undefined && o.limit !== null) [limit, whose] = [o.limit, 'limit'];
  else if (pf && !limitFollowsIncluded(pf)) [limit, whose] = [pf.limit, "the plan's limit"];
  if (limit !== null && typeof included === 'string' && dec(limit).lt(dec(included))) {
    throw new BillingError(
      'invalid_input',
      `${whose} ${limit} is below included ${included}: the tenant would be cut off short of what it pays for; ` +
        `give --limit of at least ${included}${whose === 'limit' ? ' or --limit default' : ''}`,
    );
  }
  if (hardStop && included === null && limit === null) {
    throw new BillingError('invalid_input', 'a hard stop needs a limit when included is unlimited: give --limit');
  }
}

/** A tenant's overrides, by feature key. */
export async function listQuotas(db: Db, tenantId: string): Promise<QuotaOverride[]> {
  if (!(await loadTenant(db.knex, tenantId))) throw new BillingError('not_found', `unknown tenant "${tenantId}"`);
  return [...(await loadQuotaOverrides(db.knex, tenantId)).values()].sort((a, b) => a.featureKey.localeCompare(b.featureKey));
}
