/** A batch of input records and the line each starts on, plus unreadable stretches. */
export interface RecordBatch<T> {
  items: T[];
  lines: number[];
  errors: Array<{ line: number; message: string }>;
}
