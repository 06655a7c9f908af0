import type { Command } from 'commander';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson, printLine } from '../output.js';
import { formatTable } from '../../format/table.js';

export function register(program: Command): void {
  program
    .command('backup')
    .description('write a verified NDJSON backup (gzip when FILE ends .gz; - for stdout) of the whole service or one tenant')
    .requiredOption('--out <file>', 'backup file to write (FILE.ndjson or FILE.ndjson.gz), or - for stdout')
    .option('--tenant <id>', 'only this tenant\'s rows (no catalog)')
    .action(async (opts: { out: string; tenant?: string }, cmd: Command) => {
      const ctx = buildContext(cmd);
      const { backup } = await import('../../ops/backup.js');
      const toStdout = opts.out === '-';
      const summary = await withDb(ctx, (db) =>
        backup(db, { out: opts.out, stream: toStdout ? process.stdout : undefined, tenantId: opts.tenant, now: ctx.now }),
      );
      // With the backup on stdout, everything else goes to stderr.
      if (ctx.json) return toStdout ? printErr(JSON.stringify(summary, null, 2)) : printJson(summary);
      const print = toStdout ? printErr : printLine;
      const where = toStdout ? 'stdout' : summary.file;
      print(formatTable(['TABLE', 'ROWS'], summary.tables.map((t) => [t.name, t.count])));
      print(`\nwrote ${summary.rows} row(s) to ${where} (${summary.scope}${summary.tenant ? ` ${summary.tenant}` : ''}, ${summary.checksum})`);
    });
}
