import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('restore')
    .description('verify a backup (counts, checksum), then restore it in one transaction: everything, or one tenant')
    .argument('<file>', 'a file written by `billing backup`')
    .option('--tenant <id>', 'replace only this tenant\'s rows (from a full or a tenant backup)')
    .option('--force', 'full restore into a database that already holds data (replaces everything)')
    .action(async (file: string, opts: { tenant?: string; force?: boolean }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { restore } = await import('../../ops/restore.js');
      const summary = await withDb(ctx, (db) =>
        restore(db, { file, tenantId: opts.tenant, force: opts.force, now: ctx.now, actor: ctx.actor }),
      );
      for (const w of summary.warnings) printErr(`warning: ${w}`);
      if (ctx.json) return printJson(summary);
      printLine(formatTable(['TABLE', 'DELETED', 'RESTORED'], summary.tables.map((t) => [t.name, t.deleted, t.inserted])));
      printLine(`\nrestored ${summary.rows} row(s) from ${summary.file} (${summary.scope}${summary.tenant ? ` ${summary.tenant}` : ''}, checksum verified)`);
    });
}
