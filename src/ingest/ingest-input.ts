import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import { forDialect, handleOn, type Db } from '../storage/db.js';
import { openBulkWriter, type BulkTarget, type BulkWriter } from '../storage/bulk-insert.js';
import { withTx } from '../storage/sql.js';
import { ALIASES, type Field } from './fields.js';
import { JsonNumber, JsonSyntaxError, JsonTooDeep, parseJson } from './json.js';
import { CsvRows, JsonRows } from './formats.js';
import type { IngestOptions, InputSummary } from './ingest.js';
import { readCsv, type Delimiter } from './readers/csv.js';
import { readLines } from './readers/lines.js';
import type { RejectsFile } from './rejects.js';
import { IngestInterrupted, updateRun } from './runs.js';
import { inputBytes, sniffFormat, type IngestInput } from './source.js';
import { EVENT_COLUMNS, validateEvent, type EventRow, type Invalid, type KnownIds, type ValidateContext } from './validate.js';

const USAGE_EVENTS: BulkTarget = { table: 'usage_events', columns: EVENT_COLUMNS, conflict: ['tenant_id', 'idempotency_key'] };
const DEFAULT_BATCH = 5000;
// SQLite rewrites every index page a transaction touched at commit; usage rows spread over
// all tenants touch most of them, so it commits less often. PostgreSQL commits are cheap.
const DEFAULT_TX_RECORDS: Record<Db['dialect'], number> = { sqlite: 50_000, pg: 5000 };

export interface InputContext extends IngestOptions {
  known: KnownIds;
  rejects: RejectsFile | null;
  onReject: (message: string) => void;
}

/**
 * Ingest one input. Records are validated as they are parsed and handed straight to the bulk
 * writer of the open transaction; every batch the reader pauses while the writer flushes and
 * progress is reported, and every `rowsPerTransaction` records the transaction commits (with
 * `trx`, the caller's single --strict transaction is used throughout).
 */
export async function ingestInput(
  db: Db,
  trx: Knex.Transaction | null,
  input: IngestInput,
  counts: InputSummary,
  opts: InputContext,
): Promise<void> {
  const counter = { bytes: 0 };
  let writer: BulkWriter | null = null;
  const batches = await openRecords(input, counts, counter, opts, (row) => writer!.add(row));
  if (!batches) return; // empty input
  const perTx = trx ? Infinity : (opts.rowsPerTransaction ?? forDialect(db, DEFAULT_TX_RECORDS));
  const progress = () =>
    opts.onProgress?.({
      read: counts.read,
      inserted: counts.inserted + (writer?.inserted ?? 0),
      duplicates: counts.duplicates + (writer ? writer.added - writer.inserted : 0),
      rejected: counts.rejected,
      source: input.label,
      bytes: counter.bytes,
      totalBytes: input.size,
    });

  /** One transaction's worth of records; true once the input is exhausted. */
  const step = async (q: Knex.Transaction): Promise<boolean> => {
    const w = (writer = await openBulkWriter(handleOn(db, q), USAGE_EVENTS));
    const start = counts.read;
    let done = false;
    while (!done && counts.read - start < perTx && !opts.signal?.aborted) {
      done = (await batches.next()).done === true;
      await opts.rejects?.flush();
      await w.flush();
      progress();
    }
    await w.settle();
    writer = null;
    counts.inserted += w.inserted;
    counts.duplicates += w.added - w.inserted;
    await updateRun(q, counts.runId, counts);
    return done;
  };
  // Checked once the batch is committed (or, under --strict, before its one commit).
  const stopIfAborted = async () => {
    if (!opts.signal?.aborted) return;
    await batches.return(undefined); // closes the input
    throw new IngestInterrupted(0);
  };
  if (trx) {
    await step(trx);
    await stopIfAborted();
  } else while (!(await withTx(db, step))) await stopIfAborted();
  await stopIfAborted();
}

/**
 * Open the input and start reading it with the right reader; valid rows go to `add`, rejects
 * are counted, reported and kept. Null for an input without a single byte.
 */
async function openRecords(
  input: IngestInput,
  counts: InputSummary,
  counter: { bytes: number },
  opts: InputContext,
  add: (row: EventRow) => void,
): Promise<AsyncGenerator<void> | null> {
  const bytes = inputBytes(input.open(), counter);
  let format = opts.format ?? input.format;
  let source: AsyncIterable<Buffer> = bytes;
  if (!format) {
    const first = await bytes.next();
    if (first.done) return null;
    format = sniffFormat(first.value);
    source = prepend(first.value, bytes);
  }
  counts.format = format;
  const batchSize = opts.batchSize ?? Math.min(DEFAULT_BATCH, opts.rowsPerTransaction ?? DEFAULT_BATCH);
  const vctx: ValidateContext = {
    known: opts.known,
    now: opts.now,
    runId: counts.runId,
    backfillDays: opts.backfillDays,
    assumeUtc: opts.assumeUtc,
    assumeUtcOption: opts.assumeUtcOption,
  };
  const map = opts.map ?? new Map();
  const label = input.label;
  const rejects = opts.rejects;

  const reject = (line: number, fieldName: string, reason: string): string => {
    counts.rejected++;
    opts.onReject(`${label}:${line}: ${fieldName}: ${reason}`);
    return `${fieldName}: ${reason}`;
  };

  if (format === 'csv') {
    let rows: CsvRows | null = null;
    let delimiter: Delimiter = ',';
    return readCsv(
      source,
      batchSize,
      {
      record(fields, line) {
        if (!rows) {
          rows = new CsvRows(
            fields.map((h) => h.trim()),
            map,
          );
          requireColumns(rows, label, delimiter, opts.delimiter === undefined || opts.delimiter === 'auto');
          rejects?.beginCsv(rows.header, label);
          return;
        }
        counts.read++;
        const v = rows.checkWidth(fields) ?? validateEvent(rows.event(fields), vctx);
        if (Array.isArray(v)) return add(v);
        const reason = reject(line, v.field === 'row' ? 'row' : rows.fieldName(v.field as Field), v.reason);
        rejects?.csv(fields, line, reason);
      },
      unreadable(line, message, cells, field) {
        if (!rows) throw new BillingError('invalid_input', `${label}:${line}: the header row ${message}`);
        counts.read++;
        const reason = reject(line, field === undefined ? 'row' : (rows.header[field] ?? 'row'), message);
        rejects?.csv(cells, line, reason);
      },
      },
      { delimiter: opts.delimiter, onDelimiter: (d) => (delimiter = d) },
    );
  }

  const json = new JsonRows(map, format === 'cloudevents');
  rejects?.beginJson();
  return readLines(source, batchSize, {
    record(text, line) {
      counts.read++;
      const { obj, result } = jsonRecord(text, json, vctx);
      if (Array.isArray(result)) return add(result);
      const field = obj === null || result.field === 'line' || result.field === 'row' ? result.field : json.fieldName(obj, result.field);
      const reason = reject(line, field, result.reason);
      rejects?.json(obj ?? text, line, reason);
    },
    unreadable(line, message, raw) {
      counts.read++;
      const reason = reject(line, 'line', message);
      rejects?.json(raw, line, reason);
    },
  });
}

/** Parse one JSON line and validate it; `obj` is null when the line is not a JSON object. */
function jsonRecord(text: string, json: JsonRows, vctx: ValidateContext): { obj: Record<string, unknown> | null; result: EventRow | Invalid } {
  let parsed: unknown;
  try {
    parsed = parseJson(text);
  } catch (e) {
    if (!(e instanceof JsonSyntaxError)) throw e;
    return { obj: null, result: { field: 'line', reason: e instanceof JsonTooDeep ? e.message : `is not valid JSON (${e.message})` } };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed) || parsed instanceof JsonNumber) {
    return { obj: null, result: { field: 'line', reason: 'is not a JSON object' } };
  }
  const obj = parsed as Record<string, unknown>;
  return { obj, result: validateEvent(json.event(obj), vctx) };
}

const SHOWN_DELIMITER: Record<Delimiter, string> = { ',': '","', ';': '";"', '\t': 'tab', '|': '"|"' };
const DELIMITER_FLAG: Record<Delimiter, string> = { ',': ',', ';': "';'", '\t': "'\\t'", '|': "'|'" };

/**
 * Without a tenant or a feature column every row would be rejected: say so once instead,
 * with the delimiter the header was split on and any other one it contains.
 */
function requireColumns(rows: CsvRows, label: string, delimiter: Delimiter, detected: boolean): void {
  for (const f of ['tenant_id', 'feature'] as const) {
    if (rows.has(f)) continue;
    const line = rows.header.join(delimiter);
    const other = ([';', '\t', '|', ','] as const).find((d) => d !== delimiter && line.includes(d));
    const split = `split on ${SHOWN_DELIMITER[delimiter]}${detected ? ' (detected)' : ''}`;
    const hint = other ? `; the header was ${split} but contains ${SHOWN_DELIMITER[other]}: try --delimiter ${DELIMITER_FLAG[other]}` : `; the header was ${split}`;
    throw new BillingError(
      'invalid_input',
      `${label}: the header has no ${f} column (looked for ${ALIASES[f].join(', ')}); name one with --map COLUMN=${f}${hint}`,
    );
  }
}

async function* prepend(first: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  yield* rest;
}
