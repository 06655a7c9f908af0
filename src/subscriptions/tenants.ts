import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import { isKnownCurrency } from '../domain/money.js';
import type { Instant } from '../domain/period.js';
import { writeAudit, type AuditEntry } from '../storage/audit.js';
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
  const { row, tenant } = newTenant(input, opts.now);
  return withTx(db, async (trx) => {
    if (await loadTenant(trx, tenant.id)) throw new BillingError('conflict', `tenant "${tenant.id}" already exists`);
    await trx('tenants').insert(row);
    await writeAudit(trx, tenantCreated(tenant, opts));
    return tenant;
  });
}

/** A new tenant, checked, and its row. */
export function newTenant(input: { id: string; name?: string; currency?: string }, now: Instant) {
  const id = checkTenantId(input.id);
  const currency = input.currency === undefined ? null : checkCurrency(input.currency);
  const name = input.name === undefined || input.name.trim() === '' ? null : input.name.trim();
  const row = { id, name, currency, stripe_customer_id: null, created_at: now };
  return { row, tenant: tenantFromRow(row) };
}

export function tenantCreated(tenant: Tenant, opts: { now: Instant; actor: string }): AuditEntry {
  return { at: opts.now, actor: opts.actor, tenantId: tenant.id, entity: 'tenant', entityId: tenant.id, action: 'create', after: tenant };
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
export async function listTenantOverview(db: Db, opts: { now: Instant; tenantId?: string }): Promise<TenantOverview[]> {
  const q = db.knex;
  const one = (b: Knex.QueryBuilder) => {
    if (opts.tenantId !== undefined) b.where('tenant_id', opts.tenantId);
  };
  const tenants = opts.tenantId === undefined ? await listTenants(q) : [await loadTenant(q, opts.tenantId)].filter((t): t is Tenant => t !== null);
  const subs = (await q('subscriptions').select('*').modify(one).orderBy('tenant_id').orderBy('started_at').orderBy('id')).map(subscriptionFromRow);
  const latest = new Map<string, Subscription>();
  for (const s of subs) {
    const cur = latest.get(s.tenantId);
    // Prefer the one in force now; otherwise the most recent.
    const live = (x: Subscription) => x.startedAt <= opts.now && (x.cancelAt === null || x.cancelAt > opts.now);
    if (!cur || !live(cur) || live(s)) latest.set(s.tenantId, s);
  }
  const segs = (await q('subscription_segments').select('*').modify(one).orderBy('tenant_id').orderBy('seq')).map(segmentFromRow);
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

/**
 * Change a tenant's name or currency (`billing tenant update`); null clears. A currency must
 * be the one of every subscription the tenant has had, so it never contradicts its invoices.
 */
export async function updateTenant(
  db: Db,
  id: string,
  input: { name?: string | null; currency?: string | null },
  opts: { now: Instant; actor: string },
): Promise<Tenant> {
  const change: Record<string, string | null> = {};
  if (input.name !== undefined) change.name = input.name === null || input.name.trim() === '' ? null : input.name.trim();
  if (input.currency !== undefined) change.currency = input.currency === null ? null : checkCurrency(input.currency);
  if (Object.keys(change).length === 0) throw new BillingError('usage', 'nothing to update: give --name, --currency or --no-currency');
  return withTx(db, async (trx) => {
    const before = await loadTenant(trx, id);
    if (!before) throw new BillingError('not_found', `tenant "${id}" does not exist (see \`billing tenant list\`)`);
    if (typeof change.currency === 'string') {
      const other = await trx('subscriptions').where({ tenant_id: id }).whereNot('currency', change.currency).first();
      if (other) throw new BillingError('conflict', `tenant "${id}" has subscription ${other.id} billed in ${other.currency}; its currency cannot become ${change.currency}`);
    }
    await trx('tenants').where({ id }).update(change);
    const after = (await loadTenant(trx, id))!;
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: id, entity: 'tenant', entityId: id, action: 'update', before, after });
    return after;
  });
}
