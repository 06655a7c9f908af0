import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField } from '../storage/sql.js';
import { EVENTS_TO_WINDOWS } from './usage-sql.js';

/**
 * PostgreSQL's full rebuild of the tenants in aggregate_windows. One parallel pass over
 * usage_events (sequential scan, hash join to the windows on (tenant_id, bucket)) yields
 * count, sum and max per window and feature, split by value for unique features (those rows
 * are also the value sets of usage_unique_values); the small result is then rolled up per
 * group, and `last` takes one index probe per group. The pass is
 * a CREATE TABLE AS, which PostgreSQL runs in parallel (an INSERT ... SELECT it would not).
 * Same semantics as usage-sql.ts, which the incremental path uses and the tests compare against.
 */
export async function insertAllSummariesPg(db: Db, trx: Knex.Transaction, features: Feature[], upTo: number, computedAt: number): Promise<void> {
  if (features.length === 0) return;
  const marks = (xs: unknown[]) => xs.map(() => '?').join(', ');
  const keys = (kind: string) => features.filter((f) => f.aggregation === kind).map((f) => f.key);
  const [counts, peaks, lasts] = [keys('count'), keys('max'), keys('last')];
  const uniques = features.filter((f) => f.aggregation === 'unique');
  const micro = 10 ** QUANTITY_SCALE;

  // One pass: per window, feature and (for unique features) value; other features have a
  // NULL value, so their rows are already their groups' totals.
  const value = uniques.length
    ? {
        sql: `CASE e.feature_key ${uniques.map(() => 'WHEN ? THEN ?').join(' ')} END`,
        bindings: uniques.flatMap((f) => [f.key, (f.uniqueBy ?? 'user_id') === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', f.uniqueBy!)]),
      }
    : { sql: 'CAST(NULL AS TEXT)', bindings: [] };
  // A caller's outer transaction may already hold one from an earlier rebuild.
  await trx.raw('DROP TABLE IF EXISTS pg_temp.aggregate_parts');
  await withPlannerSettings(trx, () =>
    trx.raw(
      `CREATE TEMP TABLE aggregate_parts ON COMMIT DROP AS SELECT w.window_id, e.feature_key, ${value.sql} AS v, COUNT(*) AS n, ` +
        `SUM(e.quantity) AS s, MAX(e.quantity) AS m FROM ${EVENTS_TO_WINDOWS} WHERE e.feature_key IN (${marks(features)}) ` +
        'AND e.seq <= ? GROUP BY 1, 2, 3',
      [...value.bindings, ...features.map((f) => f.key), upTo],
    ),
  );

  if (uniques.length) {
    await trx.raw(
      'INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) SELECT w.tenant_id, p.feature_key, w.period_start, p.v ' +
        'FROM aggregate_parts p JOIN (SELECT DISTINCT window_id, tenant_id, period_start FROM aggregate_windows) w ON w.window_id = p.window_id ' +
        'WHERE p.v IS NOT NULL',
    );
  }

  const quantity =
    'CASE ' +
    (counts.length ? `WHEN t.feature_key IN (${marks(counts)}) THEN t.n * ${micro} ` : '') +
    (peaks.length ? `WHEN t.feature_key IN (${marks(peaks)}) THEN t.m ` : '') +
    (uniques.length ? `WHEN t.feature_key IN (${marks(uniques)}) THEN t.d * ${micro} ` : '') +
    (lasts.length ? `WHEN t.feature_key IN (${marks(lasts)}) THEN l.quantity ` : '') +
    'ELSE t.s END';
  const latest = lasts.length
    ? `LEFT JOIN LATERAL (SELECT e.quantity, e.occurred_at, e.seq FROM usage_events e WHERE t.feature_key IN (${marks(lasts)}) ` +
      'AND e.tenant_id = w.tenant_id AND e.feature_key = t.feature_key AND e.occurred_at >= w.period_start ' +
      'AND e.occurred_at < w.period_end AND e.seq <= ? ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) l ON true'
    : 'LEFT JOIN (SELECT CAST(NULL AS BIGINT) AS quantity, CAST(NULL AS BIGINT) AS occurred_at, CAST(NULL AS BIGINT) AS seq) l ON true';
  await trx.raw(
    'INSERT INTO usage_summaries (tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq, computed_at) ' +
      `SELECT w.tenant_id, t.feature_key, w.period_start, w.period_end, w.subscription_id, ${quantity}, t.n, l.occurred_at, l.seq, ? ` +
      'FROM (SELECT window_id, feature_key, SUM(n) AS n, SUM(s) AS s, MAX(m) AS m, COUNT(v) AS d FROM aggregate_parts GROUP BY 1, 2) t ' +
      'JOIN (SELECT DISTINCT window_id, tenant_id, period_start, period_end, subscription_id FROM aggregate_windows) w ' +
      'ON w.window_id = t.window_id ' +
      latest,
    [...counts, ...peaks, ...uniques.map((f) => f.key), ...lasts, computedAt, ...(lasts.length ? [...lasts, upTo] : [])],
  );
}

/**
 * The planner misjudges how many events match a (tenant, bucket) window: it would walk the
 * index once per window, or sort a million joined rows to group them. For the full passes,
 * insist on hashing; and skip JIT, which those penalised costs would otherwise trigger.
 */
async function withPlannerSettings(trx: Knex.Transaction, fn: () => Promise<unknown>): Promise<void> {
  const off = ['enable_nestloop', 'enable_mergejoin', 'enable_sort', 'jit'];
  await trx.raw('ANALYZE aggregate_windows');
  for (const k of off) await trx.raw(`SET LOCAL ${k} = off`);
  await trx.raw(`SET LOCAL work_mem = '64MB'`);
  await fn();
  for (const k of [...off, 'work_mem']) await trx.raw(`SET LOCAL ${k} TO DEFAULT`);
}
