import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField } from '../storage/sql.js';

/**
 * SQLite's full rebuild of the tenants in aggregate_windows: for every window × feature, the
 * group's events are one range of the (tenant_id, feature_key, occurred_at) index, read by
 * correlated subqueries. That is the order SQLite's own GROUP BY over usage_events walks, and
 * it spares the temporary B-tree a join + GROUP BY would sort a million rows into. The count
 * reads the index alone (seq is the rowid, in every index entry); `last` is the first entry
 * of the range read backwards. Same semantics as usage-sql.ts, which the tests compare against.
 */
export async function insertAllSummariesSqlite(db: Db, trx: Knex.Transaction, features: Feature[], upTo: number, computedAt: number): Promise<void> {
  if (features.length === 0) return;
  const micro = 10 ** QUANTITY_SCALE;
  const range = 'FROM usage_events e WHERE e.tenant_id = w.tenant_id AND e.feature_key = f.key AND e.occurred_at >= w.period_start AND e.occurred_at < w.period_end AND e.seq <= ?';
  const bindings: Knex.RawBinding[] = [];
  const branches: string[] = [];
  for (const f of features) {
    bindings.push(f.key);
    if (f.aggregation === 'sum') branches.push(`WHEN ? THEN (SELECT SUM(e.quantity) ${range})`);
    else if (f.aggregation === 'max') branches.push(`WHEN ? THEN (SELECT MAX(e.quantity) ${range})`);
    else if (f.aggregation === 'count' || f.aggregation === 'last') {
      // count: from event_count; last: from the latest event, below.
      branches.push('WHEN ? THEN NULL');
      continue;
    } else {
      const value = (f.uniqueBy ?? 'user_id') === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', f.uniqueBy!);
      branches.push(`WHEN ? THEN (SELECT COUNT(DISTINCT ?) * ${micro} ${range})`);
      bindings.push(value);
    }
    bindings.push(upTo);
  }
  const lasts = features.filter((f) => f.aggregation === 'last').map((f) => f.key);
  const counts = features.filter((f) => f.aggregation === 'count').map((f) => f.key);
  const marks = (xs: unknown[]) => (xs.length ? xs.map(() => '?').join(', ') : 'NULL');
  await trx.raw(
    'INSERT INTO usage_summaries (tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq, computed_at) ' +
      'SELECT x.tenant_id, x.feature_key, x.period_start, x.period_end, x.subscription_id, ' +
      `CASE WHEN x.feature_key IN (${marks(counts)}) THEN x.event_count * ${micro} WHEN x.feature_key IN (${marks(lasts)}) THEN l.quantity ELSE x.quantity END, ` +
      'x.event_count, l.occurred_at, l.seq, ? FROM (' +
      'SELECT w.tenant_id, f.key AS feature_key, w.period_start, w.period_end, w.subscription_id, ' +
      `(SELECT COUNT(*) ${range}) AS event_count, CASE f.key ${branches.join(' ')} END AS quantity, ` +
      `CASE WHEN f.key IN (${marks(lasts)}) THEN (SELECT e.seq ${range} ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) END AS last_seq ` +
      'FROM (SELECT DISTINCT tenant_id, period_start, period_end, subscription_id FROM aggregate_windows) w ' +
      `CROSS JOIN (SELECT column1 AS key FROM (VALUES ${features.map(() => '(?)').join(', ')})) f) x ` +
      'LEFT JOIN usage_events l ON l.seq = x.last_seq WHERE x.event_count > 0',
    [
      ...counts,
      ...lasts,
      computedAt,
      upTo,
      ...bindings,
      ...lasts,
      upTo,
      ...features.map((f) => f.key),
    ],
  );
}
