import type { Knex } from 'knex';
import type { Instant } from '../domain/period.js';

export interface AuditEntry {
  at: Instant;
  actor: string;
  tenantId?: string | null;
  entity: string; // feature | plan | tenant | subscription | quota | invoice | stripe ...
  entityId: string;
  action: string; // create | update | delete | change | cancel ...
  before?: unknown;
  after?: unknown;
}

/** Append one audit row inside the caller's transaction (append-only: never updated). */
export async function writeAudit(trx: Knex | Knex.Transaction, e: AuditEntry): Promise<void> {
  await trx('audit_log').insert(auditRow(e));
}

/** The audit_log row of an entry (for callers inserting many at once). */
export function auditRow(e: AuditEntry) {
  return {
    at: e.at,
    actor: e.actor,
    tenant_id: e.tenantId ?? null,
    entity: e.entity,
    entity_id: e.entityId,
    action: e.action,
    before: e.before === undefined ? null : JSON.stringify(e.before),
    after: e.after === undefined ? null : JSON.stringify(e.after),
  };
}
