import type { Knex } from 'knex';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';
import { uniqueValue, weightedTermSql } from './usage-sql.js';
import { HOLES, WATERMARK } from './watermark.js';

const MICRO = 10 ** QUANTITY_SCALE;

const IN_WINDOW = 'e.tenant_id = ? AND e.feature_key = ? AND e.occurred_at >= ? AND e.occurred_at < ?';
/** An event's weighted_sum term, the window's end bound first. */
const WEIGHTED_TERM = weightedTermSql('e.quantity', 'e.occurred_at', 'CAST(? AS BIGINT)');

/*
 * The SQL of the usage read model (usage.ts `usageOf`, README "Reading usage"): one group's
 * quantity from its events, or from its summary plus the events not aggregated yet, with the
 * tests that say when the latter can be trusted.
 */

/**
 * One (tenant, feature, window) group's quantity in micro-units as text, or NULL with no
 * events: the aggregations of aggregate/usage-sql.ts for a single group, as a scalar query
 * over one index range. The general builders join a set of groups and GROUP BY them, which
 * for one group costs more; tests/check-cache.test.ts holds the two equal.
 */
export function windowQuantitySql(
  db: Db,
  feature: Feature,
  group: { tenantId: string; start: number; end: number },
): { sql: string; bindings: Knex.RawBinding[] } {
  const range = [group.tenantId, feature.key, group.start, group.end];
  switch (feature.aggregation) {
    case 'sum':
    case 'avg': // the sum; usageOf divides (value.ts)
      return { sql: `SELECT CAST(SUM(e.quantity) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: range };
    case 'weighted_sum': // the accumulator; usageOf divides (value.ts)
      return { sql: `SELECT CAST(SUM(${WEIGHTED_TERM}) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: [group.end, ...range] };
    case 'count':
      return { sql: `SELECT CAST(COUNT(*) * ${MICRO} AS TEXT) FROM usage_events e WHERE ${IN_WINDOW} HAVING COUNT(*) > 0`, bindings: range };
    case 'max':
      return { sql: `SELECT CAST(MAX(e.quantity) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: range };
    case 'min':
      return { sql: `SELECT CAST(MIN(e.quantity) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: range };
    case 'last':
      // Latest by occurred_at, ties to the later ingest (seq), as lastSelect.
      return {
        sql: `SELECT CAST(e.quantity AS TEXT) FROM usage_events e WHERE ${IN_WINDOW} ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1`,
        bindings: range,
      };
    case 'unique':
      // COUNT(DISTINCT) skips NULLs: events without the value count for nothing, as uniqueSelect.
      return {
        sql: `SELECT CAST(COUNT(DISTINCT v) * ${MICRO} AS TEXT) FROM (SELECT ? AS v FROM usage_events e WHERE ${IN_WINDOW}) x HAVING COUNT(*) > 0`,
        bindings: [uniqueValue(db, feature), ...range],
      };
  }
}

/**
 * The window's quantity as its summary plus the events not aggregated yet (seq above the
 * watermark), with `ok` = 1 when that sum can be trusted: the stored watermark is the one
 * given (and bound, so PostgreSQL plans the new events' range as the few rows it is), the
 * aggregate stage left no hole (PostgreSQL seqs committed out of order, watermark.ts), and it
 * cut the tenant's summaries by the windows of `windowsKey` (its subscriptions now).
 * Summaries and watermark are written in one transaction and read here in one statement, so
 * the summary holds exactly the window's events up to the watermark: a check costs the events
 * since the last run, not the tenant's whole period. A unique count adds the new values its
 * group's value set lacks, so it also needs the set, which a PostgreSQL rebuild leaves to fill
 * later. Columns: ok, watermark (the stored one), quantity (micro-units as text), and with
 * `withEvents` the window's event count.
 */
export function summaryPlusNewSql(
  db: Db,
  feature: Feature,
  group: { tenantId: string; start: number; end: number },
  trust: { windowsKey: string; watermark: number },
  withEvents = false,
): { sql: string; bindings: Knex.RawBinding[] } {
  const { tenantId, start, end } = group;
  // By the (tenant, feature, seq) index: `+` keeps the occurred_at range off the other one.
  // The seq range is bounded on both sides so that PostgreSQL, planning the prepared statement
  // for any values, takes it for a narrow range (as it is) and keeps one generic plan instead
  // of planning each check anew (half of its time).
  const fresh =
    'FROM usage_events e WHERE e.tenant_id = ? AND e.feature_key = ? AND e.seq > ? AND e.seq <= ? AND +e.occurred_at >= ? AND +e.occurred_at < ?';
  const newer = [tenantId, feature.key, trust.watermark, Number.MAX_SAFE_INTEGER, start, end];
  const aggregation = uniqueSetTrust(db, feature, group);
  let cols: string;
  let merged: string;
  let bindings: Knex.RawBinding[];
  switch (feature.aggregation) {
    case 'sum':
    case 'avg':
      [cols, bindings, merged] = [`(SELECT SUM(e.quantity) ${fresh}) AS d`, newer, 'COALESCE(x.s, 0) + COALESCE(x.d, 0)'];
      break;
    case 'weighted_sum':
      [cols, bindings, merged] = [`(SELECT SUM(${WEIGHTED_TERM}) ${fresh}) AS d`, [end, ...newer], 'COALESCE(x.s, 0) + COALESCE(x.d, 0)'];
      break;
    case 'count':
      [cols, bindings, merged] = [`(SELECT COUNT(*) ${fresh}) AS d`, newer, `COALESCE(x.s, 0) + x.d * ${MICRO}`];
      break;
    case 'max':
      [cols, bindings, merged] = [`(SELECT MAX(e.quantity) ${fresh}) AS d`, newer, 'CASE WHEN x.d IS NULL THEN x.s WHEN x.s IS NULL OR x.d > x.s THEN x.d ELSE x.s END'];
      break;
    case 'min':
      [cols, bindings, merged] = [`(SELECT MIN(e.quantity) ${fresh}) AS d`, newer, 'CASE WHEN x.d IS NULL THEN x.s WHEN x.s IS NULL OR x.d < x.s THEN x.d ELSE x.s END'];
      break;
    case 'last':
      // Every new event has a higher seq than the summary's latest: at an equal instant it wins.
      cols = `(SELECT e.quantity ${fresh} ORDER BY e.occurred_at DESC, e.seq DESC LIMIT 1) AS d, (SELECT MAX(e.occurred_at) ${fresh}) AS d_at`;
      bindings = [...newer, ...newer];
      merged = 'CASE WHEN x.d_at IS NOT NULL AND (x.s_at IS NULL OR x.d_at >= x.s_at) THEN x.d ELSE x.s END';
      break;
    case 'unique':
      cols =
        `(SELECT COUNT(DISTINCT n.v) FROM (SELECT ? AS v ${fresh}) n WHERE n.v IS NOT NULL AND NOT EXISTS (` +
        'SELECT 1 FROM usage_unique_values u WHERE u.tenant_id = ? AND u.feature_key = ? AND u.period_start = ? AND u.value = n.v)) AS d';
      bindings = [uniqueValue(db, feature), ...newer, tenantId, feature.key, start];
      merged = `COALESCE(x.s, 0) + x.d * ${MICRO}`;
      break;
  }
  // The window's events, summarized and new (a report lists a feature only when it has some).
  if (withEvents) {
    cols += `, (SELECT COUNT(*) ${fresh}) AS d_n`;
    bindings = [...bindings, ...newer];
  }
  const events = withEvents ? ', COALESCE(x.s_n, 0) + x.d_n AS events' : '';
  const ok = `CASE WHEN x.w = ? AND ${TRUSTED}${aggregation.trusted} THEN 1 ELSE 0 END`;
  return {
    sql:
      `SELECT ${ok} AS ok, x.w AS watermark, CAST(${merged} AS TEXT) AS quantity${events} FROM (` +
      `SELECT ${STATE_COLS}, s.last_at AS s_at${aggregation.cols}, ${cols} ${STATE_FROM}) x`,
    bindings: [trust.watermark, trust.windowsKey, end, ...aggregation.bindings, ...bindings, tenantId, feature.key, start, tenantId],
  };
}

// One row: the aggregate state, the window's summary (if any) and the tenant's cut (if any).
const STATE_COLS = 'j.w, j.holes, a.windows_key AS cut, s.period_end AS s_end, s.quantity AS s, s.event_count AS s_n';
const STATE_FROM =
  `FROM (SELECT CAST(MAX(CASE WHEN key = '${WATERMARK}' THEN value END) AS BIGINT) AS w, ` +
  `MAX(CASE WHEN key = '${HOLES}' THEN value END) AS holes FROM job_state WHERE key IN ('${WATERMARK}', '${HOLES}')) j ` +
  'LEFT JOIN usage_summaries s ON s.tenant_id = ? AND s.feature_key = ? AND s.period_start = ? ' +
  'LEFT JOIN aggregate_tenants a ON a.tenant_id = ?';
// Bindings: the tenant's windows key now, the window's end.
const TRUSTED = "x.holes = '[]' AND COALESCE(x.cut, '') = ? AND (x.s_end IS NULL OR x.s_end = ?)";

/** What a unique count adds to the trust test: a count needs its whole value set (nothing for the others). */
function uniqueSetTrust(db: Db, feature: Feature, group: { tenantId: string; start: number }): { cols: string; bindings: Knex.RawBinding[]; trusted: string } {
  if (feature.aggregation !== 'unique') return { cols: '', bindings: [], trusted: '' };
  return {
    cols: ', (SELECT COUNT(*) FROM usage_unique_values u WHERE u.tenant_id = ? AND u.feature_key = ? AND u.period_start = ?) AS set_n',
    bindings: [group.tenantId, feature.key, group.start],
    trusted: ` AND (x.s IS NULL OR x.s = 0 OR x.set_n * ${MICRO} = x.s)`,
  };
}

const WATERMARK_SQL = `(SELECT CAST(value AS BIGINT) FROM job_state WHERE key = '${WATERMARK}')`;

/**
 * Every event of the window (windowQuantitySql), with the aggregate watermark and whether
 * summaryPlusNewSql could be trusted at it (`trusted` 0/1) for the tenant's windows key, for a
 * caller that reads the whole window until it can. A null key skips that question (no
 * aggregate run seen yet: the watermark alone tells when there is one). Columns: trusted,
 * watermark, quantity, and with `withEvents` the window's event count (events).
 */
export function wholeWindowSql(
  db: Db,
  feature: Feature,
  group: { tenantId: string; start: number; end: number },
  windowsKey: string | null,
  withEvents = false,
): { sql: string; bindings: Knex.RawBinding[] } {
  const q = windowQuantitySql(db, feature, group);
  const count = `, (SELECT COUNT(*) FROM usage_events e WHERE ${IN_WINDOW}) AS events`;
  const whole = withEvents
    ? { sql: q.sql, bindings: q.bindings, events: count, eventBindings: [group.tenantId, feature.key, group.start, group.end] }
    : { sql: q.sql, bindings: q.bindings, events: '', eventBindings: [] };
  if (windowsKey === null) {
    return {
      sql: `SELECT 0 AS trusted, ${WATERMARK_SQL} AS watermark, (${whole.sql}) AS quantity${whole.events}`,
      bindings: [...whole.bindings, ...whole.eventBindings],
    };
  }
  const aggregation = uniqueSetTrust(db, feature, group);
  return {
    sql:
      `SELECT CASE WHEN x.w IS NOT NULL AND ${TRUSTED}${aggregation.trusted} THEN 1 ELSE 0 END AS trusted, x.w AS watermark, ` +
      `(${whole.sql}) AS quantity${whole.events} FROM (SELECT ${STATE_COLS}${aggregation.cols} ${STATE_FROM}) x`,
    bindings: [windowsKey, group.end, ...whole.bindings, ...whole.eventBindings, ...aggregation.bindings, group.tenantId, feature.key, group.start, group.tenantId],
  };
}
