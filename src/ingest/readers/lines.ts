import { isUtf8 } from 'node:buffer';
import { RAW_KEPT_BYTES, rawText, type RecordHandler } from './records.js';

/** A line longer than this is reported unreadable (and skipped) rather than buffered without bound. */
export const MAX_LINE_BYTES = 1 << 20;

/**
 * Non-blank text lines (JSON lines) with their line numbers. Accepts LF and CRLF, and a UTF-8
 * byte order mark at the start. Lines are split as bytes and each is decoded on its own, so a
 * line that is not valid UTF-8 is reported (never turned into U+FFFD and stored).
 */
export async function* readLines(
  bytes: AsyncIterable<Buffer>,
  batchSize: number,
  handler: RecordHandler<string>,
): AsyncGenerator<void> {
  let partial: Buffer | null = null; // the start of a line that continues in the next chunk
  let skipping = 0; // bytes of an overlong line seen so far (0: not inside one)
  let head: Buffer | null = null; // the start of that line, for the reject
  let line = 0;
  let count = 0;

  const take = (b: Buffer) => {
    line++;
    let end = b.length;
    if (end > 0 && b[end - 1] === 13) end--;
    let start = 0;
    if (line === 1 && end >= 3 && b[0] === 0xef && b[1] === 0xbb && b[2] === 0xbf) start = 3;
    const body = b.subarray(start, end);
    if (body.length > MAX_LINE_BYTES) {
      handler.unreadable(line, `is longer than ${MAX_LINE_BYTES} bytes`, rawText(body));
      return;
    }
    if (!isUtf8(body)) {
      handler.unreadable(line, 'is not valid UTF-8', rawText(body));
      return;
    }
    const text = body.toString('utf8');
    if (text.trim() === '') return;
    handler.record(text, line);
    count++;
  };
  const endOverlong = (tail: number) => {
    line++;
    handler.unreadable(line, `is longer than ${MAX_LINE_BYTES} bytes`, rawText(head!, skipping + tail));
    skipping = 0;
    head = null;
  };

  for await (const chunk of bytes) {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl !== -1; nl = chunk.indexOf(10, start)) {
      if (skipping) endOverlong(nl - start);
      else take(partial ? Buffer.concat([partial, chunk.subarray(start, nl)]) : chunk.subarray(start, nl));
      partial = null;
      start = nl + 1;
    }
    if (skipping) skipping += chunk.length - start;
    else if (start < chunk.length) {
      partial = partial ? Buffer.concat([partial, chunk.subarray(start)]) : Buffer.from(chunk.subarray(start));
      if (partial.length > MAX_LINE_BYTES + 1) {
        skipping = partial.length;
        head = Buffer.from(partial.subarray(0, RAW_KEPT_BYTES));
        partial = null;
      }
    }
    if (count >= batchSize) {
      count = 0;
      yield;
    }
  }
  if (skipping) endOverlong(0);
  else if (partial) take(partial);
}
