import type { Knex } from 'knex';
import { loadDefaultTaxRates } from '../catalog/repository.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { bool, withTx } from '../storage/sql.js';

/** A tax rate (DESIGN.md §13): a percentage, exclusive (added on top) or inclusive (already in the prices). */
export interface TaxRate {
  name: string;
  rate: string;
  inclusive: boolean;
}

type Q = Knex | Knex.Transaction;

// Tax rates (DESIGN.md §13): a tenant's own, or the catalog's default when it has none set.
// What they add to an invoice is computed in rate/taxes.ts.

export interface TenantTaxes {
  tenantId: string;
  /** 'tenant': its own rates (none after `tax set --none`); 'catalog': the catalog's default. */
  source: 'tenant' | 'catalog';
  rates: TaxRate[];
}

const RATE = /^\d{1,3}(\.\d{1,6})?$/;
const NAME = /^[\p{L}\p{N} ._\-/()%]{1,64}$/u;

/** A tax rate as given (`tax set`, `tenant import`): a name and a percentage from 0 to 100. */
export function checkTaxRate(t: { name: string; rate: string }): void {
  if (!NAME.test(t.name)) throw new BillingError('invalid_input', `tax name "${t.name}" must be 1 to 64 letters, digits, spaces or . _ - / ( ) %`);
  if (!RATE.test(t.rate) || dec(t.rate).gt(100)) {
    throw new BillingError('invalid_input', `tax rate "${t.rate}" must be a percentage from 0 to 100, like "19" or "7.7"`);
  }
}

/** The row of a tenant's own tax rate. */
export function taxRateRow(tenantId: string, t: TaxRate, now: Instant) {
  return { tenant_id: tenantId, name: t.name, rate: dec(t.rate).toFixed(), inclusive: t.inclusive, created_at: now };
}

/** The rates a tenant's invoices are taxed at. */
export async function loadTenantTaxes(q: Q, tenantId: string): Promise<TenantTaxes> {
  const tenant = await q('tenants').where({ id: tenantId }).first('id', 'taxes_set');
  if (!tenant) throw new BillingError('not_found', `unknown tenant "${tenantId}"`);
  const rates = (await loadTaxRatesByTenant(q, [tenantId])).get(tenantId) ?? [];
  return { tenantId, source: bool(tenant.taxes_set) ? 'tenant' : 'catalog', rates };
}

/**
 * `billing tax set TENANT --name N --rate R [--inclusive]` (adds or replaces the rate of that
 * name) or `--none` (the tenant is taxed at nothing, whatever the catalog's default).
 */
export async function setTenantTax(
  db: Db,
  tenantId: string,
  input: { none: true } | { name: string; rate: string; inclusive: boolean },
  opts: { now: Instant; actor: string },
): Promise<TenantTaxes> {
  if (!('none' in input)) checkTaxRate(input);
  return withTx(db, async (trx) => {
    const tenant = await trx('tenants').where({ id: tenantId }).forUpdate().first();
    if (!tenant) throw new BillingError('not_found', `unknown tenant "${tenantId}" (create it with \`billing tenant create\`)`);
    const before = await loadTenantTaxes(trx, tenantId);
    if ('none' in input) await trx('tenant_tax_rates').where({ tenant_id: tenantId }).del();
    else {
      await trx('tenant_tax_rates').where({ tenant_id: tenantId, name: input.name }).del();
      await trx('tenant_tax_rates').insert(taxRateRow(tenantId, input, opts.now));
    }
    await trx('tenants').where({ id: tenantId }).update({ taxes_set: true });
    const after = await loadTenantTaxes(trx, tenantId);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId, entity: 'tax', entityId: tenantId, action: 'update', before, after });
    return after;
  });
}

/** `loadTenantTaxes` for many tenants at once (reports): tenant id → the rates its invoices are taxed at. */
export async function loadTaxRatesByTenant(q: Q, tenantIds: string[]): Promise<Map<string, TaxRate[]>> {
  const out = new Map<string, TaxRate[]>();
  if (tenantIds.length === 0) return out;
  const tenants = await q('tenants').whereIn('id', tenantIds).select('id', 'taxes_set');
  const own = tenants.filter((t) => bool(t.taxes_set)).map((t) => t.id as string);
  const defaults = tenants.length > own.length ? await loadDefaultTaxRates(q) : [];
  for (const t of tenants) out.set(t.id, bool(t.taxes_set) ? [] : defaults);
  if (own.length > 0) {
    for (const r of await q('tenant_tax_rates').whereIn('tenant_id', own).orderBy('tenant_id').orderBy('name')) {
      out.get(r.tenant_id)!.push({ name: r.name, rate: r.rate, inclusive: bool(r.inclusive) });
    }
  }
  return out;
}
