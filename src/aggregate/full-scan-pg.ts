import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { caseOf, EVENTS_TO_WINDOWS, uniqueValue, weightedTermSql } from './usage-sql.js';

/**
 * PostgreSQL's full rebuild of the tenants in aggregate_windows. A parallel pass over
 * usage_events (sequential scans, hash join to the windows on (tenant_id, bucket)) computes
 * count, sum and max; `last` as the largest [occurred_at, seq, quantity] array (the latest
 * event, ties to the later ingest). It is a CREATE TABLE AS, which PostgreSQL runs in parallel
 * (an INSERT ... SELECT it would not). A serial pass counts the unique features, grouping on
 * the value first. The few result rows are then inserted.
 * Unique value sets are not written: the incremental run fills a group's set from its events
 * the first time it merges into it (see aggregate.ts), which costs that group instead of
 * every group of the rebuild. Same semantics as usage-sql.ts, which the tests compare against.
 * Returns the summaries written and the events they count.
 */
export async function insertAllSummariesPg(
  db: Db,
  features: Feature[],
  upTo: number,
  computedAt: number,
): Promise<{ groups: number; events: number }> {
  if (features.length === 0) return { groups: 0, events: 0 };
  const marks = (xs: unknown[]) => xs.map(() => '?').join(', ');
  const keys = (kind: string) => features.filter((f) => f.aggregation === kind).map((f) => f.key);
  const [counts, peaks, troughs, lasts, weighted] = [keys('count'), keys('max'), keys('min'), keys('last'), keys('weighted_sum')];
  const uniques = features.filter((f) => f.aggregation === 'unique');
  const micro = 10 ** QUANTITY_SCALE;

  const others = features.filter((f) => f.aggregation !== 'unique');
  const latest = lasts.length
    ? { sql: `CASE WHEN e.feature_key IN (${marks(lasts)}) THEN ARRAY[e.occurred_at, e.seq, e.quantity] END`, bindings: lasts }
    : { sql: 'CAST(NULL AS BIGINT[])', bindings: [] };
  // weighted_sum sums each event's term of its accumulator (usage-sql.ts); avg sums quantities.
  const summed = weighted.length
    ? { sql: `CASE WHEN e.feature_key IN (${marks(weighted)}) THEN ${weightedTermSql('e.quantity', 'e.occurred_at', 'w.period_end')} ELSE e.quantity END`, bindings: weighted }
    : { sql: 'e.quantity', bindings: [] };
  // Two branches: the features summed, counted, peaked, troughed or last by (window, feature); the
  // unique ones grouped by value first, then counted. Folding the value into every feature's
  // grouping key made the whole pass hash ~66k text keys instead of ~4k.
  // The first branch is a CREATE TABLE AS, which PostgreSQL runs in parallel; with no
  // feature for it, an empty table of the same columns.
  const parts: Array<{ sql: string; bindings: Knex.RawBinding[] }> = [];
  if (!others.length) {
    parts.push({
      sql: 'SELECT CAST(NULL AS INT) AS window_id, CAST(NULL AS TEXT) AS feature_key, CAST(NULL AS BIGINT) AS n, CAST(NULL AS NUMERIC) AS s, ' +
        'CAST(NULL AS BIGINT) AS m, CAST(NULL AS BIGINT) AS mn, CAST(NULL AS BIGINT) AS d, CAST(NULL AS BIGINT[]) AS l WHERE false',
      bindings: [],
    });
  } else {
    parts.push({
      sql:
        `SELECT w.window_id, e.feature_key, COUNT(*) AS n, SUM(${summed.sql}) AS s, MAX(e.quantity) AS m, ` +
        'MIN(e.quantity) AS mn, CAST(NULL AS BIGINT) AS d, ' +
        `MAX(${latest.sql}) AS l FROM ${EVENTS_TO_WINDOWS} WHERE e.feature_key IN (${marks(others)}) AND e.seq <= ? GROUP BY 1, 2`,
      bindings: [...summed.bindings, ...latest.bindings, ...others.map((f) => f.key), upTo],
    });
  }
  if (uniques.length) {
    parts.push({
      sql:
        'SELECT window_id, feature_key, SUM(n) AS n, CAST(NULL AS NUMERIC) AS s, CAST(NULL AS BIGINT) AS m, CAST(NULL AS BIGINT) AS mn, COUNT(v) AS d, CAST(NULL AS BIGINT[]) AS l FROM (' +
        `SELECT w.window_id, e.feature_key, CASE e.feature_key ${uniques.map(() => 'WHEN ? THEN ?').join(' ')} END AS v, COUNT(*) AS n ` +
        `FROM ${EVENTS_TO_WINDOWS} WHERE e.feature_key IN (${marks(uniques)}) AND e.seq <= ? GROUP BY 1, 2, 3) x GROUP BY 1, 2`,
      bindings: [...uniques.flatMap((f) => [f.key, uniqueValue(db, f)]), ...uniques.map((f) => f.key), upTo],
    });
  }
  // A caller's outer transaction may already hold one from an earlier rebuild. The windows
  // were just written: without statistics the planner hashes the million events instead of
  // the few thousand windows, twice as slow.
  await db.knex.raw('DROP TABLE IF EXISTS pg_temp.aggregate_parts');
  await db.knex.raw('ANALYZE aggregate_windows');
  const [first, ...rest] = parts;
  await withPlannerSettings(db.trx!, async () => {
    await db.knex.raw(`CREATE TEMP TABLE aggregate_parts ON COMMIT DROP AS ${first.sql}`, first.bindings);
    // The unique branch runs serially (an INSERT ... SELECT): its (window, value) groups
    // barely shrink per worker, and gathering them cost more than the second core saved.
    for (const p of rest) await db.knex.raw(`INSERT INTO aggregate_parts ${p.sql}`, p.bindings);
  });

  const quantity = caseOf(
    [
      counts.length ? `WHEN t.feature_key IN (${marks(counts)}) THEN t.n * ${micro} ` : '',
      peaks.length ? `WHEN t.feature_key IN (${marks(peaks)}) THEN t.m ` : '',
      troughs.length ? `WHEN t.feature_key IN (${marks(troughs)}) THEN t.mn ` : '',
      uniques.length ? `WHEN t.feature_key IN (${marks(uniques)}) THEN t.d * ${micro} ` : '',
      lasts.length ? `WHEN t.feature_key IN (${marks(lasts)}) THEN t.l[3] ` : '',
    ],
    't.s',
  );
  const res = await db.knex.raw(
    'WITH ins AS (INSERT INTO usage_summaries (tenant_id, feature_key, period_start, period_end, subscription_id, quantity, ' +
      `event_count, last_at, last_seq, computed_at) SELECT w.tenant_id, t.feature_key, w.period_start, w.period_end, w.subscription_id, ${quantity}, ` +
      't.n, t.l[1], t.l[2], ? FROM aggregate_parts t ' +
      'JOIN (SELECT DISTINCT window_id, tenant_id, period_start, period_end, subscription_id FROM aggregate_windows) w ' +
      'ON w.window_id = t.window_id RETURNING event_count) SELECT COUNT(*) AS n, CAST(SUM(event_count) AS TEXT) AS events FROM ins',
    [...counts, ...peaks, ...troughs, ...uniques.map((f) => f.key), ...lasts, computedAt],
  );
  const row = res.rows[0] as { n: unknown; events: unknown };
  return { groups: Number(row.n), events: Number(row.events ?? 0) };
}

/**
 * The planner misjudges how many events match a (tenant, bucket) window: it would walk the
 * index once per window, or sort a million joined rows to group them. For the full pass,
 * insist on hashing; and skip JIT, which those penalised costs would otherwise trigger.
 * One round trip each way (set_config with is_local, then back to the session's values).
 */
export const REBUILD_PLANNER_SETTINGS: ReadonlyArray<readonly [string, string]> = [
  ['enable_nestloop', 'off'],
  ['enable_mergejoin', 'off'],
  ['enable_sort', 'off'],
  ['jit', 'off'],
  ['work_mem', '64MB'],
];

async function withPlannerSettings(trx: Knex.Transaction, fn: () => Promise<unknown>): Promise<void> {
  const settings = REBUILD_PLANNER_SETTINGS;
  const saved = (await trx.raw(`SELECT ${settings.map(([k], i) => `current_setting('${k}') AS s${i}, set_config('${k}', '${settings[i][1]}', true) AS x${i}`).join(', ')}`)).rows[0] as Record<string, string>;
  await fn();
  await trx.raw(`SELECT ${settings.map(([k], i) => `set_config('${k}', ?, true)`).join(', ')}`, settings.map((_, i) => saved[`s${i}`]));
}
