import { StringDecoder } from 'node:string_decoder';
import type { RecordBatch } from './batch.js';

/** A line longer than this is rejected (and skipped) rather than buffered without bound. */
const MAX_LINE_CHARS = 1 << 20;

/**
 * Non-blank text lines (JSON lines) in batches with their line numbers. Accepts LF and CRLF,
 * and a UTF-8 byte order mark at the start.
 */
export async function* readLines(bytes: AsyncIterable<Buffer>, batchSize: number): AsyncGenerator<RecordBatch<string>> {
  const decoder = new StringDecoder('utf8');
  let batch: RecordBatch<string> = { items: [], lines: [], errors: [] };
  let partial = '';
  let overlong = false; // inside a line that is being skipped for its length
  let line = 0;
  let first = true;

  const take = (text: string) => {
    line++;
    if (overlong) {
      overlong = false;
      return;
    }
    if (first) {
      first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() === '') return;
    batch.items.push(text);
    batch.lines.push(line);
  };

  for await (const chunk of bytes) {
    const s = decoder.write(chunk);
    let start = 0;
    for (let nl = s.indexOf('\n'); nl !== -1; nl = s.indexOf('\n', start)) {
      take(start === 0 ? partial + s.slice(0, nl) : s.slice(start, nl));
      partial = '';
      start = nl + 1;
    }
    if (!overlong) partial += s.slice(start);
    if (partial.length > MAX_LINE_CHARS) {
      batch.errors.push({ line: line + 1, message: `line is longer than ${MAX_LINE_CHARS} characters` });
      partial = '';
      overlong = true;
    }
    if (batch.items.length >= batchSize) {
      yield batch;
      batch = { items: [], lines: [], errors: [] };
    }
  }
  const rest = partial + decoder.end();
  if (rest !== '' && !overlong) take(rest);
  if (batch.items.length > 0 || batch.errors.length > 0) yield batch;
}
