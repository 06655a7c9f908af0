import { Readable, pipeline } from 'node:stream';
import { parse, type CsvError } from 'csv-parse';
import type { RecordBatch } from './batch.js';

const MAX_RECORD_BYTES = 1 << 20;

/**
 * CSV records in batches, with the line each starts on. The header is the first record (the
 * caller binds it). Parsing is lenient so that one bad row never desynchronises the rest:
 * quotes inside fields are kept (relax_quotes), rows may have any field count (checked by
 * the caller against the header), and a record csv-parse still cannot read becomes an
 * error entry instead of ending the run. Empty lines are skipped but counted.
 *
 * Line numbers are counted here rather than with csv-parse's `info` option, which copies
 * its whole state object per record and costs more than the rest of the parse.
 */
export async function* readCsv(bytes: AsyncIterable<Buffer>, batchSize: number): AsyncGenerator<RecordBatch<string[]>> {
  const parser = parse({
    bom: true,
    ltrim: true, // right-trimming is done per field by the caller: csv-parse's rtrim desyncs on `"a"x`
    relax_quotes: true,
    relax_column_count: true,
    skip_records_with_error: true,
    max_record_size: MAX_RECORD_BYTES,
  });
  let nextLine = 1;
  let batch: RecordBatch<string[]> = { items: [], lines: [], errors: [] };
  let done = false;
  let failure: Error | null = null;
  let wake: (() => void) | null = null;
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  parser.on('data', (record: string[]) => {
    const line = nextLine;
    let extra = 0;
    for (let i = 0; i < record.length; i++) {
      const f = record[i];
      if (f.length !== 0 && f.indexOf('\n') !== -1) extra += f.split('\n').length - 1;
    }
    nextLine += 1 + extra;
    if (record.length === 1 && record[0] === '') return; // empty line
    batch.items.push(record);
    batch.lines.push(line);
    if (batch.items.length >= batchSize) {
      parser.pause();
      notify();
    }
  });
  parser.on('skip', (err: CsvError) => {
    batch.errors.push({ line: nextLine, message: `malformed CSV: ${err.message.split(':')[0]}` });
    const at = (err as CsvError & { lines?: number }).lines;
    if (typeof at === 'number' && at >= nextLine) nextLine = at + 1;
  });
  parser.on('end', () => {
    done = true;
    notify();
  });
  pipeline(Readable.from(bytes, { objectMode: false }), parser, (err) => {
    if (err) {
      failure = err;
      notify();
    }
  });

  try {
    for (;;) {
      if (failure) throw failure;
      const full = batch.items.length >= batchSize;
      if (full || (done && (batch.items.length > 0 || batch.errors.length > 0))) {
        const out = batch;
        batch = { items: [], lines: [], errors: [] };
        // Let the parser fill the next batch while the caller validates and writes this one.
        if (full) parser.resume();
        yield out;
        continue;
      }
      if (done) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    parser.destroy(); // the caller may stop early (an error): release the input
  }
}
