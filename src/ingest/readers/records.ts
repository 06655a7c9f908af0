/**
 * Readers push records to a handler synchronously, as they are parsed, so a record's strings
 * die young (no batch of raw records is kept), and yield after every `batchSize` records:
 * reading stays paused until the caller asks for more, which is when it writes, commits and
 * reports progress.
 */
export interface RecordHandler<T> {
  /** One record and the line it starts on. May throw: the reader stops and rethrows. */
  record(item: T, line: number): void;
  /**
   * A record that could not be read as one (too long, unclosed quote, not UTF-8): what it
   * holds as far as it could be read (cut by `rawText` when long), and for CSV, the field at
   * fault when one is.
   */
  unreadable(line: number, message: string, raw: T, field?: number): void;
}

/** Raw text kept of an unreadable record; more is cut off with a note of the full size. */
export const RAW_KEPT_BYTES = 1024;

/** `bytes` as text for a reject, cut at RAW_KEPT_BYTES with a note when longer than that. */
export function rawText(bytes: Buffer, total = bytes.length): string {
  if (total <= RAW_KEPT_BYTES && bytes.length === total) return bytes.toString('utf8');
  return `${bytes.subarray(0, RAW_KEPT_BYTES).toString('utf8')}... (truncated, ${total} bytes)`;
}
