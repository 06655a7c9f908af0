import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import type { TenantWindow } from './dialect.js';
import { caseOf, uniqueValue, weightedTermSql, type SqlPart } from './usage-sql.js';

/**
 * PostgreSQL's incremental fold when no hole is open (the usual case): one statement merges
 * the events with seq in (seen, upTo] into their summaries. It reads them once with their
 * windows (given as arrays: no scratch table to write, truncate or analyze), adds the new
 * unique values to the groups' sets and upserts every group: sums and counts add up, a unique
 * count grows by the values its set did not have, a peak keeps the larger, `last` the later
 * [occurred_at, seq]. A unique group with no set yet (a full rebuild writes none) gets the
 * values of its events already folded in as well, and its count is then the size of the new
 * set. Same semantics as mergeSummaries (usage-sql.ts). Returns the summaries written.
 */
export async function mergeNewEventsPg(
  db: Db,
  features: Feature[],
  windows: TenantWindow[],
  seen: number,
  upTo: number,
  computedAt: number,
): Promise<number> {
  const k = byAggregation(features);
  const value = uniqueValueSql(db, k.uniqueFeatures);
  const statement = concat([
    newEventsCte(windows, features, value, k.lasts, seen, upTo),
    valueSetsCte(k.uniques, value, seen),
    groupsCte(),
    upsertSummaries(k, computedAt),
  ]);
  const res = await db.knex.raw(statement.sql, statement.bindings);
  return res.rowCount ?? 0;
}

type Kinds = { counts: string[]; peaks: string[]; troughs: string[]; lasts: string[]; uniques: string[]; uniqueFeatures: Feature[] };

const marks = (xs: unknown[]) => xs.map(() => '?').join(', ');
const MICRO = 10 ** QUANTITY_SCALE;

function byAggregation(features: Feature[]): Kinds {
  const keys = (kind: string) => features.filter((f) => f.aggregation === kind).map((f) => f.key);
  return { counts: keys('count'), peaks: keys('max'), troughs: keys('min'), lasts: keys('last'), uniques: keys('unique'), uniqueFeatures: features.filter((f) => f.aggregation === 'unique') };
}

function concat(parts: SqlPart[]): SqlPart {
  return { sql: parts.map((p) => p.sql).join(''), bindings: parts.flatMap((p) => p.bindings) };
}

/** An event's value for its unique feature (NULL for the others). */
function uniqueValueSql(db: Db, uniques: Feature[]): SqlPart {
  if (uniques.length === 0) return { sql: 'CAST(NULL AS TEXT)', bindings: [] };
  return {
    sql: `CASE e.feature_key ${uniques.map(() => 'WHEN ? THEN ?').join(' ')} END`,
    bindings: uniques.flatMap((f) => [f.key, uniqueValue(db, f)]),
  };
}

/** `w`: the windows as arrays; `d`: the new events, each with its window, `last` array and unique value. */
function newEventsCte(windows: TenantWindow[], features: Feature[], value: SqlPart, lasts: string[], seen: number, upTo: number): SqlPart {
  const latest = lasts.length
    ? { sql: `CASE WHEN e.feature_key IN (${marks(lasts)}) THEN ARRAY[e.occurred_at, e.seq, e.quantity] END`, bindings: lasts }
    : { sql: 'CAST(NULL AS BIGINT[])', bindings: [] };
  const inWindow = 'e.tenant_id = w.tenant_id AND e.occurred_at >= w.period_start AND e.occurred_at < w.period_end';
  // weighted_sum sums each event's term of its accumulator (usage-sql.ts), the others its quantity.
  const weighted = features.filter((f) => f.aggregation === 'weighted_sum').map((f) => f.key);
  const quantity = weighted.length
    ? { sql: `CASE WHEN e.feature_key IN (${marks(weighted)}) THEN ${weightedTermSql('e.quantity', 'e.occurred_at', 'w.period_end')} ELSE e.quantity END`, bindings: weighted }
    : { sql: 'e.quantity', bindings: [] };
  return {
    sql:
      'WITH w AS (SELECT * FROM unnest(CAST(? AS text[]), CAST(? AS bigint[]), CAST(? AS bigint[]), CAST(? AS text[])) ' +
      'AS w(tenant_id, period_start, period_end, subscription_id)), ' +
      'd AS MATERIALIZED (SELECT w.tenant_id, e.feature_key, w.period_start, w.period_end, w.subscription_id, ' +
      `${quantity.sql} AS quantity, ${latest.sql} AS l, ${value.sql} AS v FROM usage_events e JOIN w ON ${inWindow} ` +
      `WHERE e.seq > ? AND e.seq <= ? AND e.feature_key IN (${marks(features)})), `,
    bindings: [
      ...([
        windows.map((x) => x.tenantId),
        windows.map((x) => x.window.start),
        windows.map((x) => x.window.end),
        windows.map((x) => x.window.subscription?.id ?? null),
      ] as unknown as Knex.RawBinding[]),
      ...quantity.bindings,
      ...latest.bindings,
      ...value.bindings,
      seen,
      upTo,
      ...features.map((f) => f.key),
    ],
  };
}

/**
 * `added`: per unique group, the values its set gained. The new values go into the sets;
 * a group with no set yet (a count from a full rebuild, or new) also gets its values so far.
 */
function valueSetsCte(uniques: string[], value: SqlPart, seen: number): SqlPart {
  if (uniques.length === 0) {
    return {
      sql: 'added AS (SELECT CAST(NULL AS TEXT) AS tenant_id, CAST(NULL AS TEXT) AS feature_key, CAST(NULL AS BIGINT) AS period_start, 0 AS n WHERE false), ',
      bindings: [],
    };
  }
  return {
    sql:
      // Distinct groups first, then one set lookup each (not one per new event).
      `lack AS (SELECT * FROM (SELECT DISTINCT tenant_id, feature_key, period_start, period_end FROM d WHERE feature_key IN (${marks(uniques)})) dg ` +
      'WHERE NOT EXISTS (SELECT 1 FROM usage_unique_values u WHERE u.tenant_id = dg.tenant_id AND u.feature_key = dg.feature_key AND u.period_start = dg.period_start)), ' +
      'vals AS (INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) SELECT DISTINCT tenant_id, feature_key, period_start, v ' +
      // The new values, less those their set already holds: an index probe skips them for
      // less than the insert's own conflict check. Not the values filling a missing set,
      // which has none to skip.
      'FROM (SELECT tenant_id, feature_key, period_start, v FROM d WHERE v IS NOT NULL AND NOT EXISTS (SELECT 1 FROM usage_unique_values u ' +
      'WHERE u.tenant_id = d.tenant_id AND u.feature_key = d.feature_key AND u.period_start = d.period_start AND u.value = d.v) ' +
      'UNION ALL SELECT l.tenant_id, l.feature_key, l.period_start, o.v FROM lack l ' +
      `CROSS JOIN LATERAL (SELECT ${value.sql} AS v FROM usage_events e WHERE e.tenant_id = l.tenant_id AND e.feature_key = l.feature_key ` +
      'AND e.occurred_at >= l.period_start AND e.occurred_at < l.period_end AND e.seq <= ?) o) x ' +
      'WHERE v IS NOT NULL ON CONFLICT DO NOTHING RETURNING tenant_id, feature_key, period_start), ' +
      'added AS (SELECT tenant_id, feature_key, period_start, COUNT(*) AS n FROM vals GROUP BY 1, 2, 3), ',
    bindings: [...uniques, ...value.bindings, seen],
  };
}

/** `g`: the new events per group (count, sum, peak, trough, latest). */
function groupsCte(): SqlPart {
  return {
    sql:
      'g AS (SELECT tenant_id, feature_key, period_start, period_end, subscription_id, COUNT(*) AS n, SUM(quantity) AS s, ' +
      'MAX(quantity) AS m, MIN(quantity) AS mn, MAX(l) AS l FROM d GROUP BY 1, 2, 3, 4, 5) ',
    bindings: [],
  };
}

/** Each group's new summary, upserted into the stored one by its aggregation. */
function upsertSummaries(k: Kinds, computedAt: number): SqlPart {
  const { counts, peaks, troughs, lasts, uniques } = k;
  const quantity = caseOf(
    [
      counts.length ? `WHEN g.feature_key IN (${marks(counts)}) THEN g.n * ${MICRO} ` : '',
      peaks.length ? `WHEN g.feature_key IN (${marks(peaks)}) THEN g.m ` : '',
      troughs.length ? `WHEN g.feature_key IN (${marks(troughs)}) THEN g.mn ` : '',
      uniques.length ? `WHEN g.feature_key IN (${marks(uniques)}) THEN COALESCE(a.n, 0) * ${MICRO} ` : '',
      lasts.length ? `WHEN g.feature_key IN (${marks(lasts)}) THEN g.l[3] ` : '',
    ],
    'g.s',
  );
  const later =
    '(usage_summaries.last_at IS NULL OR excluded.last_at > usage_summaries.last_at ' +
    'OR (excluded.last_at = usage_summaries.last_at AND excluded.last_seq > usage_summaries.last_seq))';
  const isLast = lasts.length ? `excluded.feature_key IN (${marks(lasts)})` : 'false';
  const merge = caseOf(
    [
      peaks.length ? `WHEN excluded.feature_key IN (${marks(peaks)}) THEN GREATEST(excluded.quantity, usage_summaries.quantity) ` : '',
      troughs.length ? `WHEN excluded.feature_key IN (${marks(troughs)}) THEN LEAST(excluded.quantity, usage_summaries.quantity) ` : '',
      lasts.length ? `WHEN ${isLast} THEN CASE WHEN ${later} THEN excluded.quantity ELSE usage_summaries.quantity END ` : '',
      // A unique count grows by the values its set did not have. A set filled just now (the
      // statement's snapshot predates its inserts) holds them all; never below the stored
      // count, which events past retention may still back.
      uniques.length
        ? `WHEN excluded.feature_key IN (${marks(uniques)}) THEN CASE WHEN EXISTS (SELECT 1 FROM usage_unique_values u ` +
          'WHERE u.tenant_id = excluded.tenant_id AND u.feature_key = excluded.feature_key AND u.period_start = excluded.period_start) ' +
          'THEN usage_summaries.quantity + excluded.quantity ELSE GREATEST(usage_summaries.quantity, excluded.quantity) END '
        : '',
    ],
    'usage_summaries.quantity + excluded.quantity',
  );
  return {
    sql:
      'INSERT INTO usage_summaries (tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq, computed_at) ' +
      `SELECT g.tenant_id, g.feature_key, g.period_start, g.period_end, g.subscription_id, ${quantity}, g.n, g.l[1], g.l[2], ? ` +
      'FROM g LEFT JOIN added a ON a.tenant_id = g.tenant_id AND a.feature_key = g.feature_key AND a.period_start = g.period_start ' +
      `ON CONFLICT (tenant_id, feature_key, period_start) DO UPDATE SET quantity = ${merge}, ` +
      `last_at = CASE WHEN ${isLast} AND ${later} THEN excluded.last_at ELSE usage_summaries.last_at END, ` +
      `last_seq = CASE WHEN ${isLast} AND ${later} THEN excluded.last_seq ELSE usage_summaries.last_seq END, ` +
      'event_count = usage_summaries.event_count + excluded.event_count, period_end = excluded.period_end, ' +
      'subscription_id = excluded.subscription_id, computed_at = excluded.computed_at',
    bindings: [
      ...counts,
      ...peaks,
      ...troughs,
      ...uniques,
      ...lasts,
      computedAt,
      ...peaks,
      ...troughs,
      ...lasts,
      ...uniques,
      ...lasts,
      ...lasts,
    ],
  };
}
