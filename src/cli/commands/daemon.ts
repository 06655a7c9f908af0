import type { Command } from 'commander';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { repeatable } from '../options.js';

export function register(program: Command): void {
  program
    .command('daemon')
    .description('run the batch stages on their schedules (node-cron, UTC; the config file\'s "daemon" section) until SIGTERM/SIGINT; JSON log lines on stdout')
    .option('--schedule <job=cron>', 'override one schedule, e.g. aggregate="*/5 * * * *" (repeatable; "off" disables)', repeatable, [])
    .action(async (opts: { schedule: string[] }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { BillingError } = await import('../../domain/errors.js');
      if (ctx.pinnedNow !== undefined) {
        throw new BillingError('usage', 'the daemon runs on the real clock; drop --now / BILLING_NOW (use `billing run --now` for backfills)');
      }
      const { applyScheduleFlags } = await import('../../jobs/schedules.js');
      // --schedule flags over the config file's "daemon" section over the defaults.
      const config = applyScheduleFlags(ctx.daemonConfig, opts.schedule);
      const { startDaemon } = await import('../../jobs/daemon.js');
      const { stageSettingsFromEnv } = await import('../../jobs/env.js');
      const settings = stageSettingsFromEnv(ctx.env, ctx.invoiceDueDays());
      const { isInteractive } = await import('../../ui/live.js');
      const panel = isInteractive(process.stdout, { json: ctx.json, env: ctx.env })
        ? await (await import('../../ui/daemon-view.js')).createDaemonView(process.stdout)
        : null;

      await withDb(ctx, async (db) => {
        const handle = startDaemon(db, {
          config,
          actor: ctx.env.BILLING_ACTOR || 'daemon',
          clock: Date.now,
          ...settings,
          finalizeInvoices: !config.draftInvoices,
          log: panel ? panel.log : (entry) => process.stdout.write(JSON.stringify(entry) + '\n'),
          onState: panel?.state,
        });
        // Listeners stay installed: the first signal stops gracefully, a second one means
        // "now". (ink's signal-exit re-raises a signal that has no other listener left.)
        let signals = 0;
        const signal = await new Promise<string>((resolve) => {
          const onSignal = (name: string) => {
            if (++signals > 1) process.exit(ExitCode.Failure);
            resolve(name);
          };
          process.on('SIGTERM', onSignal);
          process.on('SIGINT', onSignal);
        });
        const { clean } = await handle.stop(signal);
        await panel?.finish();
        if (!clean) process.exit(ExitCode.Failure); // the job's lock is released by its lease expiring / the closed connection
      });
    });
}
