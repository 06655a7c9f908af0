import { BillingError } from '../domain/errors.js';
import type { Db } from '../storage/db.js';
import type { StripeConfig } from '../stripe/config.js';

/**
 * The batch stages `billing run` and the daemon orchestrate, in pipeline order. Each entry
 * only maps its options onto the stage's own module (lazy-imported, so `billing status`
 * never loads Stripe): cron and the CLI call the same function.
 */

export const JOB_NAMES = ['aggregate', 'overage', 'invoice', 'stripe-sync', 'stripe-retry', 'dunning', 'webhooks'] as const;
export type JobName = (typeof JOB_NAMES)[number];

/** What `billing run` runs by default; stripe-retry is the daemon's 6-hourly re-drive. */
export const PIPELINE_JOBS: JobName[] = ['aggregate', 'overage', 'invoice', 'stripe-sync', 'dunning', 'webhooks'];

export interface StageOptions {
  now: number;
  actor: string;
  tenantId?: string;
  /** Resolved by the CLI from the environment (stripeConfigFromEnv); null when absent. */
  stripe: StripeConfig | null;
  /** Issue generated invoices as open (default) so Stripe sync sends them; false keeps drafts. */
  finalizeInvoices?: boolean;
  /** INVOICE_DUE_DAYS, resolved by the CLI. */
  dueDays?: number;
}

export interface Stage {
  job: JobName;
  /** Runs the stage for real; the result's numbers become the job run's counts. */
  run(db: Db, opts: StageOptions): Promise<unknown>;
  /** What the stage would do, changing nothing; absent when it cannot be previewed. */
  plan?(db: Db, opts: StageOptions): Promise<unknown>;
  /** Why the stage cannot run in this setup (e.g. Stripe not configured), or null. */
  unavailable?(opts: StageOptions, mode: 'run' | 'plan'): string | null;
  /** What a finished run left for a person (e.g. Stripe calls refused), or null: `billing run` then exits 3. */
  attention?(result: any): Promise<string | null>;
}

async function stripeAttention(result: { outstanding?: import('../stripe/outbox.js').OutboxProblems }): Promise<string | null> {
  if (!result?.outstanding) return null;
  const { problemsText } = await import('../stripe/outbox.js');
  return problemsText(result.outstanding);
}

function needsStripeKey(o: StageOptions, mode: 'run' | 'plan'): string | null {
  if (mode === 'plan' && o.stripe) return null; // a dry run sends nothing and needs no key
  return o.stripe?.secretKey ? null : 'Stripe is not configured (set STRIPE_SECRET_KEY)';
}

export const STAGES: Stage[] = [
  {
    job: 'aggregate',
    async run(db, o) {
      const { runAggregate } = await import('../aggregate/aggregate.js');
      const { evaluateAlerts } = await import('../alerts/evaluate.js');
      const r = await runAggregate(db, { now: o.now });
      // Alert rules are evaluated on the usage the run just summarised (DESIGN.md §15).
      return { ...r, alerts: (await evaluateAlerts(db, { now: o.now })).length };
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
  {
    job: 'invoice',
    async run(db, o) {
      const { generateInvoices } = await import('../invoice/generate.js');
      return generateInvoices(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, finalize: o.finalizeInvoices ?? true, dueDays: o.dueDays });
    },
    async plan(db, o) {
      // Generation aggregates and rates inside a transaction it rolls back: the preview is exact.
      const { generateInvoices } = await import('../invoice/generate.js');
      const { invoiceToJson } = await import('../invoice/types.js');
      const r = await generateInvoices(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, finalize: o.finalizeInvoices ?? true, dueDays: o.dueDays, dryRun: true });
      return { invoices: r.created.map(invoiceToJson), skipped: r.skipped };
    },
  },
  {
    job: 'stripe-sync',
    unavailable: needsStripeKey,
    async run(db, o) {
      const { stripeSync } = await import('../stripe/sync.js');
      return stripeSync(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, stripe: o.stripe! });
    },
    attention: stripeAttention,
    async plan(db, o) {
      const { stripeSync } = await import('../stripe/sync.js');
      return stripeSync(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, stripe: o.stripe!, dryRun: true });
    },
  },
  {
    job: 'stripe-retry',
    unavailable: needsStripeKey,
    async run(db, o) {
      const { stripeRetry } = await import('../stripe/sync.js');
      return stripeRetry(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, stripe: o.stripe! });
    },
    attention: stripeAttention,
  },
  {
    job: 'dunning',
    unavailable: needsStripeKey,
    async run(db, o) {
      const { runDunning } = await import('../stripe/dunning.js');
      return runDunning(db, { now: o.now, actor: o.actor, tenantId: o.tenantId, stripe: o.stripe! });
    },
    async attention(r: { errors: Array<{ tenantId: string; invoiceId: string; message: string }> }) {
      return r.errors.length ? `dunning: ${r.errors.length} error(s), e.g. ${r.errors[0].tenantId} ${r.errors[0].invoiceId}: ${r.errors[0].message}` : null;
    },
  },
  {
    // Last, so the events of this run's invoices and payments go out in it.
    job: 'webhooks',
    async run(db, o) {
      const { deliverWebhooks } = await import('../webhooks/deliver.js');
      const { errors: _errors, ...counts } = await deliverWebhooks(db, { now: o.now });
      return counts;
    },
    async attention(r: { failed: number }) {
      return r.failed > 0 ? `webhooks: ${r.failed} deliver(ies) failed for good (dead); see \`billing webhook deliveries --failed\`` : null;
    },
  },
];

/** Stages by name, in the order given; no names: the default pipeline. */
export function stagesFor(jobs: readonly string[] | undefined): Stage[] {
  const wanted = jobs && jobs.length > 0 ? jobs : PIPELINE_JOBS;
  return wanted.map((job) => {
    const s = STAGES.find((x) => x.job === job);
    if (!s) throw new BillingError('usage', `no stage "${job}" (stages: ${STAGES.map((x) => x.job).join(', ')})`);
    return s;
  });
}
