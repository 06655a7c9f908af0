import type { Db } from '../storage/db.js';
import { toIso } from '../domain/period.js';
import { lastJobRuns, type Counts } from './runs.js';
import { nextRunAfter, type DaemonConfig } from './schedules.js';
import { JOB_NAMES } from './stages.js';
import { backlog, type Backlog } from './backlog.js';

/** `billing status`: the last run of each job, when it runs next, and what is waiting. */

export interface JobStatus {
  job: string;
  schedule: string | null;
  nextRunAt: string | null;
  last: {
    id: number;
    status: string;
    trigger: string;
    owner: string;
    startedAt: string;
    finishedAt: string | null;
    durationMs: number | null;
    counts: Counts | null;
    error: string | null;
  } | null;
}

export interface StatusReport {
  now: string;
  timezone: string;
  jobs: JobStatus[];
  /** SQLite leases currently held (PostgreSQL advisory locks are not listed). */
  locks: Array<{ job: string; owner: string; acquiredAt: string; expiresAt: string; expired: boolean }>;
  backlog: Backlog;
  /**
   * ingest_runs still "running". One started more than STALE_INGEST_MS ago is `stale`: its
   * process most likely died (SIGKILL, crash) before it could record how it ended.
   */
  ingestRuns: Array<{ id: number; source: string; startedAt: string; read: number; inserted: number; stale: boolean }>;
}

/** A running ingest older than this is reported stale (no ingest of ours runs that long). */
export const STALE_INGEST_MS = 60 * 60 * 1000;

/** `wallNow`: the real time, to tell live leases from expired ones (`now` may be --now). */
export async function getStatus(db: Db, opts: { now: number; wallNow?: number; config: DaemonConfig }): Promise<StatusReport> {
  const runs = await lastJobRuns(db);
  const names = [...new Set<string>([...JOB_NAMES, ...runs.keys()])];
  const jobs: JobStatus[] = names.map((job) => {
    const schedule = (opts.config.schedules as Record<string, string | undefined>)[job] ?? null;
    const next = schedule ? nextRunAfter(schedule, opts.config.timezone, opts.now) : null;
    const r = runs.get(job);
    return {
      job,
      schedule,
      nextRunAt: next === null ? null : toIso(next),
      last: r
        ? {
            id: r.id,
            status: r.status,
            trigger: r.trigger,
            owner: r.owner,
            startedAt: toIso(r.startedAt),
            finishedAt: r.finishedAt === null ? null : toIso(r.finishedAt),
            durationMs: r.finishedAt === null ? null : r.finishedAt - r.startedAt,
            counts: r.counts,
            error: r.error,
          }
        : null,
    };
  });
  const leases = await db.knex('job_locks').select('*').orderBy('job');
  return {
    now: toIso(opts.now),
    timezone: opts.config.timezone,
    jobs,
    locks: leases.map((l) => ({
      job: String(l.job).replace(/^billing-job:/, ''),
      owner: l.owner,
      acquiredAt: toIso(Number(l.acquired_at)),
      expiresAt: toIso(Number(l.expires_at)),
      expired: Number(l.expires_at) <= (opts.wallNow ?? opts.now),
    })),
    backlog: await backlog(db, opts.now),
    ingestRuns: (await db.knex('ingest_runs').where({ status: 'running' }).orderBy('id')).map((r) => ({
      id: Number(r.id),
      source: r.source,
      startedAt: toIso(Number(r.started_at)),
      read: Number(r.read),
      inserted: Number(r.inserted),
      stale: opts.now - Number(r.started_at) > STALE_INGEST_MS,
    })),
  };
}
