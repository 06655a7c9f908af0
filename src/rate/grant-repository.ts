import type { Knex } from 'knex';
import type { UnitGrant } from './grants.js';

type Q = Knex | Knex.Transaction;

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
  for (const u of uses) {
    const g = byKey.get(`${u.tenant_id}|${u.grant_id}`);
    // One non-void invoice per period: at most one draw per grant and period.
    if (g) g.draws.set(Number(u.period_start), u.quantity);
  }
  return out;
}
