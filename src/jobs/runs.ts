import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';
import { BillingError, isBillingError } from '../domain/errors.js';

/** The job_runs table: one row per run of a stage, shown by `billing status`. */

export type JobRunStatus = 'running' | 'succeeded' | 'failed' | 'skipped';
export type JobTrigger = 'run' | 'daemon';
export type Counts = Record<string, number | boolean | string>;

export interface JobRun {
  id: number;
  job: string;
  owner: string;
  trigger: JobTrigger;
  scheduledAt: number | null;
  startedAt: number;
  finishedAt: number | null;
  status: JobRunStatus;
  counts: Counts | null;
  error: string | null;
}

export interface JobRunMeta {
  job: string;
  owner: string;
  trigger: JobTrigger;
  scheduledAt?: number | null;
  /** Wall clock for started_at / finished_at (job runs record when they really ran). */
  clock: () => number;
}

export type JobRunOutcome<T> =
  | { status: 'succeeded'; id: number; value: T; counts: Counts; durationMs: number }
  | { status: 'failed'; id: number; error: BillingError | Error; durationMs: number };

function fromRow(r: Record<string, any>): JobRun {
  return {
    id: Number(r.id),
    job: r.job,
    owner: r.owner,
    trigger: r.trigger,
    scheduledAt: r.scheduled_at === null || r.scheduled_at === undefined ? null : Number(r.scheduled_at),
    startedAt: Number(r.started_at),
    finishedAt: r.finished_at === null || r.finished_at === undefined ? null : Number(r.finished_at),
    status: r.status,
    counts: r.counts ? (JSON.parse(r.counts) as Counts) : null,
    error: r.error ?? null,
  };
}

/**
 * A stage's result reduced to what a person wants to see: numbers, flags, list sizes, and
 * the same one level down ("sent.invoice": 3).
 */
export function toCounts(result: unknown, prefix = ''): Counts {
  const out: Counts = {};
  if (!result || typeof result !== 'object') return out;
  for (const [k, v] of Object.entries(result as Record<string, unknown>)) {
    if (typeof v === 'number' || typeof v === 'boolean') out[prefix + k] = v;
    else if (Array.isArray(v)) out[prefix + k] = v.length;
    else if (v && typeof v === 'object' && prefix === '') Object.assign(out, toCounts(v, `${k}.`));
  }
  return out;
}

export function errorText(e: unknown): string {
  if (isBillingError(e)) return `${e.code}: ${e.message}`;
  return `internal: ${(e as Error)?.message ?? String(e)}`;
}

/**
 * Run fn as one recorded job run: a `running` row first, then `succeeded` with its counts
 * or `failed` with the error. Call it while holding the job's lock: any other `running` row
 * of the job is then left over from a process that died, and is closed as failed.
 */
export async function recordJobRun<T>(db: Db, meta: JobRunMeta, fn: () => Promise<T>): Promise<JobRunOutcome<T>> {
  const startedAt = meta.clock();
  const t0 = performance.now();
  await db
    .knex('job_runs')
    .where({ job: meta.job, status: 'running' })
    .update({ status: 'failed', finished_at: startedAt, error: 'abandoned: the process running it exited before it finished' });
  const id = await insertRun(db.knex, {
    job: meta.job,
    owner: meta.owner,
    trigger: meta.trigger,
    scheduled_at: meta.scheduledAt ?? null,
    started_at: startedAt,
    status: 'running',
  });
  try {
    const value = await fn();
    const counts = toCounts(value);
    const durationMs = Math.round(performance.now() - t0);
    await db.knex('job_runs').where({ id }).update({ status: 'succeeded', finished_at: meta.clock(), counts: JSON.stringify(counts) });
    return { status: 'succeeded', id, value, counts, durationMs };
  } catch (e) {
    const durationMs = Math.round(performance.now() - t0);
    await db.knex('job_runs').where({ id }).update({ status: 'failed', finished_at: meta.clock(), error: errorText(e) });
    return { status: 'failed', id, error: e as Error, durationMs };
  }
}

/** A run that did not happen (lock busy, Stripe not configured): recorded so status shows why. */
export async function recordSkippedRun(db: Db, meta: JobRunMeta, reason: string): Promise<number> {
  const t = meta.clock();
  return insertRun(db.knex, {
    job: meta.job,
    owner: meta.owner,
    trigger: meta.trigger,
    scheduled_at: meta.scheduledAt ?? null,
    started_at: t,
    finished_at: t,
    status: 'skipped',
    error: reason,
  });
}

async function insertRun(q: Knex, row: Record<string, unknown>): Promise<number> {
  const [r] = await q('job_runs').insert(row).returning('id');
  return Number(typeof r === 'object' ? r.id : r);
}

/** Whether a daemon tick of this job already ran (or is running) in some process. */
export async function tickAlreadyRun(db: Db, job: string, scheduledAt: number): Promise<boolean> {
  const r = await db
    .knex('job_runs')
    .where({ job, scheduled_at: scheduledAt })
    .whereIn('status', ['running', 'succeeded'])
    .first('id');
  return Boolean(r);
}

/** The latest run of each job. */
export async function lastJobRuns(db: Db): Promise<Map<string, JobRun>> {
  const latest = db.knex('job_runs').max('id as id').groupBy('job');
  const rows = await db.knex('job_runs').whereIn('id', latest).orderBy('job');
  return new Map(rows.map((r) => [r.job as string, fromRow(r)]));
}

export async function listJobRuns(db: Db, opts: { job?: string; limit?: number } = {}): Promise<JobRun[]> {
  const q = db.knex('job_runs').orderBy('id', 'desc').limit(opts.limit ?? 50);
  if (opts.job) q.where({ job: opts.job });
  return (await q).map(fromRow);
}
