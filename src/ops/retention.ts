import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';
import { BillingError } from '../domain/errors.js';
import { addMonthsClamped, toIso } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import { withTx } from '../storage/sql.js';
import { aggregationState } from '../jobs/backlog.js';

/**
 * `billing retention --older-than 7y`: delete raw usage events past retention, but only
 * those whose usage is safe without them (DESIGN.md §11):
 * - aggregated: at or below the aggregate watermark and not in one of its holes;
 * - summarized: a usage summary covers its tenant, feature and period;
 * - invoiced (once the invoices table exists): a non-void invoice covers the period it
 *   occurred in, and some non-void invoice of the tenant was issued after it was ingested
 *   (generation aggregates first and bills late usage, so its usage reached an invoice).
 * Summaries, invoices and the audit log are never deleted: financial records are kept.
 */

export interface RetentionGroup {
  tenantId: string;
  featureKey: string;
  events: number;
  oldest: string;
  newest: string;
}

export interface RetentionResult {
  cutoff: string;
  dryRun: boolean;
  deleted: number;
  groups: RetentionGroup[];
}

const BATCH = 5000;

/** "7y", "18m", "90d" → the instant that far before now. */
export function retentionCutoff(spec: string, now: number): number {
  const m = /^(\d+)\s*([ymd])$/i.exec(spec.trim());
  if (!m || Number(m[1]) <= 0) {
    throw new BillingError('usage', `--older-than "${spec}" must be a positive age like 7y, 18m or 90d`);
  }
  const n = Number(m[1]);
  const unit = m[2].toLowerCase();
  if (unit === 'd') return now - n * 86_400_000;
  return addMonthsClamped(now, -(unit === 'y' ? 12 * n : n));
}

/** The events that may go, as a query (wrapped: a builder is a thenable an await would run). */
async function deletable(db: Db, q: Knex | Knex.Transaction, cutoff: number): Promise<{ query: Knex.QueryBuilder } | null> {
  // Everything through q: on SQLite the transaction holds the only connection.
  const state = await aggregationState(db, q);
  if (state.watermark === null) return null; // nothing has been aggregated yet
  const hasInvoices = await q.schema.hasTable('invoices');
  const b = q('usage_events as e')
    .where('e.occurred_at', '<', cutoff)
    .where('e.seq', '<=', state.watermark)
    .whereExists((s) =>
      s
        .select(q.raw('1'))
        .from('usage_summaries as s')
        .whereRaw('s.tenant_id = e.tenant_id and s.feature_key = e.feature_key')
        .whereRaw('s.period_start <= e.occurred_at and e.occurred_at < s.period_end'),
    );
  for (const h of state.holes) b.whereNot((w) => w.whereBetween('e.seq', [h.from, h.to]));
  if (hasInvoices) {
    b.whereExists((s) =>
      s
        .select(q.raw('1'))
        .from('invoices as i')
        .whereRaw('i.tenant_id = e.tenant_id')
        .whereNot('i.status', 'void')
        .whereRaw('i.period_start <= e.occurred_at and e.occurred_at < i.period_end'),
    );
    b.whereExists((s) =>
      s
        .select(q.raw('1'))
        .from('invoices as i2')
        .whereRaw('i2.tenant_id = e.tenant_id')
        .whereNot('i2.status', 'void')
        .whereRaw('i2.issued_at >= e.ingested_at'),
    );
  }
  return { query: b };
}

export async function runRetention(
  db: Db,
  opts: { olderThan: string; now: number; actor: string; dryRun?: boolean },
): Promise<RetentionResult> {
  const cutoff = retentionCutoff(opts.olderThan, opts.now);
  const base = await deletable(db, db.knex, cutoff);
  const groups: RetentionGroup[] = base
    ? (
        await base.query
          .clone()
          .select('e.tenant_id', 'e.feature_key')
          .count('* as n')
          .min('e.occurred_at as oldest')
          .max('e.occurred_at as newest')
          .groupBy('e.tenant_id', 'e.feature_key')
          .orderBy(['e.tenant_id', 'e.feature_key'])
      ).map((r: Record<string, unknown>) => ({
        tenantId: String(r.tenant_id),
        featureKey: String(r.feature_key),
        events: Number(r.n),
        oldest: toIso(Number(r.oldest)),
        newest: toIso(Number(r.newest)),
      }))
    : [];
  const result: RetentionResult = { cutoff: toIso(cutoff), dryRun: Boolean(opts.dryRun), deleted: 0, groups };
  if (opts.dryRun || groups.length === 0) return result;

  // Small transactions: an hourly aggregate run is never blocked for long.
  for (;;) {
    const n = await withTx(db, async (trx) => {
      const q = await deletable(db, trx, cutoff);
      const rows: Array<{ seq: unknown; tenant_id: string }> = await q!.query.clone().select('e.seq', 'e.tenant_id').orderBy('e.seq').limit(BATCH);
      if (rows.length === 0) return 0;
      for (let i = 0; i < rows.length; i += 500) {
        await trx('usage_events').whereIn('seq', rows.slice(i, i + 500).map((r) => Number(r.seq))).delete();
      }
      const perTenant = new Map<string, number>();
      for (const r of rows) perTenant.set(r.tenant_id, (perTenant.get(r.tenant_id) ?? 0) + 1);
      for (const [tenantId, events] of perTenant) {
        await writeAudit(trx, {
          at: opts.now,
          actor: opts.actor,
          tenantId,
          entity: 'usage_events',
          entityId: tenantId,
          action: 'retention_delete',
          after: { events, olderThan: opts.olderThan, cutoff: toIso(cutoff) },
        });
      }
      return rows.length;
    });
    result.deleted += n;
    if (n < BATCH) break;
  }
  return result;
}
