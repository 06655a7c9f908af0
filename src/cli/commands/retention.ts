import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('retention')
    .description('delete raw usage events past retention once summarized and invoiced (summaries, invoices and audit are kept)')
    .requiredOption('--older-than <age>', 'age like 7y, 18m or 90d')
    .option('--dry-run', 'list what would be deleted, delete nothing')
    .action(async (opts: { olderThan: string; dryRun?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { runRetention } = await import('../../ops/retention.js');
      const r = await withDb(ctx, (db) =>
        runRetention(db, { olderThan: opts.olderThan, now: ctx.now, actor: ctx.actor, dryRun: opts.dryRun }),
      );
      if (ctx.json) return printJson(r);
      const total = r.groups.reduce((n, g) => n + g.events, 0);
      if (total === 0) return printLine(`no raw events before ${r.cutoff} are both summarized and invoiced; nothing to delete`);
      printLine(formatTable(['TENANT', 'FEATURE', 'EVENTS', 'OLDEST', 'NEWEST'], r.groups.map((g) => [g.tenantId, g.featureKey, g.events, g.oldest, g.newest])));
      printLine(r.dryRun ? `\nwould delete ${total} raw event(s) before ${r.cutoff} (dry run)` : `\ndeleted ${r.deleted} raw event(s) before ${r.cutoff}`);
    });
}
