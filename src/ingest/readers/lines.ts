import { StringDecoder } from 'node:string_decoder';
import type { RecordHandler } from './records.js';

/** A line longer than this is reported unreadable (and skipped) rather than buffered without bound. */
const MAX_LINE_CHARS = 1 << 20;

/**
 * Non-blank text lines (JSON lines) with their line numbers. Accepts LF and CRLF, and a UTF-8
 * byte order mark at the start.
 */
export async function* readLines(
  bytes: AsyncIterable<Buffer>,
  batchSize: number,
  handler: RecordHandler<string>,
): AsyncGenerator<void> {
  const decoder = new StringDecoder('utf8');
  let partial = '';
  let overlong = false; // inside a line that is being skipped for its length
  let line = 0;
  let count = 0;

  const tooLong = (at: number) => handler.unreadable(at, `longer than ${MAX_LINE_CHARS} characters`);
  const take = (text: string) => {
    line++;
    if (overlong) {
      overlong = false;
      return;
    }
    if (line === 1 && text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.length > MAX_LINE_CHARS) return tooLong(line);
    if (text.trim() === '') return;
    handler.record(text, line);
    count++;
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
      tooLong(line + 1);
      partial = '';
      overlong = true;
    }
    if (count >= batchSize) {
      count = 0;
      yield;
    }
  }
  const rest = partial + decoder.end();
  if (rest !== '' && !overlong) take(rest);
}
