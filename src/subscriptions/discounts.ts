import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { loadFeature } from '../catalog/repository.js';
import { dec } from '../domain/decimal.js';
import { DISCOUNT_DURATIONS, type Discount, type DiscountDuration } from '../domain/discount.js';
import { BillingError } from '../domain/errors.js';
import { currencyDigits } from '../domain/money.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';

type Q = Knex | Knex.Transaction;

// Tenant discounts (DESIGN.md §13). What they take off an invoice is computed in
// rate/discounts.ts; this only stores them and which invoices used them.

export interface DiscountInput {
  tenantId: string;
  percent?: string;
  amount?: string;
  duration?: DiscountDuration;
  periods?: number;
  features?: string[];
  start?: Instant;
  /** A fixed id (the demo's, so that its output is the same every run); default random. */
  id?: string;
}

const DECIMAL = /^\d{1,18}(\.\d{1,12})?$/;

function discountFromRow(r: Record<string, any>, uses: number): Discount {
  return {
    id: r.id,
    tenantId: r.tenant_id,
    seq: Number(r.seq),
    percent: r.percent ?? null,
    amount: r.amount ?? null,
    duration: r.duration,
    periods: r.periods === null || r.periods === undefined ? null : Number(r.periods),
    features: r.features ? (JSON.parse(r.features) as string[]) : null,
    startsAt: Number(r.starts_at),
    createdAt: Number(r.created_at),
    removedAt: r.removed_at === null || r.removed_at === undefined ? null : Number(r.removed_at),
    uses,
  };
}

/**
 * A tenant's discounts in creation order, each with its uses: the periods of non-void invoices
 * that used it (a period's threshold invoices and its final one are one use), but
 * `exceptPeriod`, the period being invoiced. Removed ones only when asked.
 */
export async function loadDiscounts(q: Q, tenantId: string, opts: { withRemoved?: boolean; exceptPeriod?: number } = {}): Promise<Discount[]> {
  const query = q('discounts').select('*').where('tenant_id', tenantId).orderBy('seq');
  if (!opts.withRemoved) query.whereNull('removed_at');
  const rows = await query;
  if (rows.length === 0) return [];
  const uses = new Map<string, number>();
  for (const u of await q('discount_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .where('u.tenant_id', tenantId)
    .whereNot('i.status', 'void')
    .modify((b) => {
      if (opts.exceptPeriod !== undefined) b.whereNot('i.period_start', opts.exceptPeriod);
    })
    .groupBy('u.discount_id')
    .select('u.discount_id', q.raw('COUNT(DISTINCT i.period_start) AS n'))) {
    uses.set(u.discount_id, Number(u.n));
  }
  return rows.map((r) => discountFromRow(r, uses.get(r.id) ?? 0));
}

/** `billing discount add`: validates, stores and audits one discount; returns it. */
export async function addDiscount(db: Db, input: DiscountInput, opts: { now: Instant; actor: string }): Promise<Discount> {
  if ((input.percent === undefined) === (input.amount === undefined)) throw new BillingError('usage', 'give exactly one of --percent P and --amount X');
  const duration = input.duration ?? 'once';
  if (!DISCOUNT_DURATIONS.includes(duration)) throw new BillingError('usage', `unknown duration "${duration}" (use ${DISCOUNT_DURATIONS.join(', ')})`);
  if (duration === 'repeating') {
    if (input.periods === undefined || !Number.isInteger(input.periods) || input.periods < 1 || input.periods > 1000) {
      throw new BillingError('usage', '--duration repeating needs --periods N, a whole number of invoices from 1 to 1000');
    }
  } else if (input.periods !== undefined) throw new BillingError('usage', `--periods applies only to --duration repeating (not ${duration})`);
  if (input.percent !== undefined && (!DECIMAL.test(input.percent) || dec(input.percent).lte(0) || dec(input.percent).gt(100))) {
    throw new BillingError('invalid_input', `percent "${input.percent}" must be a decimal above 0 and at most 100, like "15" or "12.5"`);
  }
  if (input.amount !== undefined && (!DECIMAL.test(input.amount) || dec(input.amount).lte(0))) {
    throw new BillingError('invalid_input', `amount "${input.amount}" must be a positive decimal, like "25.00"`);
  }
  const features = input.features && input.features.length > 0 ? [...new Set(input.features)].sort() : null;
  return withTx(db, async (trx) => {
    // Row-locked so that two adds for one tenant take different sequence numbers.
    const tenant = await trx('tenants').where({ id: input.tenantId }).forUpdate().first();
    if (!tenant) throw new BillingError('not_found', `unknown tenant "${input.tenantId}" (create it with \`billing tenant create\`)`);
    if (input.amount !== undefined && tenant.currency && dec(input.amount).decimalPlaces() > currencyDigits(tenant.currency)) {
      throw new BillingError('invalid_input', `amount "${input.amount}" has more decimals than ${tenant.currency} has (${currencyDigits(tenant.currency)})`);
    }
    for (const key of features ?? []) {
      const f = await loadFeature(trx, key);
      if (!f) throw new BillingError('not_found', `unknown feature "${key}" (see \`billing catalog show\`)`);
      if (f.type !== 'metered') throw new BillingError('invalid_input', `${key} is a boolean feature: it has no lines to discount`);
    }
    const last = await trx('discounts').where('tenant_id', input.tenantId).max('seq as seq').first();
    const row = {
      tenant_id: input.tenantId,
      id: input.id ?? `dsc_${randomBytes(8).toString('hex')}`,
      seq: Number(last?.seq ?? 0) + 1,
      percent: input.percent ?? null,
      amount: input.amount ?? null,
      duration,
      periods: duration === 'repeating' ? input.periods! : null,
      features: features ? JSON.stringify(features) : null,
      starts_at: input.start ?? opts.now,
      created_at: opts.now,
      removed_at: null,
    };
    await trx('discounts').insert(row);
    const d = discountFromRow(row, 0);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: input.tenantId, entity: 'discount', entityId: d.id, action: 'create', after: d });
    return d;
  });
}

/**
 * `billing discount remove`: it applies to no invoice generated from now on. The row stays
 * (marked removed): invoices that used it keep naming it.
 */
export async function removeDiscount(db: Db, tenantId: string, id: string, opts: { now: Instant; actor: string }): Promise<Discount> {
  return withTx(db, async (trx) => {
    const row = await trx('discounts').where({ tenant_id: tenantId, id }).forUpdate().first();
    if (!row || row.removed_at !== null) {
      throw new BillingError('not_found', `tenant "${tenantId}" has no discount "${id}"${row ? ' (already removed)' : ''}; list them with \`billing discount list ${tenantId}\``);
    }
    await trx('discounts').where({ tenant_id: tenantId, id }).update({ removed_at: opts.now });
    const d = discountFromRow({ ...row, removed_at: opts.now }, 0);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId, entity: 'discount', entityId: id, action: 'remove', before: discountFromRow(row, 0), after: d });
    return d;
  });
}

/** `billing discount list`: every discount of the tenant, removed ones included. */
export async function listDiscounts(db: Db, tenantId: string): Promise<Discount[]> {
  if (!(await db.knex('tenants').where({ id: tenantId }).first())) throw new BillingError('not_found', `unknown tenant "${tenantId}"`);
  return loadDiscounts(db.knex, tenantId, { withRemoved: true });
}

/** The once / repeating discounts an invoice used, recorded in the invoice's transaction. */
export async function recordDiscountUses(trx: Knex.Transaction, tenantId: string, invoiceId: string, discountIds: string[]): Promise<void> {
  if (discountIds.length === 0) return;
  await trx('discount_uses').insert(discountIds.map((id) => ({ tenant_id: tenantId, discount_id: id, invoice_id: invoiceId })));
}

/**
 * Reports and estimates: the tenants' discounts (not removed), creation order, each with the
 * period start of every non-void invoice that used it, so a period's own uses can be left out.
 */
export async function loadDiscountsByTenant(q: Q, tenantIds: string[]): Promise<Map<string, Array<{ discount: Discount; usedFor: number[] }>>> {
  const out = new Map<string, Array<{ discount: Discount; usedFor: number[] }>>();
  if (tenantIds.length === 0) return out;
  const rows = await q('discounts').select('*').whereIn('tenant_id', tenantIds).whereNull('removed_at').orderBy('tenant_id').orderBy('seq');
  if (rows.length === 0) return out;
  const withDiscounts = [...new Set(rows.map((r) => r.tenant_id as string))];
  const usedFor = new Map<string, number[]>();
  for (const u of await q('discount_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .whereIn('u.tenant_id', withDiscounts)
    .whereNot('i.status', 'void')
    .select('u.discount_id', 'i.period_start')) {
    const list = usedFor.get(u.discount_id) ?? [];
    list.push(Number(u.period_start));
    usedFor.set(u.discount_id, list);
  }
  for (const r of rows) {
    const used = usedFor.get(r.id) ?? [];
    const list = out.get(r.tenant_id) ?? [];
    list.push({ discount: discountFromRow(r, used.length), usedFor: used });
    out.set(r.tenant_id, list);
  }
  return out;
}
