import { openBulkWriter, type BulkTarget } from '../storage/bulk-insert.js';
import type { Db } from '../storage/db.js';
import type { Counts } from './dialect.js';

/** The aggregation scratch tables (only a run, holding the state lock, touches them). */
export const SCRATCH = ['aggregate_windows', 'aggregate_groups', 'aggregate_delta'];

export async function bulkInsert(db: Db, target: BulkTarget, rs: unknown[][]): Promise<void> {
  const writer = await openBulkWriter(db, target);
  for (const r of rs) writer.add(r);
  await writer.flush();
  await writer.settle();
}

/** Summaries now present for the scratch groups (or windows), and their events. */
export async function countWritten(db: Db, scratch: 'aggregate_groups' | 'aggregate_windows'): Promise<Counts> {
  const match =
    scratch === 'aggregate_groups'
      ? 'g.whole = 1 AND g.tenant_id = s.tenant_id AND g.feature_key = s.feature_key AND g.period_start = s.period_start'
      : 'g.tenant_id = s.tenant_id AND g.period_start = s.period_start';
  const [row] = await db.rows<{ n: unknown; events: unknown }>(
    `SELECT COUNT(*) AS n, CAST(SUM(s.event_count) AS TEXT) AS events FROM usage_summaries s ` +
      `WHERE EXISTS (SELECT 1 FROM ${scratch} g WHERE ${match})`,
  );
  return { groups: Number(row.n), events: Number(row.events ?? 0) };
}
