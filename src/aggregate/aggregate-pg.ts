import type { Knex } from 'knex';
import type { AggregateDialect } from './dialect.js';
import { insertAllSummariesPg } from './full-scan-pg.js';
import { mergeNewEventsPg } from './incremental-pg.js';
import { SCRATCH } from './scratch.js';
import { bucketSql, bucketStartSql } from './usage-sql.js';
import { findGaps, snapshotXmax, snapshotXmin, type Hole } from './watermark.js';

/**
 * PostgreSQL's aggregate stage: seqs commit out of order (holes, watermark.ts), full rebuilds
 * are one parallel scan (full-scan-pg.ts), and a fold with no hole open is one statement
 * (incremental-pg.ts).
 */
export const pgAggregate: AggregateDialect = {
  // Before the run's transaction writes anything, so that it is not its own oldest transaction.
  oldestRunning: (db) => snapshotXmin(db.trx!),

  // Seqs not visible yet are noted before any event is read, so that one committing
  // meanwhile is either read now or recomputed later, never merged twice.
  async newHoles(db, seen, upTo) {
    const gaps = await findGaps(db.trx!, seen, upTo);
    const xid = gaps.length > 0 ? await snapshotXmax(db.trx!) : '0';
    return gaps.map((g): Hole => ({ ...g, xid }));
  },

  // One statement, and no dead rows left behind (runs hold the state lock, and nothing else
  // reads these tables).
  async clearScratch(db) {
    await db.knex.raw(`TRUNCATE ${SCRATCH.join(', ')}`);
  },

  // One statement, a column per array, a row per window: the server cuts them into buckets
  // (five times fewer values to send and parse than the pieces).
  async writeWindows(db, windows) {
    await db.knex.raw(
      'INSERT INTO aggregate_windows (window_id, tenant_id, bucket, lo, hi, period_start, period_end, subscription_id) ' +
        `SELECT CAST(w.id AS INT), w.tenant_id, b, GREATEST(w.s, ${bucketStartSql('b')}), LEAST(w.e, ${bucketStartSql('b + 1')}), w.s, w.e, w.sub ` +
        'FROM unnest(CAST(? AS text[]), CAST(? AS bigint[]), CAST(? AS bigint[]), CAST(? AS text[])) WITH ORDINALITY AS w(tenant_id, s, e, sub, id) ' +
        `CROSS JOIN LATERAL generate_series(${bucketSql('w.s')}, ${bucketSql('w.e - 1')}) AS b`,
      [
        windows.map((x) => x.tenantId),
        windows.map((x) => x.window.start),
        windows.map((x) => x.window.end),
        windows.map((x) => x.window.subscription?.id ?? null),
      ] as unknown as Knex.RawBinding[],
    );
  },

  rebuildWindows: (db, features, upTo, now) => insertAllSummariesPg(db, features, upTo, now),
  newEvents: 'usage_events e',
  mergeFresh: mergeNewEventsPg,

  // Fresh scratch tables have no statistics: PostgreSQL would plan the merges blind.
  async analyzeScratch(db) {
    await db.knex.raw('ANALYZE aggregate_delta, aggregate_windows');
  },
};
