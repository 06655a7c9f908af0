/**
 * Readers push records to a handler synchronously, as they are parsed, so a record's strings
 * die young (no batch of raw records is kept), and yield after every `batchSize` records:
 * reading stays paused until the caller asks for more, which is when it writes, commits and
 * reports progress.
 */
export interface RecordHandler<T> {
  /** One record and the line it starts on. May throw: the reader stops and rethrows. */
  record(item: T, line: number): void;
  /** A stretch of input that could not be read as a record. */
  unreadable(line: number, message: string): void;
}
