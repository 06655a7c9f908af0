import type { Db } from '../storage/db.js';
import { isBillingError } from '../domain/errors.js';
import { newOwnerId, withJobLock } from './lock.js';
import { recordJobRun, recordSkippedRun, tickAlreadyRun, type Counts, type JobTrigger } from './runs.js';
import { stagesFor, type JobName, type Stage, type StageOptions } from './stages.js';
import type { StripeConfig } from '../stripe/config.js';

/** `billing run`: every stage in order, each under its job lock and recorded in job_runs. */

export type StageStatus = 'succeeded' | 'failed' | 'skipped' | 'planned' | 'not_run';

export interface StageReport {
  job: JobName;
  status: StageStatus;
  counts?: Counts;
  /** Dry run: what the stage would do (its own dry-run result). */
  plan?: unknown;
  /** failed: what went wrong; skipped / not_run: why. */
  error?: { code: string; message: string };
  reason?: string;
  /** Why a stage was skipped: not set up, busy in another process, or its tick already ran. */
  skipped?: 'unavailable' | 'locked' | 'tick_done';
  /** Succeeded, but left something for a person (e.g. Stripe calls refused): `billing run` exits 3. */
  attention?: string;
  durationMs: number;
}

export type PipelineEvent =
  | { type: 'stage-start'; job: JobName; index: number; total: number }
  | { type: 'stage-end'; job: JobName; index: number; total: number; report: StageReport };

export interface RunStageOptions {
  now: number;
  actor: string;
  tenantId?: string;
  stripe?: StripeConfig | null;
  /** Issue generated invoices as open (default true) so that Stripe sync sends them. */
  finalizeInvoices?: boolean;
  dueDays?: number;
  /** Lock and job_runs owner; one per process (newOwnerId). */
  owner?: string;
  /** Wall clock for leases and job_runs times; defaults to time elapsed since `now`. */
  clock?: () => number;
  ttlMs?: number;
  trigger?: JobTrigger;
  /** The daemon tick this run belongs to: a tick already run by another process is skipped. */
  scheduledAt?: number;
  onLeaseLost?: () => void;
}

export interface PipelineOptions extends RunStageOptions {
  dryRun?: boolean;
  /** Subset or order of stages (names or stage objects); default: PIPELINE_JOBS in order. */
  stages?: Array<JobName | Stage>;
  onProgress?: (e: PipelineEvent) => void;
}

export interface PipelineResult {
  ok: boolean;
  dryRun: boolean;
  stages: StageReport[];
  /** The stage that stopped the run (failed, or busy in another process). */
  stoppedAt: StageReport | null;
}

export const DEFAULT_LOCK_TTL_MS = 60_000;

function defaultClock(now: number): () => number {
  const t0 = performance.now();
  return () => now + Math.round(performance.now() - t0);
}

function stageOptions(o: RunStageOptions): StageOptions {
  return { now: o.now, actor: o.actor, tenantId: o.tenantId, stripe: o.stripe ?? null, finalizeInvoices: o.finalizeInvoices, dueDays: o.dueDays };
}

function errorInfo(e: unknown): { code: string; message: string } {
  if (isBillingError(e)) return { code: e.code, message: e.message };
  return { code: 'internal', message: (e as Error)?.message ?? String(e) };
}

/** Run one stage under its lock, recorded in job_runs. The daemon calls this per tick. */
export async function runStage(db: Db, stage: Stage, opts: RunStageOptions): Promise<StageReport> {
  const owner = opts.owner ?? newOwnerId();
  const clock = opts.clock ?? defaultClock(opts.now);
  const stageOpts = stageOptions(opts);
  const meta = { job: stage.job, owner, trigger: opts.trigger ?? 'run', scheduledAt: opts.scheduledAt ?? null, clock } as const;
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);

  const unavailable = stage.unavailable?.(stageOpts, 'run') ?? null;
  if (unavailable) {
    await recordSkippedRun(db, meta, unavailable);
    return { job: stage.job, status: 'skipped', skipped: 'unavailable', reason: unavailable, durationMs: elapsed() };
  }

  const locked = await withJobLock(
    db,
    stage.job,
    { owner, now: opts.now, ttlMs: opts.ttlMs ?? DEFAULT_LOCK_TTL_MS, clock, onLeaseLost: opts.onLeaseLost },
    async (): Promise<StageReport> => {
      if (opts.scheduledAt !== undefined && (await tickAlreadyRun(db, stage.job, opts.scheduledAt))) {
        return { job: stage.job, status: 'skipped', skipped: 'tick_done', reason: 'this tick already ran in another process', durationMs: elapsed() };
      }
      const out = await recordJobRun(db, meta, () => stage.run(db, stageOpts));
      if (out.status === 'succeeded') {
        const attention = (await stage.attention?.(out.value)) ?? null;
        return { job: stage.job, status: 'succeeded', counts: out.counts, ...(attention ? { attention } : {}), durationMs: out.durationMs };
      }
      return { job: stage.job, status: 'failed', error: errorInfo(out.error), durationMs: out.durationMs };
    },
  );
  if (locked.acquired) return locked.value;
  const reason = `already running in another process${locked.holder ? ` (${locked.holder})` : ''}`;
  if (opts.trigger !== 'daemon') await recordSkippedRun(db, meta, reason);
  return { job: stage.job, status: 'skipped', skipped: 'locked', reason, error: { code: 'locked', message: reason }, durationMs: elapsed() };
}

/** Preview one stage: its dry-run plan, changing nothing (no lock, no job_runs row). */
async function planStage(db: Db, stage: Stage, opts: StageOptions): Promise<StageReport> {
  const t0 = performance.now();
  const elapsed = () => Math.round(performance.now() - t0);
  const unavailable = stage.unavailable?.(opts, 'plan') ?? null;
  if (unavailable) return { job: stage.job, status: 'skipped', skipped: 'unavailable', reason: unavailable, durationMs: elapsed() };
  if (!stage.plan) return { job: stage.job, status: 'not_run', reason: 'no preview for this stage', durationMs: elapsed() };
  try {
    const plan = await stage.plan(db, opts);
    return { job: stage.job, status: 'planned', plan, durationMs: elapsed() };
  } catch (e) {
    return { job: stage.job, status: 'failed', error: errorInfo(e), durationMs: elapsed() };
  }
}

/**
 * Run the stages in order. A failed stage, or one already running elsewhere, stops the run
 * (later stages would work from stale input); every stage is idempotent, so the next run
 * resumes where this one stopped.
 */
export async function runPipeline(db: Db, opts: PipelineOptions): Promise<PipelineResult> {
  const stages = opts.stages ? opts.stages.map((s) => (typeof s === 'string' ? stagesFor([s])[0] : s)) : stagesFor(undefined);
  const dryRun = Boolean(opts.dryRun);
  const runOpts: RunStageOptions = { ...opts, owner: opts.owner ?? newOwnerId(), clock: opts.clock ?? defaultClock(opts.now) };
  const reports: StageReport[] = [];
  let stoppedAt: StageReport | null = null;
  for (const [index, stage] of stages.entries()) {
    if (stoppedAt) {
      reports.push({ job: stage.job, status: 'not_run', reason: `stopped after ${stoppedAt.job}`, durationMs: 0 });
      continue;
    }
    opts.onProgress?.({ type: 'stage-start', job: stage.job, index, total: stages.length });
    const report = dryRun
      ? await planStage(db, stage, stageOptions(opts))
      : await runStage(db, stage, runOpts);
    reports.push(report);
    opts.onProgress?.({ type: 'stage-end', job: stage.job, index, total: stages.length, report });
    if (report.status === 'failed' || report.skipped === 'locked') stoppedAt = report;
  }
  return { ok: stoppedAt === null, dryRun, stages: reports, stoppedAt };
}
