import { BillingError } from '../domain/errors.js';
import { isKnownCurrency } from '../domain/money.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import { effectiveStatus } from './lifecycle.js';
import {
  listTenants,
  loadTenant,
  tenantFromRow,
  segmentFromRow,
  subscriptionFromRow,
  type Segment,
  type Subscription,
  type SubscriptionStatus,
  type Tenant,
} from './repository.js';
import { segmentAt } from './timeline.js';

const MAX_ID = 128;

/** Tenant ids appear in every key and in file exports: non-empty, no whitespace, ≤ 128 chars. */
export function checkTenantId(id: unknown): string {
  if (typeof id !== 'string' || id === '') throw new BillingError('invalid_input', 'tenant id must be a non-empty string');
  if (/\s/.test(id)) throw new BillingError('invalid_input', `tenant id "${id}" must not contain whitespace`);
  if (id.length > MAX_ID) throw new BillingError('invalid_input', `tenant id must be at most ${MAX_ID} characters (got ${id.length})`);
  return id;
}

export function checkCurrency(currency: string): string {
  const c = currency.trim().toUpperCase();
  if (!isKnownCurrency(c)) throw new BillingError('invalid_input', `"${currency}" is not an ISO 4217 currency code (e.g. USD, EUR, JPY)`);
  return c;
}

export async function createTenant(
  db: Db,
  input: { id: string; name?: string; currency?: string },
  opts: { now: Instant; actor: string },
): Promise<Tenant> {
  const id = checkTenantId(input.id);
  const currency = input.currency === undefined ? null : checkCurrency(input.currency);
  const name = input.name === undefined || input.name.trim() === '' ? null : input.name.trim();
  return withTx(db, async (trx) => {
    if (await loadTenant(trx, id)) throw new BillingError('conflict', `tenant "${id}" already exists`);
    const row = { id, name, currency, stripe_customer_id: null, created_at: opts.now };
    await trx('tenants').insert(row);
    const tenant = tenantFromRow(row);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: id, entity: 'tenant', entityId: id, action: 'create', after: tenant });
    return tenant;
  });
}

export interface TenantOverview extends Tenant {
  subscriptionId: string | null;
  planKey: string | null;
  planVersion: number | null;
  status: SubscriptionStatus | null;
}

/**
 * Every tenant with the subscription that is live at `now` (or its latest one) and the plan
 * in force: for `billing tenant list`.
 */
export async function listTenantOverview(db: Db, opts: { now: Instant }): Promise<TenantOverview[]> {
  const q = db.knex;
  const tenants = await listTenants(q);
  const subs = (await q('subscriptions').select('*').orderBy('tenant_id').orderBy('started_at').orderBy('id')).map(subscriptionFromRow);
  const latest = new Map<string, Subscription>();
  for (const s of subs) {
    const cur = latest.get(s.tenantId);
    // Prefer the one in force now; otherwise the most recent.
    const live = (x: Subscription) => x.startedAt <= opts.now && (x.cancelAt === null || x.cancelAt > opts.now);
    if (!cur || !live(cur) || live(s)) latest.set(s.tenantId, s);
  }
  const segs = (await q('subscription_segments').select('*').orderBy('tenant_id').orderBy('seq')).map(segmentFromRow);
  const bySub = new Map<string, Segment[]>();
  for (const s of segs) {
    const k = `${s.tenantId}\u0000${s.subscriptionId}`;
    bySub.set(k, [...(bySub.get(k) ?? []), s]);
  }
  return tenants.map((t) => {
    const sub = latest.get(t.id) ?? null;
    const list = sub ? (bySub.get(`${t.id}\u0000${sub.id}`) ?? []) : [];
    const at = sub ? Math.min(Math.max(opts.now, sub.startedAt), sub.cancelAt === null ? Infinity : sub.cancelAt - 1) : opts.now;
    const seg = segmentAt(list, at) ?? list[list.length - 1] ?? null;
    return {
      ...t,
      subscriptionId: sub?.id ?? null,
      planKey: seg?.planKey ?? null,
      planVersion: seg?.planVersion ?? null,
      status: sub ? effectiveStatus(sub, opts.now) : null,
    };
  });
}
