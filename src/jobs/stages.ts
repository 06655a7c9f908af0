import { BillingError } from '../domain/errors.js';
import type { Db } from '../storage/db.js';

/**
 * The batch stages `billing run` and the daemon orchestrate, in pipeline order. Each entry
 * only takes its options and calls the stage's own module (lazy-imported, so `billing
 * status` does not load Stripe): cron and the CLI call the same function.
 */

export const JOB_NAMES = ['aggregate', 'overage', 'invoice', 'stripe-sync', 'stripe-retry', 'dunning'] as const;
export type JobName = (typeof JOB_NAMES)[number];

export interface StageOptions {
  now: number;
  actor: string;
  tenantId?: string;
  /** Stripe settings resolved by the CLI from the environment; null when not configured. */
  stripe: unknown;
}

export interface Stage {
  job: JobName;
  /** Runs the stage for real; the result's numbers become the job run's counts. */
  run(db: Db, opts: StageOptions): Promise<unknown>;
  /** What the stage would do, changing nothing; absent when it cannot be previewed. */
  plan?(db: Db, opts: StageOptions): Promise<unknown>;
  /** A reason the stage cannot run in this setup (e.g. Stripe not configured), or null. */
  unavailable?(opts: StageOptions): string | null;
}

/** The stages whose modules exist, in pipeline order. */
export const STAGES: Stage[] = [
  {
    job: 'aggregate',
    async run(db, o) {
      const { runAggregate } = await import('../aggregate/aggregate.js');
      return runAggregate(db, { now: o.now });
    },
    async plan(db) {
      const { aggregationBacklog } = await import('./backlog.js');
      return aggregationBacklog(db);
    },
  },
  {
    job: 'overage',
    async run(db, o) {
      const { runOverage } = await import('../rate/overage.js');
      return runOverage(db, { now: o.now, tenantId: o.tenantId });
    },
  },
];

export function stagesFor(jobs: readonly string[] | undefined): Stage[] {
  if (!jobs || jobs.length === 0) return STAGES;
  return jobs.map((job) => {
    const s = STAGES.find((x) => x.job === job);
    if (!s) {
      const available = STAGES.map((x) => x.job).join(', ') || 'none yet';
      throw new BillingError('usage', `no stage "${job}" (available: ${available})`);
    }
    return s;
  });
}
