import type { Knex } from 'knex';
import type { Aggregation, Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField } from '../storage/sql.js';

/**
 * The aggregation semantics, once, as SQL: every reader of usage (the aggregate stage, the
 * entitlement check, reports) selects through these builders, so they cannot disagree.
 *
 * A source is a FROM clause that pairs events `e` with the window `w` (tenant_id,
 * period_start, period_end, subscription_id) they fall in and the feature `f` they count for,
 * plus an optional condition on the events. Each select yields OUT_COLS: the group, quantity
 * (micro-units), event_count, and for `last` the instant and seq of the latest event.
 */
export interface UsageSource {
  from: string;
  bindings: Knex.RawBinding[];
  where?: string;
  whereBindings?: Knex.RawBinding[];
}

/** A piece of SQL with its bindings, run by the caller on its own connection or transaction. */
export interface SqlPart {
  sql: string;
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

/** The bucket of instant t, as BUCKET_SQL computes it. */
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

/** The groups of a table shaped like aggregate_groups; their events found by index. */
export function groupsTableSource(table: string, where?: SqlPart): UsageSource {
  return {
    from: `${table} w JOIN features f ON f.key = w.feature_key JOIN usage_events e ON ${EVENTS_IN_GROUP}`,
    bindings: [],
    where: where?.sql,
    whereBindings: where?.bindings,
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

const EVENTS_TO_WINDOWS =
  `usage_events e JOIN aggregate_windows w ON w.tenant_id = e.tenant_id AND w.bucket = ${BUCKET_SQL} ` +
  'AND e.occurred_at >= w.lo AND e.occurred_at < w.hi JOIN features f ON f.key = e.feature_key';

/** Events chosen by a condition (new seqs), each joined to its window in aggregate_windows. */
export function eventsSource(where: SqlPart): UsageSource {
  return { from: EVENTS_TO_WINDOWS, bindings: [], where: where.sql, whereBindings: where.bindings };
}

/**
 * Every event of the tenants in aggregate_windows (a full rebuild). SQLite walks the windows
 * and reads each (tenant, feature, time range) from the usage_events index; PostgreSQL scans
 * the table once and finds each event's window by hash on (tenant_id, bucket), then [lo, hi).
 */
export function windowsScanSource(db: Db, where?: SqlPart): UsageSource {
  const from =
    db.dialect === 'sqlite'
      ? 'aggregate_windows w CROSS JOIN features f JOIN usage_events e ON e.tenant_id = w.tenant_id ' +
        'AND e.feature_key = f.key AND e.occurred_at >= w.lo AND e.occurred_at < w.hi'
      : EVENTS_TO_WINDOWS;
  return { from, bindings: [], where: where?.sql, whereBindings: where?.bindings };
}

const GROUP_COLS = 'w.tenant_id, f.key, w.period_start, w.period_end, w.subscription_id';
const SELECT_COLS = 'w.tenant_id, f.key AS feature_key, w.period_start, w.period_end, w.subscription_id';
const OUT_COLS = 'tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq';
const NO_LAST = 'CAST(NULL AS BIGINT) AS last_at, CAST(NULL AS BIGINT) AS last_seq';
const MICRO = 10 ** QUANTITY_SCALE;

function where(src: UsageSource, filter: string, filterBindings: Knex.RawBinding[] = []): SqlPart {
  return {
    sql: `WHERE ${filter}${src.where ? ` AND ${src.where}` : ''}`,
    bindings: [...filterBindings, ...(src.whereBindings ?? [])],
  };
}

export type Additive = Extract<Aggregation, 'sum' | 'count' | 'max'>;
const ADDITIVE: Additive[] = ['sum', 'count', 'max'];

/** sum, count and max in one pass (count is in events, stored as micro-units like the rest). */
function additiveSelect(src: UsageSource, kinds: Additive[]): SqlPart {
  // Boolean features are stored with aggregation 'sum' and have no events.
  const w = where(src, `f.aggregation IN (${kinds.map((k) => `'${k}'`).join(', ')})`);
  return {
    sql:
      `SELECT ${SELECT_COLS}, CASE f.aggregation WHEN 'count' THEN COUNT(*) * ${MICRO} WHEN 'max' THEN MAX(e.quantity) ` +
      `ELSE SUM(e.quantity) END AS quantity, COUNT(*) AS event_count, ${NO_LAST} FROM ${src.from} ${w.sql} ` +
      `GROUP BY ${GROUP_COLS}, f.aggregation`,
    bindings: [...src.bindings, ...w.bindings],
  };
}

/** last: the value of the latest event by occurred_at, ties broken by ingest order (seq). */
function lastSelect(src: UsageSource): SqlPart {
  const part = 'PARTITION BY w.tenant_id, f.key, w.period_start';
  const w = where(src, "f.aggregation = 'last'");
  return {
    sql:
      `SELECT ${OUT_COLS} FROM (SELECT ${SELECT_COLS}, e.quantity, ` +
      `COUNT(*) OVER (${part}) AS event_count, e.occurred_at AS last_at, e.seq AS last_seq, ` +
      `ROW_NUMBER() OVER (${part} ORDER BY e.occurred_at DESC, e.seq DESC) AS rn FROM ${src.from} ${w.sql}) x WHERE rn = 1`,
    bindings: [...src.bindings, ...w.bindings],
  };
}

/** unique: distinct non-null values of the user_id column or of a metadata field. */
function uniqueSelect(db: Db, src: UsageSource, feature: Feature): SqlPart {
  const by = feature.uniqueBy ?? 'user_id';
  const value = by === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', by);
  const w = where(src, 'f.key = ?', [feature.key]);
  return {
    sql:
      `SELECT ${SELECT_COLS}, COUNT(DISTINCT ?) * ${MICRO} AS quantity, COUNT(*) AS event_count, ${NO_LAST} ` +
      `FROM ${src.from} ${w.sql} GROUP BY ${GROUP_COLS}`,
    bindings: [value, ...src.bindings, ...w.bindings],
  };
}

/** The selects that together compute every group of the source for these features. */
export function usageSelects(db: Db, src: UsageSource, features: Iterable<Feature>): SqlPart[] {
  const fs = [...features];
  const out: SqlPart[] = [];
  const kinds = ADDITIVE.filter((k) => fs.some((f) => f.aggregation === k));
  if (kinds.length > 0) out.push(additiveSelect(src, kinds));
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

const KEEP_OR_TAKE = {
  // sum and count add up; a peak is the larger; the last value is the later event's.
  add: 'quantity = usage_summaries.quantity + excluded.quantity',
  max: 'quantity = CASE WHEN excluded.quantity > usage_summaries.quantity THEN excluded.quantity ELSE usage_summaries.quantity END',
} as const;

const LATER =
  '(usage_summaries.last_at IS NULL OR excluded.last_at > usage_summaries.last_at ' +
  'OR (excluded.last_at = usage_summaries.last_at AND excluded.last_seq > usage_summaries.last_seq))';

/**
 * Fold new events into existing summaries: the selects compute the groups of the new events
 * only, and each is merged into the stored group (or inserted). Exact only for events never
 * folded in before; the caller guarantees that with the seq watermark.
 */
export async function mergeSummaries(q: Knex | Knex.Transaction, src: UsageSource, features: Feature[], computedAt: number): Promise<void> {
  const has = (k: Aggregation) => features.some((f) => f.aggregation === k);
  const merges: Array<{ select: SqlPart; set: string }> = [];
  const additive = (['sum', 'count'] as Additive[]).filter(has);
  if (additive.length > 0) merges.push({ select: additiveSelect(src, additive), set: KEEP_OR_TAKE.add });
  if (has('max')) merges.push({ select: additiveSelect(src, ['max']), set: KEEP_OR_TAKE.max });
  if (has('last')) {
    merges.push({
      select: lastSelect(src),
      set:
        `quantity = CASE WHEN ${LATER} THEN excluded.quantity ELSE usage_summaries.quantity END, ` +
        `last_seq = CASE WHEN ${LATER} THEN excluded.last_seq ELSE usage_summaries.last_seq END, ` +
        `last_at = CASE WHEN ${LATER} THEN excluded.last_at ELSE usage_summaries.last_at END`,
    });
  }
  for (const m of merges) {
    // `WHERE true`: SQLite's documented way to tell an upsert's ON CONFLICT from a join's ON.
    await q.raw(
      `INSERT INTO usage_summaries (${OUT_COLS}, computed_at) SELECT ${OUT_COLS}, ? FROM (${m.select.sql}) x WHERE true ` +
        `ON CONFLICT (tenant_id, feature_key, period_start) DO UPDATE SET ${m.set}, ` +
        'event_count = usage_summaries.event_count + excluded.event_count, period_end = excluded.period_end, ' +
        'subscription_id = excluded.subscription_id, computed_at = excluded.computed_at',
      [computedAt, ...m.select.bindings],
    );
  }
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
