import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField } from '../storage/sql.js';
import { weightedTermSql } from './usage-sql.js';

/** Which groups to compute: every window × feature of aggregate_windows, or the whole groups of aggregate_groups. */
export type GroupSet = 'windows' | 'whole-groups';

/**
 * Compute groups from their events, one group at a time: each group's events are one range
 * of the (tenant_id, feature_key, occurred_at) index, read by correlated subqueries. This is
 * how the whole groups of an incremental run are recomputed on both databases, and SQLite's
 * full rebuild: it walks the index in the order SQLite's own GROUP BY over usage_events does,
 * without the temporary B-tree a join + GROUP BY would sort every row into. The count reads
 * the index alone; `last` is the first entry of the range read backwards; a unique count is
 * the size of the value set written first. Only events with seq <= upTo count. The caller has
 * deleted the groups' old summaries and values. Same semantics as usage-sql.ts, which the
 * tests compare against.
 */
export async function insertGroupsByIndex(
  db: Db,
  groups: GroupSet,
  features: Feature[],
  upTo: number,
  computedAt: number,
): Promise<void> {
  if (features.length === 0) return;
  const micro = 10 ** QUANTITY_SCALE;
  // `+e.seq`: each group is a range of (tenant, feature, occurred_at), never of the seq index.
  const range = 'FROM usage_events e WHERE e.tenant_id = g.tenant_id AND e.feature_key = g.feature_key AND e.occurred_at >= g.period_start AND e.occurred_at < g.period_end AND +e.seq <= ?';
  const bindings: Knex.RawBinding[] = [];
  const branches: string[] = [];
  for (const f of features) {
    bindings.push(f.key);
    // avg stores the sum of quantities, weighted_sum its accumulator (value.ts turns them into values).
    if (f.aggregation === 'sum' || f.aggregation === 'avg') branches.push(`WHEN ? THEN (SELECT SUM(e.quantity) ${range})`);
    else if (f.aggregation === 'weighted_sum') {
      branches.push(`WHEN ? THEN (SELECT SUM(${weightedTermSql('e.quantity', 'e.occurred_at', 'g.period_end')}) ${range})`);
    }
    else if (f.aggregation === 'max') branches.push(`WHEN ? THEN (SELECT MAX(e.quantity) ${range})`);
    else if (f.aggregation === 'min') branches.push(`WHEN ? THEN (SELECT MIN(e.quantity) ${range})`);
    else if (f.aggregation === 'count' || f.aggregation === 'last') {
      // count: from event_count; last: from the latest event, below.
      branches.push('WHEN ? THEN NULL');
      continue;
    } else {
      // unique: the size of the group's value set, filled below
      branches.push(
        'WHEN ? THEN (SELECT COUNT(*) FROM usage_unique_values u WHERE u.tenant_id = g.tenant_id ' +
          `AND u.feature_key = g.feature_key AND u.period_start = g.period_start) * ${micro}`,
      );
      continue;
    }
    bindings.push(upTo);
  }
  const lasts = features.filter((f) => f.aggregation === 'last').map((f) => f.key);
  const counts = features.filter((f) => f.aggregation === 'count').map((f) => f.key);
  const marks = (xs: unknown[]) => (xs.length ? xs.map(() => '?').join(', ') : 'NULL');
  const pairs = (keys: string[]) =>
    groups === 'windows'
      ? 'SELECT w.tenant_id, f.feature_key, w.period_start, w.period_end, w.subscription_id FROM ' +
        '(SELECT DISTINCT tenant_id, period_start, period_end, subscription_id FROM aggregate_windows) w ' +
        `CROSS JOIN (SELECT column1 AS feature_key FROM (VALUES ${keys.map(() => '(?)').join(', ')}) v) f`
      : 'SELECT tenant_id, feature_key, period_start, period_end, subscription_id FROM aggregate_groups ' +
        `WHERE whole = 1 AND feature_key IN (${keys.map(() => '?').join(', ')})`;
  for (const f of features.filter((x) => x.aggregation === 'unique')) {
    const value = (f.uniqueBy ?? 'user_id') === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', f.uniqueBy!);
    await db.knex.raw(
      'INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) ' +
        // CROSS JOIN: the groups outside, each an index range (SQLite, given statistics, scanned
        // every event to recompute a re-cut tenant's few groups).
        `SELECT DISTINCT g.tenant_id, g.feature_key, g.period_start, ? FROM (${pairs([f.key])}) g CROSS JOIN usage_events e ` +
        'WHERE e.tenant_id = g.tenant_id AND e.feature_key = g.feature_key AND e.occurred_at >= g.period_start ' +
        'AND e.occurred_at < g.period_end AND +e.seq <= ? AND ? IS NOT NULL ON CONFLICT DO NOTHING',
      [value, f.key, upTo, value],
    );
  }
  await db.knex.raw(
    'INSERT INTO usage_summaries (tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq, computed_at) ' +
      'SELECT x.tenant_id, x.feature_key, x.period_start, x.period_end, x.subscription_id, ' +
      `CASE WHEN x.feature_key IN (${marks(counts)}) THEN x.event_count * ${micro} WHEN x.feature_key IN (${marks(lasts)}) THEN l.quantity ELSE x.quantity END, ` +
      'x.event_count, l.occurred_at, l.seq, ? FROM (' +
      'SELECT g.tenant_id, g.feature_key, g.period_start, g.period_end, g.subscription_id, ' +
      `(SELECT COUNT(*) ${range}) AS event_count, CASE g.feature_key ${branches.join(' ')} END AS quantity, ` +
      `CASE WHEN g.feature_key IN (${marks(lasts)}) THEN (SELECT e.seq ${range} ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) END AS last_seq ` +
      `FROM (${pairs(features.map((f) => f.key))}) g) x LEFT JOIN usage_events l ON l.seq = x.last_seq WHERE x.event_count > 0`,
    [...counts, ...lasts, computedAt, upTo, ...bindings, ...lasts, upTo, ...features.map((f) => f.key)],
  );
}
