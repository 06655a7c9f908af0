import type { AggregateDialect } from './dialect.js';
import { insertGroupsByIndex } from './per-group.js';
import { bulkInsert, countWritten, SCRATCH } from './scratch.js';
import { bucketOf, bucketStart } from './usage-sql.js';

/** SQLite's aggregate stage: one writer at a time (no holes), rebuilds by index ranges (per-group.ts). */
export const sqliteAggregate: AggregateDialect = {
  oldestRunning: async () => null,
  newHoles: async () => [],

  async clearScratch(db) {
    for (const table of SCRATCH) await db.knex(table).del();
  },

  async writeWindows(db, windows) {
    const rs: unknown[][] = [];
    windows.forEach(({ tenantId, window: w }, id) => {
      for (let b = bucketOf(w.start); bucketStart(b) < w.end; b++) {
        rs.push([id, tenantId, b, Math.max(w.start, bucketStart(b)), Math.min(w.end, bucketStart(b + 1)), w.start, w.end, w.subscription?.id ?? null]);
      }
    });
    await bulkInsert(db, {
      table: 'aggregate_windows',
      columns: ['window_id', 'tenant_id', 'bucket', 'lo', 'hi', 'period_start', 'period_end', 'subscription_id'],
      conflict: ['tenant_id', 'bucket', 'lo'],
    }, rs);
  },

  async rebuildWindows(db, features, upTo, now) {
    await insertGroupsByIndex(db, 'windows', features, upTo, now);
    return countWritten(db, 'aggregate_windows');
  },

  // Given statistics, SQLite would skip-scan (tenant, feature, seq) once per pair, twice as
  // slow as reading the seq range of the table.
  newEvents: 'usage_events e NOT INDEXED',
  mergeFresh: null,
  analyzeScratch: async () => {},
};
