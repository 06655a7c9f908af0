import cron from 'node-cron';
import type { Db } from '../storage/db.js';
import type { StripeConfig } from '../stripe/config.js';
import { newOwnerId } from './lock.js';
import { runStage, type StageReport } from './pipeline.js';
import { nextRunAfter, type DaemonConfig } from './schedules.js';
import { JOB_NAMES, STAGES, type JobName, type Stage } from './stages.js';

/**
 * `billing daemon`: node-cron ticks feed one queue worked by one loop, so jobs that fire on
 * the same tick run in pipeline order (aggregate before overage) and never concurrently in
 * this process. A job still queued or running when its next tick comes is not queued again;
 * across processes, runStage's lock and tick check keep it to one run per tick.
 */

const SETTLE_MS = 250;

export type LogLevel = 'info' | 'warn' | 'error';
/** One log line; the same shape as `billing serve`'s: {time, level, msg, ...fields}. */
export interface DaemonLogEntry {
  time: string;
  level: LogLevel;
  msg: string;
  [field: string]: unknown;
}

export interface DaemonJobState {
  job: JobName;
  schedule: string;
  state: 'idle' | 'queued' | 'running';
  nextRunAt: number | null;
  last: (Pick<StageReport, 'status' | 'counts' | 'error' | 'reason' | 'durationMs'> & { finishedAt: number }) | null;
}

export interface DaemonState {
  owner: string;
  timezone: string;
  stopping: boolean;
  jobs: DaemonJobState[];
}

/** What fires the ticks: node-cron in production, a hand-driven one in tests. */
export interface Scheduler {
  schedule(expression: string, timezone: string, name: string, onTick: (date: Date) => void): { destroy(): unknown };
}

export const cronScheduler: Scheduler = {
  schedule: (expression, timezone, name, onTick) => cron.schedule(expression, (ctx) => onTick(ctx.date), { timezone, name }),
};

export interface DaemonOptions {
  config: DaemonConfig;
  actor: string;
  /** The real clock: the daemon is the one place that reads it; each run gets `now` from it. */
  clock: () => number;
  log: (entry: DaemonLogEntry) => void;
  onState?: (state: DaemonState) => void;
  owner?: string;
  stripe?: StripeConfig | null;
  finalizeInvoices?: boolean;
  dueDays?: number;
  /** Defaults to every stage that exists. */
  stages?: Stage[];
  /** Defaults to node-cron. */
  scheduler?: Scheduler;
}

export interface DaemonHandle {
  state(): DaemonState;
  /** Resolves once nothing is queued or running (ticks fired meanwhile are waited for too). */
  idle(): Promise<void>;
  /** Stop scheduling, drop queued ticks, wait for the running job (bounded by the config). */
  stop(reason: string): Promise<{ clean: boolean }>;
}

export function startDaemon(db: Db, opts: DaemonOptions): DaemonHandle {
  const { config, clock } = opts;
  const log: Log = (level, msg, fields = {}) => opts.log({ time: new Date(clock()).toISOString(), level, msg, ...fields });
  const d: Daemon = {
    db,
    opts,
    owner: opts.owner ?? newOwnerId(),
    log,
    jobs: scheduledJobs(config, opts.stages ?? STAGES, clock(), log),
    stopping: false,
    queue: [],
    current: null,
    cutAt: new Map(),
    tasks: [],
  };
  const scheduler = opts.scheduler ?? cronScheduler;
  d.tasks = [...d.jobs.values()].map((j) =>
    scheduler.schedule(j.schedule, config.timezone, `billing-${j.job}`, (date) => onTick(d, j.job, date)),
  );

  log('info', 'daemon.start', { owner: d.owner, timezone: config.timezone, jobs: nextRuns(d.jobs) });
  changed(d);

  return {
    state: () => snapshot(d),
    async idle() {
      while (d.current) await d.current;
    },
    stop: (reason) => stop(d, reason),
  };
}

/** One running daemon: its jobs, the queue its loop works, and what stops it. */
interface Daemon {
  db: Db;
  opts: DaemonOptions;
  owner: string;
  log: Log;
  jobs: Map<JobName, ScheduledJob>;
  stopping: boolean;
  queue: Array<{ job: JobName; scheduledAt: number }>;
  /** The loop working the queue, while it runs. */
  current: Promise<void> | null;
  /**
   * A tick's jobs form a chain: once one of them does not run here (another process has
   * it, or this process is still busy with its previous tick), the later jobs of that tick
   * are not run here either, so no job ever works from a stage that did not run first.
   * tick → pipeline index after which jobs are skipped.
   */
  cutAt: Map<number, number>;
  tasks: Array<{ destroy(): unknown }>;
}

const order = (job: JobName) => JOB_NAMES.indexOf(job);

function snapshot(d: Daemon): DaemonState {
  return {
    owner: d.owner,
    timezone: d.opts.config.timezone,
    stopping: d.stopping,
    jobs: [...d.jobs.values()].map(({ stage: _stage, ...j }) => ({ ...j })),
  };
}

function changed(d: Daemon): void {
  d.opts.onState?.(snapshot(d));
}

function cut(d: Daemon, tick: number, job: JobName): void {
  d.cutAt.set(tick, Math.min(d.cutAt.get(tick) ?? Infinity, order(job)));
}

async function runOne(d: Daemon, job: JobName, scheduledAt: number): Promise<StageReport> {
  const { opts, log } = d;
  const { config, clock } = opts;
  const j = d.jobs.get(job)!;
  j.state = 'running';
  changed(d);
  log('info', 'job.start', { job, scheduled_at: new Date(scheduledAt).toISOString() });
  const report = await runStageOrFail(d.db, j.stage, {
    now: clock(),
    actor: opts.actor,
    owner: d.owner,
    clock,
    ttlMs: config.lockTtlMs,
    trigger: 'daemon',
    scheduledAt,
    stripe: opts.stripe,
    finalizeInvoices: opts.finalizeInvoices,
    dueDays: opts.dueDays,
    onLeaseLost: () => log('warn', 'lock.lost', { job, reason: 'the lease expired while the job ran and was taken over' }),
  });
  log(report.status === 'failed' ? 'error' : 'info', report.status === 'skipped' ? 'job.skipped' : 'job.end', reportFields(job, report));
  j.state = 'idle';
  j.last = {
    status: report.status,
    counts: report.counts,
    error: report.error,
    reason: report.reason,
    durationMs: report.durationMs,
    finishedAt: clock(),
  };
  changed(d);
  return report;
}

/** The loop: runs queued ticks' jobs one at a time, in tick then pipeline order. */
async function work(d: Daemon): Promise<void> {
  const { queue, opts } = d;
  while (queue.length > 0 && !d.stopping) {
    // node-cron runs one timer per task: the other jobs of a tick can arrive a few ms
    // late. Give them SETTLE_MS to take their place in the queue before the tick starts.
    const wait = queue[0].scheduledAt + SETTLE_MS - opts.clock();
    if (wait > 0) {
      await new Promise((r) => setTimeout(r, wait));
      continue;
    }
    const next = queue.shift()!;
    for (const t of d.cutAt.keys()) if (t < next.scheduledAt) d.cutAt.delete(t);
    if (order(next.job) > (d.cutAt.get(next.scheduledAt) ?? Infinity)) {
      d.jobs.get(next.job)!.state = 'idle';
      d.log('info', 'job.skipped', { job: next.job, reason: 'an earlier job of this tick did not run here', duration_ms: 0 });
      changed(d);
      continue;
    }
    const report = await runOne(d, next.job, next.scheduledAt);
    if (report.skipped === 'locked' || report.skipped === 'tick_done') cut(d, next.scheduledAt, next.job);
  }
}

/** Start the loop unless it runs already. */
function kick(d: Daemon): void {
  d.current ??= work(d).finally(() => {
    d.current = null;
  });
}

function onTick(d: Daemon, job: JobName, date: Date): void {
  if (d.stopping) return;
  const { config } = d.opts;
  const j = d.jobs.get(job)!;
  const scheduledAt = Math.floor(date.getTime() / 1000) * 1000;
  j.nextRunAt = nextRunAfter(j.schedule, config.timezone, scheduledAt);
  if (j.state !== 'idle') {
    cut(d, scheduledAt, job);
    d.log('warn', 'job.overlap', { job, scheduled_at: new Date(scheduledAt).toISOString(), reason: `still ${j.state} from an earlier tick` });
    changed(d);
    return;
  }
  j.state = 'queued';
  d.queue.push({ job, scheduledAt });
  d.queue.sort((a, b) => a.scheduledAt - b.scheduledAt || order(a.job) - order(b.job));
  changed(d);
  kick(d);
}

async function stop(d: Daemon, reason: string): Promise<{ clean: boolean }> {
  const { config } = d.opts;
  if (!d.stopping) {
    d.stopping = true;
    for (const t of d.tasks) await t.destroy();
    for (const q of d.queue.splice(0)) {
      d.jobs.get(q.job)!.state = 'idle';
      d.log('info', 'job.dropped', { job: q.job, reason: 'shutting down before it started' });
    }
    const running = [...d.jobs.values()].find((j) => j.state === 'running');
    d.log('info', 'daemon.stopping', { reason, waiting_for: running?.job ?? null });
    changed(d);
  }
  const clean = await settlesWithin(d.current ?? Promise.resolve(), config.shutdownTimeoutMs);
  d.log(clean ? 'info' : 'error', 'daemon.stop', clean ? { clean } : { clean, error: { code: 'shutdown_timeout', message: `a job was still running after ${config.shutdownTimeoutMs} ms` } });
  return { clean };
}

type Log = (level: LogLevel, msg: string, fields?: Record<string, unknown>) => void;
type ScheduledJob = DaemonJobState & { stage: Stage };

/** The configured jobs this build has a stage for, in pipeline order; the others are logged. */
function scheduledJobs(config: DaemonConfig, available: Stage[], now: number, log: Log): Map<JobName, ScheduledJob> {
  const jobs = new Map<JobName, ScheduledJob>();
  for (const job of JOB_NAMES) {
    const schedule = config.schedules[job];
    if (!schedule) continue;
    const stage = available.find((s) => s.job === job);
    if (!stage) {
      log('warn', 'job.unavailable', { job, reason: 'this build has no such stage; not scheduled' });
      continue;
    }
    jobs.set(job, { job, schedule, stage, state: 'idle', nextRunAt: nextRunAfter(schedule, config.timezone, now), last: null });
  }
  return jobs;
}

/** runStage, with a run that could not even be recorded (database unreachable, ...) reported as failed. */
async function runStageOrFail(db: Db, stage: Stage, options: Parameters<typeof runStage>[2]): Promise<StageReport> {
  try {
    return await runStage(db, stage, options);
  } catch (e) {
    const err = e as Error & { code?: string };
    return { job: stage.job, status: 'failed', error: { code: err.code ?? 'db_error', message: err.message }, durationMs: 0 };
  }
}

/** The log fields of a finished run. */
function reportFields(job: JobName, report: StageReport): Record<string, unknown> {
  const fields: Record<string, unknown> = { job, status: report.status, duration_ms: report.durationMs };
  if (report.counts) fields.counts = report.counts;
  if (report.reason) fields.reason = report.reason;
  if (report.error && report.status === 'failed') fields.error = report.error;
  return fields;
}

function nextRuns(jobs: Map<JobName, ScheduledJob>): Record<string, { schedule: string; next: string | null }> {
  return Object.fromEntries(
    [...jobs.values()].map((j) => [j.job, { schedule: j.schedule, next: j.nextRunAt === null ? null : new Date(j.nextRunAt).toISOString() }]),
  );
}

/** true once p settles, false if ms pass first. */
async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p.then(() => true), new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
