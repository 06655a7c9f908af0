import type { Knex } from 'knex';
import type { AggregateDialect } from './dialect.js';
import { insertAllSummariesPg } from './full-scan-pg.js';
import { mergeNewEventsPg } from './incremental-pg.js';
import { SCRATCH } from './scratch.js';
import { bucketSql, bucketStartSql } from './usage-sql.js';
import type { Db } from '../storage/db.js';
import type { Hole } from './watermark.js';

/**
 * PostgreSQL's aggregate stage: seqs commit out of order (holes, watermark.ts), full rebuilds
 * are one parallel scan (full-scan-pg.ts), and a fold with no hole open is one statement
 * (incremental-pg.ts).
 */
export const pgAggregate: AggregateDialect = {
  // Before the run's transaction writes anything, so that it is not its own oldest transaction.
  oldestRunning: (db) => snapshotXmin(db),

  // Seqs not visible yet are noted before any event is read, so that one committing
  // meanwhile is either read now or recomputed later, never merged twice.
  async newHoles(db, seen, upTo) {
    const gaps = await findGaps(db, seen, upTo);
    const xid = gaps.length > 0 ? await snapshotXmax(db) : '0';
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

/**
 * The oldest transaction still running (call before this transaction writes).
 * Also commits this transaction asynchronously: a run lost to a crash leaves the watermark
 * where it was, so the next run redoes it, and any later synchronous commit (one that read
 * these summaries) flushes this one first.
 */
async function snapshotXmin(db: Db): Promise<bigint> {
  const [r] = await db.rows<{ x: string }>("SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x, set_config('synchronous_commit', 'off', true) AS c");
  return BigInt(r.x);
}

/** The next transaction id to be assigned. */
async function snapshotXmax(db: Db): Promise<string> {
  const [r] = await db.rows<{ x: string }>('SELECT pg_snapshot_xmax(pg_current_snapshot())::text AS x');
  return String(r.x);
}

/** Seqs in (after, upTo] with no visible event, as ranges. */
async function findGaps(db: Db, after: number, upTo: number): Promise<Array<{ from: number; to: number }>> {
  if (upTo <= after) return [];
  const [{ n }] = await db.knex('usage_events').where('seq', '>', after).andWhere('seq', '<=', upTo).count({ n: '*' });
  if (Number(n) === upTo - after) return [];
  // A sentinel at upTo + 1 closes a trailing gap.
  const r = await db.rows<{ gap_from: unknown; gap_to: unknown }>(
    'SELECT prev + 1 AS gap_from, seq - 1 AS gap_to FROM (SELECT seq, LAG(seq, 1, CAST(? AS BIGINT)) OVER (ORDER BY seq) AS prev ' +
      'FROM (SELECT seq FROM usage_events WHERE seq > ? AND seq <= ? UNION ALL SELECT CAST(? AS BIGINT)) s) x WHERE seq > prev + 1',
    [after, after, upTo, upTo + 1],
  );
  return r.map((g) => ({ from: Number(g.gap_from), to: Number(g.gap_to) }));
}
