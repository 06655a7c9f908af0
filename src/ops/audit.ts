import type { Db } from '../storage/db.js';
import { EVENT_TIMES, toIso } from '../domain/period.js';

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
    return isoTimes(JSON.parse(String(v)));
  } catch {
    return v;
  }
}

// Snapshots keep instants as epoch ms (createdAt, issuedAt, a period's start/end): shown as
// ISO strings like every other time the CLI prints.
const TIME_KEY = /(?:At|_at)$|^(?:at|start|end)$/;

function isoTimes(v: unknown, key = ''): unknown {
  if (Array.isArray(v)) return v.map((x) => isoTimes(x));
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, isoTimes(x, k)]));
  }
  if (typeof v === 'number' && Number.isInteger(v) && TIME_KEY.test(key) && v >= EVENT_TIMES.start && v < EVENT_TIMES.end) return toIso(v);
  return v;
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
