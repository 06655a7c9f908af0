import { listPlanKeys, loadCurrentPlanVersion } from '../catalog/repository.js';
import { dec } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import { parseInstant, type Instant } from '../domain/period.js';
import { parseQuantity } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import type { PlanVersion } from '../domain/catalog.js';
import { auditRow } from '../storage/audit.js';
import { bool } from '../storage/sql.js';
import { newSegmentRow, newSubscription, newSubscriptionRow, subscriptionChanged, subscriptionCreated } from './lifecycle.js';
import { emitEvents, type NewEvent } from '../webhooks/events.js';
import { tenantFromRow, type Tenant } from './repository.js';
import { checkCurrency, checkTenantId, newTenant, tenantCreated } from './tenants.js';
import { checkTaxRate, taxRateRow, type TaxRate } from './taxes.js';

/** Rows per statement: well under SQLite's bind limit for the widest table written. */
const CHUNK = 200;

/** The columns of a tenant import (CSV header or NDJSON keys); only `id` is required. */
export const IMPORT_FIELDS = ['id', 'name', 'currency', 'plan', 'start', 'trial_days', 'tax_name', 'tax_rate', 'tax_inclusive'] as const;
export type ImportField = (typeof IMPORT_FIELDS)[number];
/** `included.FEATURE` columns: the tenant's override of a feature's included quantity (`quota set --included`). */
export const IMPORT_QUOTA_FIELDS = { pattern: /^included\.[a-z][a-z0-9_]*$/, label: 'included.FEATURE' };

/** One input record: its line and its fields as text (absent or empty: not given). */
export interface ImportRecord {
  line: number;
  fields: Partial<Record<ImportField, string>> & Record<string, string | undefined>;
}

export interface ImportReject {
  line: number;
  /** The field at fault, when one is. */
  field: string | null;
  message: string;
}

export interface ImportResult {
  created: number;
  subscribed: number;
  /** Rows already imported as they are (a rerun). */
  unchanged: number;
  rejected: ImportReject[];
}

interface Row {
  line: number;
  id: string;
  name?: string;
  currency?: string;
  plan?: string;
  start?: Instant;
  trialDays?: number;
  /** The tenant's own tax rate (`tax set`), when the row names one. */
  tax?: TaxRate;
  /** Included-quantity overrides by feature key (null: unlimited). */
  included: Map<string, string | null>;
}

class RowError extends Error {
  constructor(
    readonly field: string | null,
    message: string,
  ) {
    super(message);
  }
}

function checkRow(r: ImportRecord): Row {
  const f = r.fields;
  const given = (k: ImportField) => (f[k] === undefined || f[k]!.trim() === '' ? undefined : f[k]!.trim());
  const field = <T>(k: ImportField, check: (v: string) => T): T | undefined => {
    const v = given(k);
    if (v === undefined) return undefined;
    try {
      return check(v);
    } catch (e) {
      throw new RowError(k, (e as Error).message);
    }
  };
  const id = field('id', checkTenantId);
  if (id === undefined) throw new RowError('id', 'a tenant id is required');
  const start = field('start', (v) => {
    const t = parseInstant(v);
    if (t === null) throw new Error(`"${v}" is not an ISO 8601 instant with a zone (e.g. 2026-01-01T00:00:00Z)`);
    return t;
  });
  const trialDays = field('trial_days', (v) => {
    if (!/^\d+$/.test(v)) throw new Error(`"${v}" is not a whole number of days`);
    return Number(v);
  });
  const plan = given('plan');
  if (plan === undefined && (start !== undefined || trialDays !== undefined)) {
    throw new RowError(start !== undefined ? 'start' : 'trial_days', 'is only meaningful with a plan');
  }
  const taxName = given('tax_name');
  const taxRate = given('tax_rate');
  if ((taxName === undefined) !== (taxRate === undefined)) throw new RowError(taxName === undefined ? 'tax_name' : 'tax_rate', 'tax_name and tax_rate go together');
  const inclusive = field('tax_inclusive', (v) => {
    if (!/^(true|false|yes|no|1|0)$/i.test(v)) throw new Error(`"${v}" is not true or false`);
    return /^(true|yes|1)$/i.test(v);
  });
  if (taxName === undefined && inclusive !== undefined) throw new RowError('tax_inclusive', 'is only meaningful with tax_name and tax_rate');
  let tax: TaxRate | undefined;
  if (taxName !== undefined && taxRate !== undefined) {
    tax = { name: taxName, rate: taxRate, inclusive: inclusive ?? false };
    try {
      checkTaxRate(tax);
    } catch (e) {
      throw new RowError(/rate/.test((e as Error).message.split('"')[0]) ? 'tax_rate' : 'tax_name', (e as Error).message);
    }
  }
  const included = new Map<string, string | null>();
  for (const [k, v] of Object.entries(f)) {
    if (!IMPORT_QUOTA_FIELDS.pattern.test(k) || v === undefined || v.trim() === '') continue;
    const value = v.trim();
    if (/^unlimited$/i.test(value)) included.set(k.slice('included.'.length).toUpperCase(), null);
    else {
      const q = parseQuantity(value);
      if (!q.ok) throw new RowError(k, `"${value}" must be a non-negative number up to 1e12 with at most 6 decimals, or "unlimited"`);
      included.set(k.slice('included.'.length).toUpperCase(), q.value);
    }
  }
  return { line: r.line, id, name: given('name'), currency: field('currency', checkCurrency), plan, start, trialDays, tax, included };
}

/**
 * Create tenants, and subscribe those with a plan, from records (`billing tenant import`),
 * all in one transaction: a bad row is rejected with its line and field and the others are
 * imported. Idempotent: a tenant that exists as the row describes it (same name and currency,
 * and a subscription on the row's plan when it has one) is unchanged; one that exists
 * otherwise is rejected (`billing tenant update` changes a tenant). `dryRun` rolls back.
 */
export async function importTenants(
  db: Db,
  records: ImportRecord[],
  opts: { now: Instant; actor: string; dryRun?: boolean },
): Promise<ImportResult> {
  const result: ImportResult = { created: 0, subscribed: 0, unchanged: 0, rejected: [] };
  const rows: Row[] = [];
  const seen = new Map<string, number>();
  for (const r of records) {
    try {
      const row = checkRow(r);
      const first = seen.get(row.id);
      if (first !== undefined) throw new RowError('id', `tenant "${row.id}" is already on line ${first}`);
      seen.set(row.id, row.line);
      rows.push(row);
    } catch (e) {
      if (!(e instanceof RowError)) throw e;
      result.rejected.push({ line: r.line, field: e.field, message: e.message });
    }
  }
  const rollback = new Error('dry run');
  try {
    await db.tx(async (tx) => {
      const plans = new Map<string, PlanVersion>();
      for (const key of await listPlanKeys(tx.knex)) {
        const pv = await loadCurrentPlanVersion(tx.knex, key);
        if (pv) plans.set(key, pv);
      }
      // Tenants already there, and the plans each has been on: read once, in chunks.
      const existing = new Map<string, Existing>();
      for (let i = 0; i < rows.length; i += CHUNK) {
        const ids = rows.slice(i, i + CHUNK).map((r) => r.id);
        for (const r of await tx.knex('tenants').select('*').whereIn('id', ids)) existing.set(r.id as string, { tenant: tenantFromRow(r), plans: new Set(), taxes: new Map(), included: new Map() });
        for (const r of await tx.knex('tenant_tax_rates').select('*').whereIn('tenant_id', ids)) {
          existing.get(r.tenant_id as string)?.taxes.set(r.name as string, { name: r.name, rate: r.rate, inclusive: bool(r.inclusive) });
        }
        for (const r of await tx.knex('quota_overrides').select('*').whereIn('tenant_id', ids)) {
          if (bool(r.included_set)) existing.get(r.tenant_id as string)?.included.set(r.feature_key as string, r.included ?? null);
        }
        for (const r of await tx.knex('subscription_segments').distinct('tenant_id', 'plan_key').whereIn('tenant_id', ids)) {
          existing.get(r.tenant_id as string)?.plans.add(r.plan_key as string);
        }
      }
      // Every row is checked in memory; new tenants are written in bulk.
      const fresh = { tenants: [] as object[], subscriptions: [] as object[], segments: [] as object[], taxes: [] as object[], quotas: [] as object[], audit: [] as object[], events: [] as NewEvent[] };
      const features = new Map((await tx.knex('features').select('key', 'type')).map((f) => [f.key as string, f.type as string]));
      const reject = (row: Row, e: unknown) => {
        if (!(e instanceof BillingError || e instanceof RowError)) throw e;
        result.rejected.push({ line: row.line, field: e instanceof RowError ? e.field : null, message: e.message });
      };
      for (const row of rows) {
        try {
          const plan = planOf(row, plans);
          for (const key of row.included.keys()) {
            const type = features.get(key);
            if (type === undefined) throw new RowError(`included.${key.toLowerCase()}`, `unknown feature "${key}" (see \`billing catalog show\`)`);
            if (type === 'boolean') throw new RowError(`included.${key.toLowerCase()}`, `${key} is a boolean feature: it has no quota`);
          }
          const found = existing.get(row.id);
          if (found) {
            checkUnchanged(row, plan, found);
            result.unchanged++;
            continue;
          }
          const { row: tenantRow, tenant } = newTenant({ id: row.id, name: row.name, currency: row.currency }, opts.now);
          fresh.tenants.push({ ...tenantRow, taxes_set: row.tax !== undefined });
          for (const [featureKey, included] of row.included) {
            fresh.quotas.push({ tenant_id: row.id, feature_key: featureKey, included, included_set: true, unit_price: null, hard_stop: null, limit: null, updated_at: opts.now });
            fresh.audit.push(auditRow({ at: opts.now, actor: opts.actor, tenantId: row.id, entity: 'quota', entityId: `${row.id}/${featureKey}`, action: 'create', after: { tenantId: row.id, featureKey, included } }));
          }
          if (row.tax) {
            fresh.taxes.push(taxRateRow(row.id, row.tax, opts.now));
            fresh.audit.push(auditRow({ at: opts.now, actor: opts.actor, tenantId: row.id, entity: 'tax', entityId: row.id, action: 'update', after: { tenantId: row.id, source: 'tenant', rates: [row.tax] } }));
          }
          fresh.audit.push(auditRow(tenantCreated(tenant, opts)));
          result.created++;
          if (plan) {
            const { sub, segment } = newSubscription({ tenantId: row.id, plan, start: row.start ?? opts.now, trialDays: row.trialDays, ordinal: 1 }, opts.now);
            fresh.subscriptions.push(newSubscriptionRow(sub, opts.now));
            fresh.segments.push(newSegmentRow(segment, opts.now));
            fresh.audit.push(auditRow(subscriptionCreated(sub, segment, opts)));
            fresh.events.push(subscriptionChanged('create', sub, [segment], opts.now));
            result.subscribed++;
          }
        } catch (e) {
          reject(row, e);
        }
      }
      for (const [table, list] of [['tenants', fresh.tenants], ['subscriptions', fresh.subscriptions], ['subscription_segments', fresh.segments], ['tenant_tax_rates', fresh.taxes], ['quota_overrides', fresh.quotas], ['audit_log', fresh.audit]] as const) {
        for (let i = 0; i < list.length; i += CHUNK) await tx.knex(table).insert(list.slice(i, i + CHUNK));
      }
      await emitEvents(tx.knex, fresh.events);
      if (opts.dryRun) throw rollback;
    });
  } catch (e) {
    if (e !== rollback) throw e;
  }
  result.rejected.sort((a, b) => a.line - b.line);
  return result;
}

/** The plan a row subscribes to (its current version), checked against the row's currency. */
function planOf(row: Row, plans: Map<string, PlanVersion>): PlanVersion | undefined {
  if (row.plan === undefined) return undefined;
  const plan = plans.get(row.plan);
  if (!plan) throw new RowError('plan', `plan "${row.plan}" does not exist (see \`billing catalog show\`)`);
  if (row.currency !== undefined && row.currency !== plan.currency) {
    throw new RowError('currency', `${row.currency} differs from plan "${plan.planKey}", billed in ${plan.currency}`);
  }
  return plan;
}

interface Existing {
  tenant: Tenant;
  /** Plan keys of the tenant's subscription segments. */
  plans: Set<string>;
  /** Its own tax rates by name. */
  taxes: Map<string, TaxRate>;
  /** Its included-quantity overrides by feature (null: unlimited). */
  included: Map<string, string | null>;
}

/** An existing tenant is fine as the row describes it, else the row is rejected. */
function checkUnchanged(row: Row, plan: PlanVersion | undefined, { tenant, plans, taxes, included }: Existing): void {
  for (const [key, want] of row.included) {
    const has = included.get(key);
    const same = has === undefined ? false : has === null || want === null ? has === want : dec(has).eq(want);
    if (!same) {
      throw new RowError(`included.${key.toLowerCase()}`, `tenant "${row.id}" exists with ${has === undefined ? 'no override' : `included ${has ?? 'unlimited'}`} for ${key}, not ${want ?? 'unlimited'} (change it with \`billing quota set\`)`);
    }
  }
  const differs = (field: ImportField, ours: string | null, theirs: string | undefined) => {
    if (theirs !== undefined && theirs !== ours) {
      throw new RowError(field, `tenant "${row.id}" exists with ${field} ${ours ?? '(none)'}, not ${theirs} (change it with \`billing tenant update\`)`);
    }
  };
  differs('name', tenant.name, row.name);
  differs('currency', tenant.currency, row.currency);
  if (plan && !plans.has(plan.planKey)) throw new RowError('plan', `tenant "${row.id}" exists without a subscription to "${plan.planKey}"`);
  if (row.tax) {
    const t = taxes.get(row.tax.name);
    if (!t || !dec(t.rate).eq(row.tax.rate) || t.inclusive !== row.tax.inclusive) {
      throw new RowError('tax_rate', `tenant "${row.id}" exists without ${row.tax.name} ${row.tax.rate}%${row.tax.inclusive ? ' inclusive' : ''} (change it with \`billing tax set\`)`);
    }
  }
}
