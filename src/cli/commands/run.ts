import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('run')
    .description('run every batch stage in order (aggregate → overage → invoice → stripe sync → dunning → webhooks), each under its job lock')
    .option('--dry-run', 'show what the stages would do (invoices, Stripe calls) and change nothing')
    .option('--draft-invoices', 'leave generated invoices as drafts for review (Stripe sync only sends open ones)')
    .action(async (opts: { dryRun?: boolean; draftInvoices?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { runPipeline } = await import('../../jobs/pipeline.js');
      const { createRunReporter, stageDetail } = await import('../../ui/run-reporter.js');
      const { stageSettingsFromEnv } = await import('../../jobs/env.js');
      const settings = stageSettingsFromEnv(ctx.env, ctx.invoiceDueDays());
      const { BillingError } = await import('../../domain/errors.js');
      const { formatDuration } = await import('../../ui/format.js');
      const reporter = createRunReporter(process.stderr, { json: ctx.json, env: ctx.env });
      const result = await withDb(ctx, async (db) => {
        try {
          return await runPipeline(db, {
            now: ctx.now,
            actor: ctx.actor,
            dryRun: Boolean(opts.dryRun),
            ...settings,
            finalizeInvoices: !opts.draftInvoices,
            // Leases and job_runs times are about real processes, whatever --now says.
            clock: Date.now,
            onProgress: reporter,
          });
        } finally {
          await reporter.finish();
        }
      });
      if (ctx.json) printJson(result);
      else {
        if (result.dryRun) printLine('dry run: nothing was changed');
        // On a terminal the live view already left one line per stage: the table would repeat
        // them. It stays for a redirected stdout, which saw none of them.
        const shownLive = reporter.enabled && Boolean(process.stdout.isTTY);
        if (!shownLive) {
          printLine(
            formatTable(
              ['STAGE', 'STATUS', 'TIME', 'DETAIL'],
              result.stages.map((s) => [s.job, s.status, formatDuration(s.durationMs), stageDetail(s)]),
            ),
          );
        }
        const { planText } = await import('../../ui/plan.js');
        for (const s of result.stages) for (const line of planText(s)) printLine(line);
      }
      // Every stage ran, yet something needs a person (refused Stripe calls, a stuck draft): partial.
      const attention = result.stages.filter((s) => s.attention);
      for (const s of attention) printErr(`billing: ${s.job}: ${s.attention}`);
      if (attention.length > 0) process.exitCode = ExitCode.Partial;
      const stop = result.stoppedAt;
      if (stop) {
        const locked = stop.skipped === 'locked';
        throw new BillingError(
          locked ? 'locked' : 'internal',
          locked
            ? `stage ${stop.job} is ${stop.reason}; nothing after it was started — rerun \`billing run\` once it is done`
            : `stage ${stop.job} failed (${stop.error?.code}: ${stop.error?.message}); earlier stages are committed — fix the cause and rerun \`billing run\``,
        );
      }
    });
}
