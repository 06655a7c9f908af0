import type { Db } from '../storage/db.js';
import { toIso } from '../domain/period.js';

/** `billing audit`: read the append-only audit log, newest last. */

export interface AuditRecord {
  id: number;
  at: string;
  actor: string;
  tenantId: string | null;
  entity: string;
  entityId: string;
  action: string;
  before: unknown;
  after: unknown;
}

function parse(v: unknown): unknown {
  if (v === null || v === undefined) return null;
  try {
    return JSON.parse(String(v));
  } catch {
    return v;
  }
}

/** The latest `limit` entries matching the filters, in the order they were written. */
export async function listAudit(
  db: Db,
  opts: { tenantId?: string; since?: number; until?: number; entity?: string; limit?: number } = {},
): Promise<AuditRecord[]> {
  const q = db.knex('audit_log').orderBy('id', 'desc').limit(opts.limit ?? 100);
  if (opts.tenantId !== undefined) q.where('tenant_id', opts.tenantId);
  if (opts.since !== undefined) q.where('at', '>=', opts.since);
  if (opts.until !== undefined) q.where('at', '<', opts.until);
  if (opts.entity !== undefined) q.where('entity', opts.entity);
  const rows = await q;
  return rows.reverse().map((r) => ({
    id: Number(r.id),
    at: toIso(Number(r.at)),
    actor: r.actor,
    tenantId: r.tenant_id ?? null,
    entity: r.entity,
    entityId: r.entity_id,
    action: r.action,
    before: parse(r.before),
    after: parse(r.after),
  }));
}
