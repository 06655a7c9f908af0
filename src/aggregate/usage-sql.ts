import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { jsonField, rowsWritten } from '../storage/sql.js';

/**
 * The aggregation semantics, once, as SQL: every reader of usage (the aggregate stage, the
 * entitlement check, reports) selects through these builders, so they cannot disagree.
 *
 * A source pairs events `e` with the window `w` (tenant_id, period_start, period_end,
 * subscription_id) they fall in, for a given set of feature keys; `feature` is the SQL of an
 * event's feature key. Each select yields OUT_COLS: the group, quantity (micro-units),
 * event_count, and for `last` the instant and seq of the latest event.
 */
export type UsageSource = (featureKeys: string[]) => SourceSql;

export interface SourceSql {
  from: string;
  bindings: Knex.RawBinding[];
  feature: string;
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
  /** The billing period the window belongs to, before clipping (weighted_sum's divisor, value.ts). */
  billingPeriod?: { start: number; end: number };
}

/** Width and offset of the time buckets of aggregate_windows (about 6.2 days). */
export const BUCKET_MS = 2 ** 29;
const BUCKET_OFFSET = 2 ** 25; // in buckets: keeps keys positive for any JS Date instant

/** The bucket of instant t, as BUCKET_SQL computes it. */
export function bucketOf(t: number): number {
  return Math.floor(t / BUCKET_MS) + BUCKET_OFFSET;
}

export function bucketStart(bucket: number): number {
  return (bucket - BUCKET_OFFSET) * BUCKET_MS;
}

/** The bucket of an instant, in SQL (integer division: positive operands on both databases). */
export function bucketSql(instant: string): string {
  return `((${instant} + ${BUCKET_OFFSET * BUCKET_MS}) / ${BUCKET_MS})`;
}

/** bucketStart in SQL. */
export function bucketStartSql(bucket: string): string {
  return `((${bucket} - ${BUCKET_OFFSET}) * ${BUCKET_MS})`;
}

/** The bucket of event `e`. */
export const BUCKET_SQL = bucketSql('e.occurred_at');

const EVENTS_IN_GROUP =
  'e.tenant_id = w.tenant_id AND e.feature_key = w.feature_key AND e.occurred_at >= w.period_start AND e.occurred_at < w.period_end';

/** Groups given as literal rows (one tenant's check, a report's tenants). */
export function literalGroupsSource(rows: GroupRow[]): UsageSource {
  // VALUES rather than a UNION: SQLite caps compound selects at 500 terms. Both databases
  // name VALUES columns column1..columnN.
  const row = '(CAST(? AS TEXT), CAST(? AS TEXT), CAST(? AS BIGINT), CAST(? AS BIGINT), CAST(? AS TEXT))';
  const groups =
    'SELECT column1 AS tenant_id, column2 AS feature_key, column3 AS period_start, column4 AS period_end, ' +
    `column5 AS subscription_id FROM (VALUES ${rows.map(() => row).join(', ')}) v`;
  const bindings = rows.flatMap((r) => [r.tenantId, r.featureKey, r.periodStart, r.periodEnd, r.subscriptionId]);
  // CROSS JOIN: SQLite keeps the groups outside, each an index range of its events. Given
  // statistics and a thousand groups, it scanned the whole table instead, once per select.
  return () => ({ from: `(${groups}) w CROSS JOIN usage_events e`, bindings, feature: 'w.feature_key', where: EVENTS_IN_GROUP });
}

/** Events `e` joined to their window piece `w` in aggregate_windows, by hash on (tenant_id, bucket). */
/** `CASE <whens> ELSE otherwise END`, or `otherwise` alone when there is no WHEN (a CASE needs one). */
export function caseOf(whens: string[], otherwise: string): string {
  const used = whens.filter((w) => w !== '');
  return used.length ? `CASE ${used.join('')}ELSE ${otherwise} END` : `(${otherwise})`;
}

export const EVENTS_TO_WINDOWS =
  `usage_events e JOIN aggregate_windows w ON w.tenant_id = e.tenant_id AND w.bucket = ${BUCKET_SQL} ` +
  'AND e.occurred_at >= w.lo AND e.occurred_at < w.hi';

/** The events of aggregate_delta (a run's new events) `e`, with their windows `w`. */
export const DELTA_TO_WINDOWS =
  'aggregate_delta e JOIN (SELECT DISTINCT window_id, tenant_id, period_start, period_end, subscription_id ' +
  'FROM aggregate_windows) w ON w.window_id = e.window_id';

export function deltaSource(where: SqlPart): UsageSource {
  return () => ({
    from: DELTA_TO_WINDOWS,
    bindings: [],
    feature: 'e.feature_key',
    where: where.sql,
    whereBindings: where.bindings,
  });
}

const OUT_COLS = 'tenant_id, feature_key, period_start, period_end, subscription_id, quantity, event_count, last_at, last_seq';
const NO_LAST = 'CAST(NULL AS BIGINT) AS last_at, CAST(NULL AS BIGINT) AS last_seq';
const MICRO = 10 ** QUANTITY_SCALE;

const marks = (xs: unknown[]) => xs.map(() => '?').join(', ');

/** A source for these features, with its group columns and its full WHERE clause. */
function frame(source: UsageSource, keys: string[]) {
  const src = source(keys);
  const group = `w.tenant_id, ${src.feature}, w.period_start, w.period_end, w.subscription_id`;
  return {
    from: src.from,
    fromBindings: src.bindings,
    feature: src.feature,
    group,
    cols: `w.tenant_id, ${src.feature} AS feature_key, w.period_start, w.period_end, w.subscription_id`,
    where: `WHERE ${src.feature} IN (${marks(keys)})${src.where ? ` AND ${src.where}` : ''}`,
    whereBindings: [...keys, ...(src.whereBindings ?? [])],
  };
}

const keysOf = (fs: Feature[], ...kinds: string[]) => fs.filter((f) => kinds.includes(f.aggregation)).map((f) => f.key);

/** The aggregations computed by additiveSelect (sums and their kin; merged as sums unless a peak or trough). */
export const ADDITIVE = ['sum', 'count', 'max', 'min', 'avg', 'weighted_sum'];

/**
 * weighted_sum's accumulator term for one event: its quantity held from its instant to the
 * window's end, in whole seconds (value.ts divides by the billing period's seconds). Instants
 * are >= 0, so integer division is floor on both databases.
 */
export function weightedTermSql(quantity: string, occurredAt: string, windowEnd: string): string {
  return `${quantity} * (${windowEnd} / 1000 - ${occurredAt} / 1000)`;
}

/**
 * sum, count, max, min, avg and weighted_sum in one pass (count is in events, stored as
 * micro-units like the rest; avg and weighted_sum store their accumulators, see value.ts).
 */
function additiveSelect(source: UsageSource, features: Feature[]): SqlPart {
  const keys = keysOf(features, ...ADDITIVE);
  const f = frame(source, keys);
  const counts = keysOf(features, 'count');
  const peaks = keysOf(features, 'max');
  const troughs = keysOf(features, 'min');
  const weighted = keysOf(features, 'weighted_sum');
  const branches =
    (counts.length ? `WHEN ${f.feature} IN (${marks(counts)}) THEN COUNT(*) * ${MICRO} ` : '') +
    (peaks.length ? `WHEN ${f.feature} IN (${marks(peaks)}) THEN MAX(e.quantity) ` : '') +
    (troughs.length ? `WHEN ${f.feature} IN (${marks(troughs)}) THEN MIN(e.quantity) ` : '') +
    // The term under its own CASE too: the database computes every branch's aggregate over every row.
    (weighted.length
      ? `WHEN ${f.feature} IN (${marks(weighted)}) THEN SUM(CASE WHEN ${f.feature} IN (${marks(weighted)}) THEN ${weightedTermSql('e.quantity', 'e.occurred_at', 'w.period_end')} END) `
      : '');
  const quantity = branches ? `CASE ${branches}ELSE SUM(e.quantity) END` : 'SUM(e.quantity)';
  return {
    sql: `SELECT ${f.cols}, ${quantity} AS quantity, COUNT(*) AS event_count, ${NO_LAST} FROM ${f.from} ${f.where} GROUP BY ${f.group}`,
    bindings: [...counts, ...peaks, ...troughs, ...weighted, ...weighted, ...f.fromBindings, ...f.whereBindings],
  };
}

/** last: the value of the latest event by occurred_at, ties broken by ingest order (seq). */
function lastSelect(source: UsageSource, features: Feature[]): SqlPart {
  const f = frame(source, keysOf(features, 'last'));
  const part = `PARTITION BY w.tenant_id, ${f.feature}, w.period_start`;
  return {
    sql:
      `SELECT ${OUT_COLS} FROM (SELECT ${f.cols}, e.quantity, COUNT(*) OVER (${part}) AS event_count, ` +
      `e.occurred_at AS last_at, e.seq AS last_seq, ROW_NUMBER() OVER (${part} ORDER BY e.occurred_at DESC, e.seq DESC) AS rn ` +
      `FROM ${f.from} ${f.where}) x WHERE rn = 1`,
    bindings: [...f.fromBindings, ...f.whereBindings],
  };
}

/** What a unique feature counts for event `e`: its user_id, or a field of its metadata. */
export function uniqueValue(db: Db, feature: Feature): Knex.Raw {
  const by = feature.uniqueBy ?? 'user_id';
  return by === 'user_id' ? db.knex.raw('e.user_id') : jsonField(db, 'e.metadata', by);
}

/**
 * unique: distinct non-null values of the user_id column or of a metadata field. Grouped by
 * value first, then counted: two hash aggregations instead of COUNT(DISTINCT)'s sort.
 */
function uniqueSelect(db: Db, source: UsageSource, feature: Feature): SqlPart {
  const f = frame(source, [feature.key]);
  const value = uniqueValue(db, feature);
  const cols = 'tenant_id, feature_key, period_start, period_end, subscription_id';
  return {
    sql:
      `SELECT ${cols}, COUNT(v) * ${MICRO} AS quantity, SUM(n) AS event_count, ${NO_LAST} FROM (` +
      `SELECT ${f.cols}, ? AS v, COUNT(*) AS n FROM ${f.from} ${f.where} GROUP BY 1, 2, 3, 4, 5, 6) x GROUP BY ${cols}`,
    bindings: [value, ...f.fromBindings, ...f.whereBindings],
  };
}

/** The selects that together compute every group of the source for these features. */
export function usageSelects(db: Db, source: UsageSource, features: Iterable<Feature>): SqlPart[] {
  const fs = [...features].filter((f) => f.type !== 'boolean');
  const out: SqlPart[] = [];
  if (keysOf(fs, ...ADDITIVE).length > 0) out.push(additiveSelect(source, fs));
  if (keysOf(fs, 'last').length > 0) out.push(lastSelect(source, fs));
  for (const f of fs) if (f.aggregation === 'unique') out.push(uniqueSelect(db, source, f));
  return out;
}

const LATER =
  '(usage_summaries.last_at IS NULL OR excluded.last_at > usage_summaries.last_at ' +
  'OR (excluded.last_at = usage_summaries.last_at AND excluded.last_seq > usage_summaries.last_seq))';

/**
 * Fold new events into existing summaries: the selects compute the groups of the new events
 * only, and each is merged into the stored group (or inserted): sum, count and the
 * accumulators of avg and weighted_sum add up, a peak
 * is the larger, a trough (min) the smaller, the last value is the later event's, a unique count is the size of the
 * group's value set after adding the new values. Exact only for events never folded in
 * before; the caller guarantees that with the seq watermark.
 */
/** Returns the summaries written: each group is in one merge, its feature's. */
export async function mergeSummaries(db: Db, source: UsageSource, features: Feature[], computedAt: number): Promise<number> {
  const merges: Array<{ select: SqlPart; set: string; setBindings?: Knex.RawBinding[] }> = [];
  for (const u of features.filter((f) => f.aggregation === 'unique')) merges.push(await mergeUniqueValues(db, source, u));
  const additive = features.filter((f) => ADDITIVE.includes(f.aggregation));
  const peaks = keysOf(features, 'max');
  const troughs = keysOf(features, 'min');
  if (additive.length > 0) {
    const larger = 'CASE WHEN excluded.quantity > usage_summaries.quantity THEN excluded.quantity ELSE usage_summaries.quantity END';
    const smaller = 'CASE WHEN excluded.quantity < usage_summaries.quantity THEN excluded.quantity ELSE usage_summaries.quantity END';
    const isPeak = peaks.length ? `excluded.feature_key IN (${marks(peaks)})` : 'false';
    const isTrough = troughs.length ? `excluded.feature_key IN (${marks(troughs)})` : 'false';
    merges.push({
      select: additiveSelect(source, additive),
      set: `quantity = CASE WHEN ${isPeak} THEN ${larger} WHEN ${isTrough} THEN ${smaller} ELSE usage_summaries.quantity + excluded.quantity END`,
      setBindings: [...peaks, ...troughs],
    });
  }
  if (keysOf(features, 'last').length > 0) {
    merges.push({
      select: lastSelect(source, features),
      set:
        `quantity = CASE WHEN ${LATER} THEN excluded.quantity ELSE usage_summaries.quantity END, ` +
        `last_seq = CASE WHEN ${LATER} THEN excluded.last_seq ELSE usage_summaries.last_seq END, ` +
        `last_at = CASE WHEN ${LATER} THEN excluded.last_at ELSE usage_summaries.last_at END`,
    });
  }
  let written = 0;
  for (const m of merges) {
    // `WHERE true`: SQLite's documented way to tell an upsert's ON CONFLICT from a join's ON.
    const res = await db.knex.raw(
      `INSERT INTO usage_summaries (${OUT_COLS}, computed_at) SELECT ${OUT_COLS}, ? FROM (${m.select.sql}) x WHERE true ` +
        `ON CONFLICT (tenant_id, feature_key, period_start) DO UPDATE SET ${m.set}, ` +
        'event_count = usage_summaries.event_count + excluded.event_count, period_end = excluded.period_end, ' +
        'subscription_id = excluded.subscription_id, computed_at = excluded.computed_at',
      [computedAt, ...m.select.bindings, ...(m.setBindings ?? [])],
    );
    written += rowsWritten(db, res);
  }
  return written;
}

/**
 * unique: the new events' values join the group's stored set (usage_unique_values); the
 * summary is then the size of the set. Returns the summary merge to run.
 */
async function mergeUniqueValues(db: Db, source: UsageSource, feature: Feature): Promise<{ select: SqlPart; set: string }> {
  const f = frame(source, [feature.key]);
  await db.knex.raw(
    `INSERT INTO usage_unique_values (tenant_id, feature_key, period_start, value) SELECT DISTINCT w.tenant_id, ${f.feature}, w.period_start, ? ` +
      `FROM ${f.from} ${f.where} AND ? IS NOT NULL ON CONFLICT DO NOTHING`,
    [uniqueValue(db, feature), ...f.fromBindings, ...f.whereBindings, uniqueValue(db, feature)],
  );
  const size =
    '(SELECT COUNT(*) FROM usage_unique_values u WHERE u.tenant_id = w.tenant_id AND u.feature_key = ' +
    `${f.feature} AND u.period_start = w.period_start) * ${MICRO}`;
  return {
    select: {
      sql: `SELECT ${f.cols}, ${size} AS quantity, COUNT(*) AS event_count, ${NO_LAST} FROM ${f.from} ${f.where} GROUP BY ${f.group}`,
      bindings: [...f.fromBindings, ...f.whereBindings],
    },
    set: 'quantity = excluded.quantity',
  };
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
export async function readUsage(db: Db, selects: SqlPart[]): Promise<UsageRow[]> {
  if (selects.length === 0) return [];
  // SQLite takes no parenthesised members in a UNION: each select is wrapped as a subquery.
  const union = selects.map((s) => `SELECT * FROM (${s.sql}) s`).join(' UNION ALL ');
  const rows = await db.rows(
    `SELECT tenant_id, feature_key, period_start, CAST(quantity AS TEXT) AS quantity, event_count FROM (${union}) u`,
    selects.flatMap((s) => s.bindings),
  );
  return rows.map((r) => ({
    tenantId: String(r.tenant_id),
    featureKey: String(r.feature_key),
    periodStart: Number(r.period_start),
    quantity: String(r.quantity),
    eventCount: Number(r.event_count),
  }));
}
