import type { Knex } from 'knex';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';

export interface RunCounts {
  read: number;
  inserted: number;
  duplicates: number;
  rejected: number;
}

/** The run stopped on its signal; `committed` rows are kept and a rerun skips them as duplicates. */
export class IngestInterrupted extends Error {
  constructor(readonly committed: number) {
    super(`ingest interrupted: ${committed} rows committed`);
    this.name = 'IngestInterrupted';
  }
}

/** One ingest_runs row per input, status "running" until the run ends (completed, failed or interrupted). */
export async function startRuns(db: Db, sources: string[], now: Instant): Promise<number[]> {
  const ids: number[] = [];
  for (const source of sources) {
    const [row] = await db.knex('ingest_runs').insert({ source, status: 'running', started_at: now }).returning('id');
    ids.push(Number(typeof row === 'object' ? row.id : row));
  }
  return ids;
}

/** Counts so far, inside the batch's transaction: a killed run still shows how far it got. */
export async function updateRun(q: Knex.Transaction, id: number, c: RunCounts): Promise<void> {
  await q('ingest_runs').where({ id }).update({ read: c.read, inserted: c.inserted, duplicates: c.duplicates, rejected: c.rejected });
}

export async function finishRuns(
  db: Db,
  runs: Array<RunCounts & { runId: number }>,
  status: 'completed' | 'failed' | 'interrupted',
  at: Instant,
): Promise<void> {
  for (const r of runs) {
    await db.knex('ingest_runs').where({ id: r.runId }).update({
      status,
      finished_at: at,
      read: r.read,
      inserted: r.inserted,
      duplicates: r.duplicates,
      rejected: r.rejected,
    });
  }
}
