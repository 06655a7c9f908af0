import { Option, type Command } from 'commander';
import { optionalWholeNumber, repeatable } from '../options.js';
import { ExitCode } from '../../domain/errors.js';
import { buildContext, withDb } from '../context.js';
import { printErr, printJson } from '../output.js';

interface IngestFlags {
  format?: 'csv' | 'ndjson' | 'cloudevents';
  map: string[];
  rejects?: string;
  strict?: boolean;
  batchSize?: string;
  delimiter: string;
  assumeUtc?: boolean;
}

// What --delimiter accepts: the character itself, or a name for those awkward in a shell.
const DELIMITERS: Record<string, ',' | ';' | '\t' | '|' | 'auto'> = {
  auto: 'auto',
  ',': ',',
  comma: ',',
  ';': ';',
  semicolon: ';',
  '\t': '\t',
  '\\t': '\t',
  tab: '\t',
  '|': '|',
  pipe: '|',
};

const SHOWN_REJECTS = 5;

export function register(program: Command): void {
  program
    .command('ingest')
    .description('load usage events from CSV, NDJSON or CloudEvents files (or stdin; .gz transparently)')
    .argument('[files...]', 'input files; "-" or none for stdin')
    .addOption(new Option('--format <format>', 'input format (default: by extension, else sniffed)').choices(['csv', 'ndjson', 'cloudevents']))
    .option('--map <col=field>', 'read column/key COL as FIELD (repeatable), e.g. --map units=quantity', repeatable, [])
    .option('--rejects <file>', 'write rejected records, with line and reason, to FILE')
    .option('--strict', 'all or nothing: insert nothing if any record is rejected')
    .option('--delimiter <char>', "CSV field separator: , ; '\\t' (tab) | or auto (a header without a comma: ; or tab)", 'auto')
    .option('--assume-utc', 'read date-times without a zone ("2026-01-01T10:00:00") as UTC instead of rejecting them')
    .option('--batch-size <rows>', 'rows per transaction (default: 50000 on SQLite, 5000 on PostgreSQL)')
    .action(async (files: string[], flags: IngestFlags, cmd: Command) => {
      const ctx = buildContext(cmd);
      const [{ BillingError }, { parseFieldMap }, { fileInput, streamInput }, { ingest, IngestInterrupted }] = await Promise.all([
        import('../../domain/errors.js'),
        import('../../ingest/fields.js'),
        import('../../ingest/source.js'),
        import('../../ingest/ingest.js'),
      ]);
      const map = parseFieldMap(flags.map);
      const key = flags.delimiter.toLowerCase();
      const delimiter = Object.hasOwn(DELIMITERS, key) ? DELIMITERS[key] : undefined;
      if (delimiter === undefined) {
        throw new BillingError('usage', `--delimiter "${flags.delimiter}" must be one of , ; '\\t' (or tab) | auto`);
      }
      const txRows = optionalWholeNumber(flags.batchSize, '--batch-size', { min: 1, unit: 'rows' });
      const names = files.length ? files : ['-'];
      if (names.filter((n) => n === '-').length > 1) throw new BillingError('usage', 'stdin ("-") can be read only once');
      if (names.includes('-') && process.stdin.isTTY) {
        throw new BillingError('usage', 'no input: pass FILE... or pipe usage into stdin');
      }
      const inputs = names.map((n) => (n === '-' ? streamInput('-', process.stdin) : fileInput(n)));

      const t0 = performance.now();
      // ink progress bar (rows/s, ETA by bytes) on a terminal; nothing on pipes, --json or NO_COLOR.
      const { createProgressReporter } = await import('../../ui/progress.js');
      const progress = createProgressReporter(process.stderr, { json: ctx.json, env: ctx.env, label: 'ingest', unit: 'bytes' });
      // Up before the first byte is read: the first batch can take seconds on a large file.
      await progress.start({ label: inputs[0].label, total: inputs[0].size ?? null, unit: 'bytes', rows: 0 });
      // The first SIGINT/SIGTERM commits what was read and marks the runs interrupted; a second
      // one gets Node's default (immediate exit, the runs stay "running": `billing status` flags them).
      const stop = new AbortController();
      let stoppedBy: NodeJS.Signals | null = null;
      const onSignal = (sig: NodeJS.Signals) => {
        stoppedBy = sig;
        stop.abort();
        // A reader waiting on stdin would not see the abort until more data came.
        if (names.includes('-')) process.stdin.destroy();
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      const summary = await withDb(ctx, (db) =>
        ingest(db, inputs, {
          signal: stop.signal,
          now: ctx.now,
          format: flags.format,
          map,
          delimiter,
          assumeUtc: flags.assumeUtc,
          assumeUtcOption: '--assume-utc',
          strict: flags.strict,
          rejectsPath: flags.rejects,
          rowsPerTransaction: txRows,
          backfillDays: ctx.backfillDays,
          onProgress: progress.enabled
            ? (p) => progress({ done: p.bytes, total: p.totalBytes ?? null, rows: p.read, label: p.source, unit: 'bytes' })
            : undefined,
          elapsedMs: () => performance.now() - t0,
        }),
      )
        .catch((e: unknown) => {
          if (!(e instanceof IngestInterrupted)) throw e;
          return e;
        })
        .finally(() => {
          progress.finish();
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
        });
      if (summary instanceof IngestInterrupted) {
        printErr(`interrupted by ${stoppedBy ?? 'a signal'}: ${summary.committed} rows committed; rerun the same command to finish (committed rows count as duplicates)`);
        process.exitCode = stoppedBy === 'SIGTERM' ? ExitCode.Terminated : ExitCode.Interrupted;
        return;
      }

      // Nothing to ingest is rarely what was meant (a wrong file, an empty export): say so, exit 0.
      for (const i of summary.inputs) if (i.read === 0) printErr(`warning: ${i.source === '-' ? 'stdin' : i.source}: no rows to ingest (empty input)`);
      if (ctx.json) printJson(summary);
      else {
        const s = summary;
        printErr(
          `read ${s.read}, inserted ${s.inserted}, duplicates ${s.duplicates}, rejected ${s.rejected} ` +
            `in ${s.seconds.toFixed(2)} s (${s.rowsPerSecond} rows/s)` +
            (s.rolledBack ? ' — --strict: nothing inserted' : ''),
        );
        for (const m of s.messages.slice(0, SHOWN_REJECTS)) printErr(`  ${m}`);
        const more = s.rejected - Math.min(s.messages.length, SHOWN_REJECTS);
        if (more > 0) printErr(`  ... and ${more} more${flags.rejects ? ` in ${flags.rejects}` : ' (keep them all with --rejects FILE)'}`);
      }
      process.exitCode = summary.rejected > 0 ? ExitCode.Partial : ExitCode.Ok;
    });
}
