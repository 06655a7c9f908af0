import { createReadStream, statSync } from 'node:fs';
import { createGunzip } from 'node:zlib';
import { Readable, pipeline } from 'node:stream';
import { BillingError } from '../domain/errors.js';

export type Format = 'csv' | 'ndjson' | 'cloudevents';
export const FORMATS: readonly Format[] = ['csv', 'ndjson', 'cloudevents'];

/** One input of an ingest run: a file, stdin, or any byte stream (HTTP body, test). */
export interface IngestInput {
  /** As given by the user: file path, or "-" for stdin. Recorded in ingest_runs.source. */
  name: string;
  /** Used in reject messages ("usage.csv:17: ..."). */
  label: string;
  /** Size in bytes when known (regular files): progress shows a fraction. */
  size?: number;
  /** Format implied by the name (extension), if any. */
  format?: Format;
  open(): Readable;
}

/** Format by extension, looking through a trailing .gz: .csv; .ndjson, .jsonl, .json (JSON lines). */
export function formatFromName(name: string): Format | undefined {
  const base = name.toLowerCase().replace(/\.gz$/, '');
  if (base.endsWith('.csv')) return 'csv';
  if (base.endsWith('.ndjson') || base.endsWith('.jsonl') || base.endsWith('.json')) return 'ndjson';
  return undefined;
}

export function fileInput(path: string): IngestInput {
  let size: number;
  try {
    const st = statSync(path);
    if (!st.isFile()) throw new BillingError('usage', `${path} is not a file`);
    size = st.size;
  } catch (e) {
    if (e instanceof BillingError) throw e;
    throw new BillingError('usage', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  return { name: path, label: path, size, format: formatFromName(path), open: () => createReadStream(path, { highWaterMark: 256 * 1024 }) };
}

export function streamInput(name: string, stream: Readable, format?: Format): IngestInput {
  return { name, label: name === '-' ? 'stdin' : name, format: format ?? formatFromName(name), open: () => stream };
}

const isGzip = (b: Buffer) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/**
 * The input's bytes, gunzipped when they start with the gzip magic number (so `.gz` files
 * and gzipped stdin both work). `counter.bytes` counts the bytes read before decompression.
 */
export async function* inputBytes(raw: Readable, counter: { bytes: number }): AsyncGenerator<Buffer> {
  const it = raw[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  async function* rawChunks(first: Buffer): AsyncGenerator<Buffer> {
    counter.bytes += first.length;
    yield first;
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      counter.bytes += n.value.length;
      yield n.value;
    }
  }
  try {
    let first = await it.next();
    while (!first.done && first.value.length === 0) first = await it.next();
    if (first.done) return;
    if (!isGzip(first.value)) {
      yield* rawChunks(first.value);
      return;
    }
    const gunzip = createGunzip();
    pipeline(Readable.from(rawChunks(first.value), { objectMode: false }), gunzip, () => {}); // errors surface below
    try {
      for await (const chunk of gunzip) yield chunk as Buffer;
    } catch (e) {
      throw new BillingError('invalid_input', `cannot decompress: ${(e as Error).message}`);
    }
  } finally {
    raw.destroy(); // also when the caller stops early: release the file
  }
}

/**
 * Format of an input without a telling name, from its first bytes: JSON lines start with
 * "{" (CloudEvents among them are recognised line by line), anything else is CSV.
 */
export function sniffFormat(first: Buffer): Format {
  const s = first.subarray(0, 64).toString('utf8').replace(/^\ufeff/, '').trimStart();
  return s.startsWith('{') ? 'ndjson' : 'csv';
}
