import { isUtf8 } from 'node:buffer';
import { RAW_KEPT_BYTES, type RecordHandler } from './records.js';

/** A record may span this many bytes; a quote still open after that is taken as never closed. */
export const MAX_RECORD_BYTES = 1 << 20;

/**
 * CSV records (arrays of fields) with the line each starts on; the header is the first one.
 *
 * Records are split as bytes, so that one bad record is reported with its text and never takes
 * the rest of the file with it (csv-parse can only drop what follows an error, it cannot
 * resume at the next line):
 * - a quote not closed by the end of the input or within MAX_RECORD_BYTES is reported, and
 *   reading resumes at the line after the one it opened on;
 * - a longer record is reported (its first KiB kept) and skipped to the end of its line;
 * - a record that is not valid UTF-8 is reported with the field at fault.
 * Fields are split on `opts.delimiter` (by default detected from the header line).
 * Otherwise lenient as before: leading blanks of a field are dropped (not tabs when the tab
 * is the delimiter; the caller trims the right side), a quote inside an unquoted field or text after a closing quote is kept as is,
 * rows may have any field count (the caller checks them against the header), LF, CRLF or CR
 * end a record, a UTF-8 BOM is skipped, and empty lines are skipped but counted.
 */
export async function* readCsv(
  bytes: AsyncIterable<Buffer>,
  batchSize: number,
  handler: RecordHandler<string[]>,
  opts: CsvOptions = {},
): AsyncGenerator<void> {
  let scanner: Scanner | null = opts.delimiter === undefined || opts.delimiter === 'auto' ? null : new Scanner(opts.delimiter);
  const pick = (final: boolean): Scanner | null => {
    if (scanner) return scanner;
    const d = detectDelimiter(buf, final);
    if (d === null) return null;
    opts.onDelimiter?.(d);
    return (scanner = new Scanner(d));
  };
  if (scanner) opts.onDelimiter?.(opts.delimiter as Delimiter);
  let buf: Buffer = Buffer.alloc(0);
  let line = 1;
  let count = 0;
  let bomChecked = false;
  // Skipping the rest of an overlong record's line: its line, first bytes and size so far.
  let skip: { line: number; head: Buffer; bytes: number } | null = null;

  const unreadable = (at: number, message: string, raw: Buffer, total: number, field?: number) => {
    const cells = scanner!.lenient(raw.subarray(0, RAW_KEPT_BYTES));
    if (total > RAW_KEPT_BYTES) cells[cells.length - 1] += `... (truncated, ${total} bytes)`;
    handler.unreadable(at, message, cells, field);
  };

  const consume = function* (final: boolean): Generator<void> {
    const scanner = pick(final);
    if (!scanner) return; // the header line is not complete yet
    let p = 0;
    for (;;) {
      if (skip) {
        const nl = buf.indexOf(10, p);
        skip.bytes += (nl === -1 ? buf.length : nl) - p;
        if (nl === -1 && !final) {
          p = buf.length;
          break;
        }
        unreadable(skip.line, `is longer than ${MAX_RECORD_BYTES} bytes`, trimCr(skip.head), skip.bytes);
        skip = null;
        line++;
        p = nl === -1 ? buf.length : nl + 1;
        if (++count >= batchSize) {
          count = 0;
          yield;
        }
        continue;
      }
      if (p >= buf.length) break;
      const r = scanner.scan(buf, p, final);
      if (r === MORE) break;
      if (r === TOO_LONG) {
        const q = scanner.quoteAt;
        const eol = q >= 0 ? buf.indexOf(10, q) : -1;
        if (eol !== -1 && eol - p <= MAX_RECORD_BYTES) {
          // Most likely a stray quote: report up to the end of its line and read on from there.
          unreadable(line, `has a quote that is not closed within ${MAX_RECORD_BYTES} bytes`, trimCr(buf.subarray(p, eol)), eol - p);
          line += 1 + countLf(buf, p, q);
          p = eol + 1;
        } else {
          // A line too long to be a record: skipped to its end.
          const from = q >= 0 ? q : p + MAX_RECORD_BYTES;
          skip = { line, head: Buffer.from(buf.subarray(p, p + RAW_KEPT_BYTES)), bytes: from - p };
          line += countLf(buf, p, from); // line breaks inside its quoted fields
          p = from;
          continue;
        }
      } else if (r === UNCLOSED) {
        const q = scanner.quoteAt;
        const nl = buf.indexOf(10, q);
        const eol = nl === -1 ? buf.length : nl;
        unreadable(line, 'has a quote that is never closed', trimCr(buf.subarray(p, eol)), eol - p);
        line += 1 + countLf(buf, p, q);
        p = eol + 1;
      } else {
        const start = line;
        const end = scanner.end;
        line += scanner.lines;
        const fields = scanner.fields;
        const from = p;
        p = end;
        if (fields.length === 1 && fields[0] === '') continue; // empty line
        if (!isUtf8(buf.subarray(from, end))) {
          const raw = withoutEol(buf.subarray(from, end));
          unreadable(start, 'is not valid UTF-8', raw, raw.length, scanner.invalidField(buf));
        } else {
          handler.record(fields, start);
        }
      }
      if (++count >= batchSize) {
        count = 0;
        yield;
      }
    }
    buf = p >= buf.length ? Buffer.alloc(0) : buf.subarray(p);
  };

  for await (const chunk of bytes) {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    if (!bomChecked) {
      if (buf.length < 3) continue;
      bomChecked = true;
      if (buf[0] === 0xef && buf[1] === 0xbb && buf[2] === 0xbf) buf = buf.subarray(3);
    }
    yield* consume(false);
  }
  yield* consume(true);
}

export type Delimiter = ',' | ';' | '\t' | '|';

export interface CsvOptions {
  /** The field separator, or 'auto' (the default): see detectDelimiter. */
  delimiter?: Delimiter | 'auto';
  /** Told the delimiter in use before the first record. */
  onDelimiter?: (d: Delimiter) => void;
}

/**
 * The delimiter of a header line: a comma when it has one, else a semicolon or a tab (the
 * more frequent), else a comma. Null while the first line may still be incomplete.
 */
function detectDelimiter(buf: Buffer, final: boolean): Delimiter | null {
  let end = buf.indexOf(10);
  const cr = buf.indexOf(13);
  if (cr !== -1 && (end === -1 || cr < end)) end = cr;
  if (end === -1) {
    if (!final && buf.length < MAX_RECORD_BYTES) return null;
    end = buf.length;
  }
  let commas = 0;
  let semis = 0;
  let tabs = 0;
  for (let i = 0; i < end; i++) {
    const c = buf[i];
    if (c === 44) commas++;
    else if (c === 59) semis++;
    else if (c === 9) tabs++;
  }
  if (commas > 0 || semis + tabs === 0) return ',';
  return semis >= tabs ? ';' : '\t';
}

const RECORD = 0;
const MORE = 1;
const UNCLOSED = 2;
const TOO_LONG = 3;

function countLf(buf: Buffer, from: number, to: number): number {
  let n = 0;
  for (let i = buf.indexOf(10, from); i !== -1 && i < to; i = buf.indexOf(10, i + 1)) n++;
  return n;
}

const trimCr = (b: Buffer) => (b.length > 0 && b[b.length - 1] === 13 ? b.subarray(0, b.length - 1) : b);
const withoutEol = (b: Buffer) => trimCr(b.length > 0 && b[b.length - 1] === 10 ? b.subarray(0, b.length - 1) : b);

/** Reads one record at a time from a buffer; the results are left in its fields. */
class Scanner {
  private readonly sep: number;
  fields: string[] = [];
  /** Just after the record's terminator. */
  end = 0;
  /** Line breaks the record spans, its terminator included. */
  lines = 0;
  /** Where the quote that was still open (MORE or UNCLOSED) began. */
  quoteAt = -1;
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];

  constructor(delimiter: Delimiter = ',') {
    this.sep = delimiter.charCodeAt(0);
  }

  /**
   * One record starting at `p`: RECORD, MORE (it may continue past the end of `buf`),
   * TOO_LONG (not ended within MAX_RECORD_BYTES, wherever the chunks of input end), or, when
   * `final`, UNCLOSED (a quote open at the end of the input).
   */
  scan(buf: Buffer, p: number, final: boolean, lenient = false): number {
    const n = buf.length;
    const limit = p + MAX_RECORD_BYTES;
    const stop = Math.min(n, limit);
    const fields: string[] = [];
    this.starts.length = 0;
    this.ends.length = 0;
    let lines = 0;
    let i = p;
    for (;;) {
      while (i < n && (buf[i] === 32 || (buf[i] === 9 && this.sep !== 9))) i++;
      let value: string;
      const start = i;
      let j = i;
      if (i < n && buf[i] === 34) {
        // Quoted: up to a quote that is not doubled.
        let k = i + 1;
        let escaped = false;
        let closed = -1;
        for (;;) {
          const qi = buf.indexOf(34, k);
          if (qi >= limit || (qi === -1 && n > limit)) {
            this.quoteAt = i;
            return TOO_LONG;
          }
          if (qi === -1 || (qi + 1 >= n && !final)) break;
          if (qi + 1 < n && buf[qi + 1] === 34) {
            escaped = true;
            k = qi + 2;
            continue;
          }
          closed = qi;
          break;
        }
        if (closed === -1) {
          if (!final) {
            this.quoteAt = i;
            return MORE;
          }
          if (!lenient) {
            this.quoteAt = i;
            return UNCLOSED;
          }
          j = i; // lenient: the quote is text, like any other
        } else {
          lines += countLf(buf, i, closed);
          const c = closed + 1 < n ? buf[closed + 1] : -1;
          if (c === -1 || c === this.sep || c === 10 || c === 13) {
            value = buf.toString('utf8', i + 1, closed);
            if (escaped) value = value.replaceAll('""', '"');
            j = closed + 1;
            const t = this.endField(buf, i + 1, closed, value, j, final, fields, lines);
            if (t !== -1) return t;
            i = j + 1;
            continue;
          }
          j = closed + 1; // text after the closing quote: the whole field is taken as written
        }
      }
      while (j < stop) {
        const c = buf[j];
        if (c === this.sep || c === 10 || c === 13) break;
        j++;
      }
      if (j >= limit) {
        this.quoteAt = -1;
        return TOO_LONG;
      }
      if (j >= n && !final) {
        this.quoteAt = -1;
        return MORE;
      }
      const t = this.endField(buf, start, j, buf.toString('utf8', start, j), j, final, fields, lines);
      if (t !== -1) return t;
      i = j + 1;
    }
  }

  /** Keeps a field (bytes start..end, text value) and reads what follows it at j: -1 for a comma, MORE, or RECORD. */
  private endField(buf: Buffer, start: number, end: number, value: string, j: number, final: boolean, fields: string[], lines: number): number {
    this.starts.push(start);
    this.ends.push(end);
    fields.push(value);
    const t = this.terminator(buf, j, final, fields, lines);
    if (t === MORE) this.quoteAt = -1;
    return t;
  }

  /** At `j` (after a field): -1 for a comma, MORE, or RECORD with the results set. */
  private terminator(buf: Buffer, j: number, final: boolean, fields: string[], lines: number): number {
    const n = buf.length;
    if (j < n && buf[j] === this.sep) return -1;
    let end = j;
    if (j < n) {
      if (buf[j] === 13) {
        if (j + 1 >= n && !final) return MORE;
        end = j + 1 < n && buf[j + 1] === 10 ? j + 2 : j + 1;
      } else {
        end = j + 1;
      }
      lines++;
    }
    this.fields = fields;
    this.end = end;
    this.lines = lines;
    return RECORD;
  }

  /** The fields of a record's text read as far as possible: an open quote is kept as text. */
  lenient(raw: Buffer): string[] {
    if (raw.length === 0) return [''];
    const r = this.scan(raw, 0, true, true);
    return r === RECORD ? this.fields : [raw.toString('utf8')];
  }

  /** After a RECORD that is not valid UTF-8: the index of the first field that is not. */
  invalidField(buf: Buffer): number | undefined {
    for (let f = 0; f < this.starts.length; f++) {
      if (!isUtf8(buf.subarray(this.starts[f], this.ends[f]))) return f;
    }
    return undefined;
  }
}
