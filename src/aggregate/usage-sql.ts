import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField } from '../storage/sql.js';

/**
 * The aggregation semantics, once, as SQL: every reader of usage (the aggregate stage, the
 * entitlement check, reports) selects through these builders, so they cannot disagree.
 *
 * A source is a FROM clause that pairs events `e` with the window `w` (tenant_id,
 * period_start, period_end, subscription_id) they fall in and the feature `f` they count for.
 * Each select yields: tenant_id, feature_key, period_start, period_end, subscription_id,
 * quantity (micro-units), event_count.
 */
export interface UsageSource {
  from: string;
  bindings: Knex.RawBinding[];
}

/** One (tenant, feature, window) group to compute. */
export interface GroupRow {
  tenantId: string;
  featureKey: string;
  periodStart: number;
  periodEnd: number;
  subscriptionId: string | null;
}

/** Width and offset of the time buckets of aggregate_windows (about 24.8 days). */
export const BUCKET_MS = 2 ** 31;
const BUCKET_OFFSET = 2 ** 23; // in buckets: keeps keys positive for any JS Date instant

/** The bucket of instant t, as the SQL of bucketSql computes it. */
export function bucketOf(t: number): number {
  return Math.floor(t / BUCKET_MS) + BUCKET_OFFSET;
}

export function bucketStart(bucket: number): number {
  return (bucket - BUCKET_OFFSET) * BUCKET_MS;
}

/** The bucket of event `e`, in SQL (integer division: positive operands on both databases). */
export const BUCKET_SQL = `((e.occurred_at + ${BUCKET_OFFSET * BUCKET_MS}) / ${BUCKET_MS})`;

const EVENTS_IN_GROUP =
  'e.tenant_id = w.tenant_id AND e.feature_key = w.feature_key AND e.occurred_at >= w.period_start AND e.occurred_at < w.period_end';

/** Groups listed in a table with the columns of aggregate_groups; events found by index. */
export function groupsTableSource(table: string): UsageSource {
  return {
    from: `${table} w JOIN features f ON f.key = w.feature_key JOIN usage_events e ON ${EVENTS_IN_GROUP}`,
    bindings: [],
  };
}

/** Groups given as literal rows (one tenant's check, a report's tenants). */
export function literalGroupsSource(rows: GroupRow[]): UsageSource {
  // VALUES rather than a UNION: SQLite caps compound selects at 500 terms. Both databases
  // name VALUES columns column1..columnN.
  const row = '(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT))';
  const groups =
    'SELECT column1 AS tenant_id, column2 AS feature_key, column3 AS period_start, column4 AS period_end, ' +
    `column5 AS subscription_id FROM (VALUES ${rows.map(() => row).join(', ')}) v`;
  return {
    from: `(${groups}) w JOIN features f ON f.key = w.feature_key JOIN usage_events e ON ${EVENTS_IN_GROUP}`,
    bindings: rows.flatMap((r) => [r.tenantId, r.featureKey, r.periodStart, r.periodEnd, r.subscriptionId]),
  };
}

/**
 * Every event of the tenants in aggregate_windows. SQLite walks the windows and reads each
 * (tenant, feature, time range) from the usage_events index; PostgreSQL scans the table once
 * and finds each event's window by hash on (tenant_id, bucket), then the exact [lo, hi) test.
 */
export function windowsTableSource(db: Db): UsageSource {
  if (db.dialect === 'sqlite') {
    return {
      from:
        'aggregate_windows w CROSS JOIN features f JOIN usage_events e ON e.tenant_id = w.tenant_id ' +
        'AND e.feature_key = f.key AND e.occurred_at >= w.lo AND e.occurred_at < w.hi',
      bindings: [],
    };
  }
  return {
    from:
      `usage_events e JOIN aggregate_windows w ON w.tenant_id = e.tenant_id AND w.bucket = ${BUCKET_SQL} ` +
      'AND e.occurred_at >= w.lo AND e.occurred_at < w.hi JOIN features f ON f.key = e.feature_key',
    bindings: [],
  };
}

const GROUP_COLS = 'w.tenant_id, f.key, w.period_start, w.period_end, w.subscription_id';
const SELECT_COLS = 'w.tenant_id, f.key AS feature_key, w.period_start, w.period_end, w.subscription_id';
const OUT_COLS = 'tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count';
const MICRO = 10 ** QUANTITY_SCALE;

/** A piece of SQL with its bindings, run by the caller on its own connection or transaction. */
export interface SqlPart {
  sql: string;
  bindings: Knex.RawBinding[];
}

/** sum, count and max in one pass (count is in events, stored as micro-units like the rest). */
function additiveSelect(src: UsageSource): SqlPart {
  return {
    sql: `SELECT ${SELECT_COLS}, CASE f.aggregation WHEN 'count' THEN COUNT(*) * ${MICRO} WHEN 'max' THEN MAX(e.quantity) ` +
      `ELSE SUM(e.quantity) END AS quantity, COUNT(*) AS event_count FROM ${src.from} ` +
      `WHERE f.aggregation NOT IN ('last', 'unique') GROUP BY ${GROUP_COLS}, f.aggregation`,
    bindings: src.bindings,
  };
}

/** last: the value of the latest event by occurred_at, ties broken by ingest order (seq). */
function lastSelect(src: UsageSource): SqlPart {
  const part = 'PARTITION BY w.tenant_id, f.key, w.period_start';
  return {
    sql: `SELECT ${OUT_COLS} FROM (SELECT ${SELECT_COLS}, ` +
      `e.quantity, ROW_NUMBER() OVER (${part} ORDER BY e.occurred_at DESC, e.seq DESC) AS rn, ` +
      `COUNT(*) OVER (${part}) AS event_count FROM ${src.from} WHERE f.aggregation = 'last') x WHERE rn = 1`,
    bindings: src.bindings,
  };
}

/** unique: distinct non-null values of the user_id column or of a metadata field. */
function uniqueSelect(db: Db, src: UsageSource, feature: Feature): SqlPart {
  const by = feature.uniqueBy ?? 'user_id';
  const value = by === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', by);
  return {
    sql: `SELECT ${SELECT_COLS}, COUNT(DISTINCT ?) * ${MICRO} AS quantity, COUNT(*) AS event_count FROM ${src.from} ` +
      `WHERE f.key = ? GROUP BY ${GROUP_COLS}`,
    bindings: [value, ...src.bindings, feature.key],
  };
}

/** The selects that together compute every group of the source for these features. */
export function usageSelects(db: Db, src: UsageSource, features: Iterable<Feature>): SqlPart[] {
  const fs = [...features];
  const out: SqlPart[] = [];
  if (fs.some((f) => f.aggregation !== 'last' && f.aggregation !== 'unique')) out.push(additiveSelect(src));
  if (fs.some((f) => f.aggregation === 'last')) out.push(lastSelect(src));
  for (const f of fs) if (f.aggregation === 'unique') out.push(uniqueSelect(db, src, f));
  return out;
}

/** Insert the computed groups into usage_summaries (the caller has deleted the old rows). */
export async function insertSummaries(q: Knex | Knex.Transaction, select: SqlPart, computedAt: number): Promise<void> {
  await q.raw(`INSERT INTO usage_summaries (${OUT_COLS}, computed_at) SELECT ${OUT_COLS}, ? FROM (${select.sql}) x`, [
    computedAt,
    ...select.bindings,
  ]);
}

export interface UsageRow {
  tenantId: string;
  featureKey: string;
  periodStart: number;
  /** Micro-units, exact. */
  quantity: string;
  eventCount: number;
}

/** Read the computed groups (quantities as exact text). */
export async function readUsage(db: Db, q: Knex | Knex.Transaction, selects: SqlPart[]): Promise<UsageRow[]> {
  if (selects.length === 0) return [];
  // SQLite takes no parenthesised members in a UNION: each select is wrapped as a subquery.
  const union = selects.map((s) => `SELECT * FROM (${s.sql}) s`).join(' UNION ALL ');
  const res = await q.raw(
    `SELECT tenant_id, feature_key, period_start, CAST(quantity AS TEXT) AS quantity, event_count FROM (${union}) u`,
    selects.flatMap((s) => s.bindings),
  );
  const rows: Array<Record<string, unknown>> = db.dialect === 'pg' ? res.rows : res;
  return rows.map((r) => ({
    tenantId: String(r.tenant_id),
    featureKey: String(r.feature_key),
    periodStart: Number(r.period_start),
    quantity: String(r.quantity),
    eventCount: Number(r.event_count),
  }));
}
