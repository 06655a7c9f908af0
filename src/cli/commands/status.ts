import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('status')
    .description('last run of each job, next scheduled run, and what is waiting (events, invoices, Stripe outbox, webhooks)')
    .option('--strict', 'exit 3 when a job\'s last run failed, Stripe calls are failed or dead, an open invoice is stuck as a Stripe draft, webhook deliveries failed for good, or an ingest run is stale (for monitoring)')
    .action(async (opts: { strict?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { getStatus } = await import('../../jobs/status.js');
      const { formatDuration } = await import('../../ui/format.js');
      const config = ctx.daemonConfig; // next runs follow the config file's schedules
      const report = await withDb(ctx, (db) => getStatus(db, { now: ctx.now, wallNow: ctx.wallClock(), config }));
      if (ctx.json) printJson(report);
      else {
        printLine(
          formatTable(
            ['JOB', 'LAST', 'STARTED', 'TOOK', 'COUNTS / ERROR', 'NEXT'],
            report.jobs.map((j) => [
              j.job,
              j.last ? j.last.status : 'never',
              j.last ? j.last.startedAt : '',
              j.last?.durationMs != null ? formatDuration(j.last.durationMs) : '',
              j.last ? (j.last.error ?? Object.entries(j.last.counts ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')) : '',
              j.nextRunAt ?? (j.schedule ? '' : 'not scheduled'),
            ]),
          ),
        );
        for (const l of report.locks) {
          printLine(`lock ${l.job}: held by ${l.owner} until ${l.expiresAt}${l.expired ? ' (expired: its owner stopped; the next run takes it over)' : ''}`);
        }
        const b = report.backlog;
        printLine('');
        printLine(`events waiting for aggregation: ${b.aggregation.eventsWaiting}`);
        if (b.invoicing) {
          const oldest = b.invoicing.oldestPeriodEnd === null ? '' : ` (oldest ended ${b.invoicing.oldestPeriodEnd})`;
          printLine(`periods waiting for invoicing: ${b.invoicing.periodsWaiting}${oldest}`);
        }
        if (b.stripeOutbox) {
          const o = b.stripeOutbox;
          printLine(`stripe outbox: ${o.pending} pending (${o.due} due now), ${o.failed} failed, ${o.dead} dead`);
          if (o.stalledDrafts) printLine(`open invoices left as drafts at Stripe (not finalized): ${o.stalledDrafts}`);
        }
        if (b.webhooks) {
          const w = b.webhooks;
          printLine(`webhook deliveries: ${w.pending} pending (${w.due} due now), ${w.failed} failed`);
        }
        for (const r of report.ingestRuns) {
          printLine(
            r.stale
              ? `ingest run ${r.id} (${r.source}) stale: "running" since ${r.startedAt} with ${r.inserted} rows committed; its process died. Rerun the same ingest to finish it`
              : `ingest run ${r.id} (${r.source}) running since ${r.startedAt}: ${r.inserted} rows committed so far`,
          );
        }
      }
      const o = report.backlog.stripeOutbox;
      const failing =
        report.jobs.some((j) => j.last?.status === 'failed') ||
        (o !== null && o.failed + o.dead + o.stalledDrafts > 0) ||
        (report.backlog.webhooks?.failed ?? 0) > 0 ||
        report.ingestRuns.some((r) => r.stale);
      if (opts.strict && failing) process.exitCode = ExitCode.Partial;
    });
}
