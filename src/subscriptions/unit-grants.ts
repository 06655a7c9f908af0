import { randomBytes } from 'node:crypto';
import type { Knex } from 'knex';
import { Decimal, ZERO, dec, decStr } from '../domain/decimal.js';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';

type Q = Knex | Knex.Transaction;

// Grants of units (DESIGN.md §14): top-ups of a feature's included quantity. How periods draw
// on them is rate/grants.ts; what an invoiced period drew is stored in grant_uses.

/** A grant of units of one feature (DESIGN.md §14), with what invoiced periods drew from it. */
export interface UnitGrant {
  id: string;
  seq: number;
  featureKey: string;
  quantity: string;
  priority: number;
  effectiveAt: Instant;
  expiresAt: Instant | null;
  voidedAt: Instant | null;
  /** period_start → units that period's non-void invoice drew ('0' for every other invoiced period). */
  draws: Map<number, string>;
}

export function unitGrantFromRow(r: Record<string, any>): UnitGrant {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    id: r.id,
    seq: Number(r.seq),
    featureKey: r.feature_key,
    quantity: r.quantity,
    priority: Number(r.priority),
    effectiveAt: Number(r.effective_at),
    expiresAt: n(r.expires_at),
    voidedAt: n(r.voided_at),
    draws: new Map(),
  };
}

/** Tenants' unit grants with what their non-void invoices drew, in two queries. */
export async function loadUnitGrants(q: Q, tenantIds: string[]): Promise<Map<string, UnitGrant[]>> {
  const out = new Map<string, UnitGrant[]>();
  if (tenantIds.length === 0) return out;
  const rows = await q('unit_grants').whereIn('tenant_id', tenantIds).orderBy('tenant_id').orderBy('seq');
  if (rows.length === 0) return out;
  const byKey = new Map<string, UnitGrant>();
  for (const r of rows) {
    const g = unitGrantFromRow(r);
    byKey.set(`${r.tenant_id}|${g.id}`, g);
    if (!out.has(r.tenant_id)) out.set(r.tenant_id, []);
    out.get(r.tenant_id)!.push(g);
  }
  const uses = await q('grant_uses as u')
    .join('invoices as i', function () {
      this.on('i.tenant_id', 'u.tenant_id').andOn('i.id', 'u.invoice_id');
    })
    .whereIn('u.tenant_id', [...out.keys()])
    .whereNot('i.status', 'void')
    .select('u.tenant_id', 'u.grant_id', 'u.period_start', 'u.quantity');
  // Threshold invoices record no draws: a period's draws are its final invoice's.
  // An invoiced period keeps what it drew, also nothing: a zero draw marks it for every grant.
  const invoiced = await q('invoices').whereIn('tenant_id', [...out.keys()]).whereNot('status', 'void').where('billing_reason', 'period').distinct('tenant_id', 'period_start');
  for (const i of invoiced) for (const g of out.get(i.tenant_id)!) g.draws.set(Number(i.period_start), '0');
  for (const u of uses) {
    const g = byKey.get(`${u.tenant_id}|${u.grant_id}`);
    // One non-void invoice per period: at most one draw per grant and period.
    if (g) g.draws.set(Number(u.period_start), u.quantity);
  }
  return out;
}

export interface UnitGrantInput {
  tenantId: string;
  featureKey: string;
  quantity: string;
  priority?: number;
  effective?: Instant;
  expires?: Instant;
}

/** A grant as the CLI shows it: what invoices drew from it and what is left. */
export interface UnitGrantView {
  id: string;
  tenantId: string;
  feature: string;
  quantity: string;
  used: string;
  remaining: string;
  priority: number;
  effectiveAt: Instant;
  expiresAt: Instant | null;
  voidedAt: Instant | null;
}

const QUANTITY = /^\d{1,15}(\.\d{1,6})?$/;

function view(tenantId: string, g: UnitGrant): UnitGrantView {
  let remaining = dec(g.quantity);
  for (const q of g.draws.values()) remaining = remaining.minus(q);
  remaining = Decimal.max(ZERO, remaining);
  return {
    id: g.id,
    tenantId,
    feature: g.featureKey,
    quantity: g.quantity,
    used: decStr(dec(g.quantity).minus(remaining)),
    remaining: decStr(remaining),
    priority: g.priority,
    effectiveAt: g.effectiveAt,
    expiresAt: g.expiresAt,
    voidedAt: g.voidedAt,
  };
}

/** `billing grant add`: QTY units of a metered feature on top of the plan's included quantity. */
export async function addUnitGrant(db: Db, input: UnitGrantInput, opts: { now: Instant; actor: string; id?: string }): Promise<UnitGrantView> {
  if (!QUANTITY.test(input.quantity) || dec(input.quantity).lte(0)) {
    throw new BillingError('invalid_input', `quantity "${input.quantity}" must be a positive decimal, like "1000" or "2.5"`);
  }
  const priority = input.priority ?? 0;
  if (!Number.isInteger(priority) || priority < 0 || priority > 1000) throw new BillingError('usage', '--priority must be a whole number from 0 to 1000');
  const effective = input.effective ?? opts.now;
  if (input.expires !== undefined && input.expires <= effective) throw new BillingError('invalid_input', '--expires must be after the grant takes effect');
  return withTx(db, async (trx) => {
    const tenant = await trx('tenants').where({ id: input.tenantId }).forUpdate().first();
    if (!tenant) throw new BillingError('not_found', `unknown tenant "${input.tenantId}" (create it with \`billing tenant create\`)`);
    const feature = await trx('features').where({ key: input.featureKey }).first();
    if (!feature) throw new BillingError('not_found', `unknown feature "${input.featureKey}" (see \`billing catalog show\`)`);
    if (feature.type !== 'metered') throw new BillingError('invalid_input', `feature "${input.featureKey}" is ${feature.type}: only metered features have units to grant`);
    const last = await trx('unit_grants').where('tenant_id', input.tenantId).max('seq as seq').first();
    const row = {
      tenant_id: input.tenantId,
      id: opts.id ?? `ug_${randomBytes(8).toString('hex')}`,
      seq: Number(last?.seq ?? 0) + 1,
      feature_key: input.featureKey,
      quantity: decStr(dec(input.quantity)),
      priority,
      effective_at: effective,
      expires_at: input.expires ?? null,
      created_at: opts.now,
      voided_at: null,
    };
    await trx('unit_grants').insert(row);
    const v = view(input.tenantId, unitGrantFromRow(row));
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId: input.tenantId, entity: 'unit_grant', entityId: v.id, action: 'create', after: v });
    return v;
  });
}

/** `billing grant list`: a tenant's grants in creation order, with what invoices drew. */
export async function listUnitGrants(db: Db, tenantId: string): Promise<UnitGrantView[]> {
  const grants = (await loadUnitGrants(db.knex, [tenantId])).get(tenantId) ?? [];
  return grants.map((g) => view(tenantId, g));
}

/** `billing grant void`: the grant is not live in periods starting from now; what invoices drew stays drawn. */
export async function voidUnitGrant(db: Db, tenantId: string, id: string, opts: { now: Instant; actor: string }): Promise<UnitGrantView> {
  return withTx(db, async (trx) => {
    const row = await trx('unit_grants').where({ tenant_id: tenantId, id }).forUpdate().first();
    if (!row || row.voided_at !== null) {
      throw new BillingError('not_found', `tenant "${tenantId}" has no active unit grant "${id}"${row ? ' (already void)' : ''}; list them with \`billing grant list ${tenantId}\``);
    }
    await trx('unit_grants').where({ tenant_id: tenantId, id }).update({ voided_at: opts.now });
    const g = ((await loadUnitGrants(trx, [tenantId])).get(tenantId) ?? []).find((x) => x.id === id)!;
    const after = view(tenantId, g);
    await writeAudit(trx, { at: opts.now, actor: opts.actor, tenantId, entity: 'unit_grant', entityId: id, action: 'void', before: { ...after, voidedAt: null }, after });
    return after;
  });
}

/** What an invoice's period drew from each grant, recorded in the invoice's transaction. */
export async function recordGrantUses(
  trx: Knex.Transaction,
  tenantId: string,
  invoiceId: string,
  uses: Array<{ grantId: string; periodStart: number; quantity: string }>,
): Promise<void> {
  if (uses.length === 0) return;
  await trx('grant_uses').insert(uses.map((u) => ({ tenant_id: tenantId, grant_id: u.grantId, invoice_id: invoiceId, period_start: u.periodStart, quantity: u.quantity })));
}
