import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { formatTable, printJson, printLine } from '../output.js';

export function register(program: Command): void {
  program
    .command('backup')
    .description('write a verified NDJSON backup (gzip when FILE ends .gz) of the whole service or one tenant')
    .requiredOption('--out <file>', 'backup file to write (FILE.ndjson or FILE.ndjson.gz)')
    .option('--tenant <id>', 'only this tenant\'s rows (no catalog)')
    .action(async (opts: { out: string; tenant?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { backup } = await import('../../ops/backup.js');
      const summary = await withDb(ctx, (db) => backup(db, { out: opts.out, tenantId: opts.tenant, now: ctx.now }));
      if (ctx.json) return printJson(summary);
      printLine(formatTable(['TABLE', 'ROWS'], summary.tables.map((t) => [t.name, t.count])));
      printLine(`\nwrote ${summary.rows} row(s) to ${summary.file} (${summary.scope}${summary.tenant ? ` ${summary.tenant}` : ''}, ${summary.checksum})`);
    });
}
