import { Readable, pipeline } from 'node:stream';
import { parse, type CsvError } from 'csv-parse';
import type { RecordHandler } from './records.js';

const MAX_RECORD_BYTES = 1 << 20;

/**
 * CSV records (arrays of fields) with the line each starts on; the header is the first one.
 * Parsing is lenient so that one bad row never desynchronises the rest: quotes inside fields
 * are kept (relax_quotes), rows may have any field count (the caller checks them against the
 * header), and what csv-parse still cannot read is reported as unreadable instead of ending
 * the run. Empty lines are skipped but counted.
 *
 * Line numbers are counted here rather than with csv-parse's `info` option, which copies its
 * whole state object per record and costs more than the rest of the parse.
 */
export async function* readCsv(
  bytes: AsyncIterable<Buffer>,
  batchSize: number,
  handler: RecordHandler<string[]>,
): AsyncGenerator<void> {
  const parser = parse({
    bom: true,
    ltrim: true, // right-trimming is done per field by the caller: csv-parse's rtrim desyncs on `"a"x`
    relax_quotes: true,
    relax_column_count: true,
    skip_records_with_error: true,
    max_record_size: MAX_RECORD_BYTES,
  });
  let nextLine = 1;
  let count = 0;
  let done = false;
  let failure: unknown = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };
  const fail = (e: unknown) => {
    failure ??= e;
    parser.pause();
    notify();
  };

  parser.on('data', (record: string[]) => {
    if (failure) return;
    const line = nextLine;
    let extra = 0;
    for (let i = 0; i < record.length; i++) {
      const f = record[i];
      if (f.length !== 0 && f.indexOf('\n') !== -1) extra += f.split('\n').length - 1;
    }
    nextLine += 1 + extra;
    if (record.length === 1 && record[0] === '') return; // empty line
    try {
      handler.record(record, line);
    } catch (e) {
      fail(e);
      return;
    }
    if (++count >= batchSize) {
      parser.pause();
      notify();
    }
  });
  parser.on('skip', (err: CsvError) => {
    try {
      handler.unreadable(nextLine, `malformed CSV: ${err.message.split(':')[0]}`);
    } catch (e) {
      fail(e);
    }
    const at = (err as CsvError & { lines?: number }).lines;
    if (typeof at === 'number' && at >= nextLine) nextLine = at + 1;
  });
  parser.on('end', () => {
    done = true;
    notify();
  });
  pipeline(Readable.from(bytes, { objectMode: false }), parser, (err) => {
    if (err) fail(err);
  });

  try {
    for (;;) {
      if (failure) throw failure;
      if (count >= batchSize) {
        count = 0;
        yield;
        parser.resume();
        continue;
      }
      if (done) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    parser.destroy(); // the caller may stop early (an error): release the input
  }
}
