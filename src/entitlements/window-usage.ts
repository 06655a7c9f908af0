import type { Knex } from 'knex';
import { uniqueValue } from '../aggregate/usage-sql.js';
import type { Feature } from '../domain/catalog.js';
import { QUANTITY_SCALE } from '../domain/quantity.js';
import type { Db } from '../storage/db.js';

const MICRO = 10 ** QUANTITY_SCALE;

const IN_WINDOW = 'e.tenant_id = ? AND e.feature_key = ? AND e.occurred_at >= ? AND e.occurred_at < ?';

/**
 * One (tenant, feature, window) group's quantity in micro-units as text, or NULL with no
 * events: the aggregations of aggregate/usage-sql.ts for a single group, as a scalar query
 * over one index range. The general builders join a set of groups and GROUP BY them, which
 * for one group costs three times as much; tests/check-cache.test.ts holds the two equal.
 */
export function windowQuantitySql(
  db: Db,
  feature: Feature,
  group: { tenantId: string; start: number; end: number },
): { sql: string; bindings: Knex.RawBinding[] } {
  const range = [group.tenantId, feature.key, group.start, group.end];
  switch (feature.aggregation) {
    case 'sum':
      return { sql: `SELECT CAST(SUM(e.quantity) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: range };
    case 'count':
      return { sql: `SELECT CAST(COUNT(*) * ${MICRO} AS TEXT) FROM usage_events e WHERE ${IN_WINDOW} HAVING COUNT(*) > 0`, bindings: range };
    case 'max':
      return { sql: `SELECT CAST(MAX(e.quantity) AS TEXT) FROM usage_events e WHERE ${IN_WINDOW}`, bindings: range };
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
