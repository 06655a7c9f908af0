import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { insertIgnoringConflicts, type BulkTarget } from '../storage/bulk-insert.js';
import { withTx } from '../storage/sql.js';
import { ALIASES, type Field, type FieldMap } from './fields.js';
import { CsvRows, JsonRows } from './formats.js';
import { loadKnownIds } from './known.js';
import { readCsv } from './readers/csv.js';
import { readLines } from './readers/lines.js';
import type { RecordBatch } from './readers/batch.js';
import { RejectsFile } from './rejects.js';
import { inputBytes, sniffFormat, type Format, type IngestInput } from './source.js';
import { EVENT_COLUMNS, validateEvent, type EventRow, type Invalid, type ValidateContext } from './validate.js';
import { finishRuns, startRuns, updateRun, type RunCounts } from './runs.js';

export interface IngestProgress extends RunCounts {
  /** The input being read (its label). */
  source: string;
  /** Bytes read from that input so far (before decompression). */
  bytes: number;
  totalBytes?: number;
}

export interface IngestOptions {
  now: Instant;
  /** Overrides the format implied by each input's name (or sniffed from its first bytes). */
  format?: Format;
  /** `--map col=field`. */
  map?: FieldMap;
  /** All-or-nothing: any rejected record and nothing is inserted. */
  strict?: boolean;
  rejectsPath?: string;
  /** Records read and validated at a time (default 5,000, or rowsPerTransaction if smaller). */
  batchSize?: number;
  /** Rows per transaction, in whole batches (default: SQLite 50,000, PostgreSQL 5,000). */
  rowsPerTransaction?: number;
  /** How many reject messages to return in the summary (default 10). */
  maxMessages?: number;
  onProgress?: (p: IngestProgress) => void;
  /** Milliseconds since the run started, for seconds / rows per second and finished_at. */
  elapsedMs?: () => number;
}

export interface InputSummary extends RunCounts {
  source: string;
  runId: number;
  format: Format | null;
}

export interface IngestSummary extends RunCounts {
  seconds: number;
  rowsPerSecond: number;
  strict: boolean;
  /** --strict and something was rejected: nothing was kept. */
  rolledBack: boolean;
  /** The first reject messages ("usage.csv:17: quantity: "-3" is negative"). */
  messages: string[];
  inputs: InputSummary[];
}

const USAGE_EVENTS: BulkTarget = { table: 'usage_events', columns: EVENT_COLUMNS, conflict: ['tenant_id', 'idempotency_key'] };
const DEFAULT_BATCH = 5000;
const DEFAULT_TX_ROWS: Record<Db['dialect'], number> = { sqlite: 50_000, pg: 5000 };

/** Thrown inside the --strict transaction to roll it back; never escapes ingest(). */
class StrictRollback extends Error {}

/**
 * `billing ingest`: stream each input, validate every record, and insert the valid ones in
 * batches, one transaction per batch (or one for everything with `strict`). Duplicates
 * (same tenant and idempotency key, within the input or from an earlier run) are counted
 * and skipped. Memory stays flat: at most two batches are held at a time.
 */
export async function ingest(db: Db, inputs: IngestInput[], opts: IngestOptions): Promise<IngestSummary> {
  const elapsed = opts.elapsedMs ?? (() => 0);
  const known = await loadKnownIds(db.knex);
  const rejects = opts.rejectsPath ? new RejectsFile(opts.rejectsPath) : null;
  const runIds = await startRuns(db, inputs.map((i) => i.name), opts.now);
  const summaries: InputSummary[] = inputs.map((input, i) => ({
    source: input.name,
    runId: runIds[i],
    format: null,
    read: 0,
    inserted: 0,
    duplicates: 0,
    rejected: 0,
  }));
  const messages: string[] = [];
  const maxMessages = opts.maxMessages ?? 10;
  let rolledBack = false;

  const runAll = async (trx: Knex.Transaction | null) => {
    for (let i = 0; i < inputs.length; i++) {
      await ingestInput(db, trx, inputs[i], summaries[i], {
        ...opts,
        known,
        rejects,
        onReject: (m) => messages.length < maxMessages && messages.push(m),
      });
    }
  };

  try {
    if (opts.strict) {
      try {
        await withTx(db, async (trx) => {
          await runAll(trx);
          if (summaries.some((s) => s.rejected > 0)) throw new StrictRollback();
        });
      } catch (e) {
        if (!(e instanceof StrictRollback)) throw e;
        rolledBack = true;
        for (const s of summaries) s.inserted = 0;
      }
    } else {
      await runAll(null);
    }
    await rejects?.close();
  } catch (e) {
    await rejects?.close().catch(() => {});
    await finishRuns(db, summaries, 'failed', opts.now + Math.round(elapsed())).catch(() => {});
    throw e;
  }
  await finishRuns(db, summaries, 'completed', opts.now + Math.round(elapsed()));

  const total = summaries.reduce(
    (t, s) => ({
      read: t.read + s.read,
      inserted: t.inserted + s.inserted,
      duplicates: t.duplicates + s.duplicates,
      rejected: t.rejected + s.rejected,
    }),
    { read: 0, inserted: 0, duplicates: 0, rejected: 0 },
  );
  const seconds = elapsed() / 1000;
  return {
    ...total,
    seconds: Math.round(seconds * 1000) / 1000,
    rowsPerSecond: seconds > 0 ? Math.round(total.read / seconds) : 0,
    strict: Boolean(opts.strict),
    rolledBack,
    messages,
    inputs: summaries,
  };
}

interface InputContext extends IngestOptions {
  known: ValidateContext['known'];
  rejects: RejectsFile | null;
  onReject: (message: string) => void;
}

async function ingestInput(
  db: Db,
  trx: Knex.Transaction | null,
  input: IngestInput,
  counts: InputSummary,
  opts: InputContext,
): Promise<void> {
  const counter = { bytes: 0 };
  const batches = validBatches(input, counts, counter, opts)[Symbol.asyncIterator]();
  const progress = () => opts.onProgress?.({ ...countsOf(counts), source: input.label, bytes: counter.bytes, totalBytes: input.size });
  const insert = async (q: Knex.Transaction, rows: EventRow[]) => {
    const inserted = await insertIgnoringConflicts(db, q, USAGE_EVENTS, rows);
    counts.inserted += inserted;
    counts.duplicates += rows.length - inserted;
  };

  if (trx) {
    // --strict: everything in the caller's one transaction.
    for (let b = await batches.next(); !b.done; b = await batches.next()) {
      await insert(trx, b.value);
      progress();
    }
    await updateRun(trx, counts.runId, counts);
    return;
  }
  // Several batches per transaction: parsing holds one batch in memory at a time, while a
  // commit (on SQLite: rewriting every index page the batch touched) is paid less often.
  // A crash loses the open transaction only; a rerun skips whatever was committed.
  const txRows = opts.rowsPerTransaction ?? DEFAULT_TX_ROWS[db.dialect];
  for (let done = false; !done; ) {
    await withTx(db, async (q) => {
      for (let n = 0; n < txRows; ) {
        const b = await batches.next();
        if (b.done) {
          done = true;
          break;
        }
        await insert(q, b.value);
        n += b.value.length;
        progress();
      }
      await updateRun(q, counts.runId, counts);
    });
  }
}

/**
 * The input's valid events, one array per batch read; rejected records are counted, reported
 * and written to the rejects file on the way.
 */
async function* validBatches(
  input: IngestInput,
  counts: InputSummary,
  counter: { bytes: number },
  opts: InputContext,
): AsyncGenerator<EventRow[]> {
  const bytes = inputBytes(input.open(), counter);
  let format = opts.format ?? input.format;
  let source: AsyncIterable<Buffer> = bytes;
  if (!format) {
    const first = await bytes.next();
    if (first.done) return;
    format = sniffFormat(first.value);
    source = prepend(first.value, bytes);
  }
  counts.format = format;
  const batchSize = opts.batchSize ?? Math.min(DEFAULT_BATCH, opts.rowsPerTransaction ?? DEFAULT_BATCH);
  const vctx: ValidateContext = { known: opts.known, now: opts.now, runId: counts.runId };
  const map = opts.map ?? new Map();
  const label = input.label;

  const reject = (line: number, fieldName: string, reason: string) => {
    counts.rejected++;
    opts.onReject(`${label}:${line}: ${fieldName}: ${reason}`);
    return `${fieldName}: ${reason}`;
  };

  if (format === 'csv') {
    let rows: CsvRows | null = null;
    for await (const batch of readCsv(source, batchSize)) {
      const valid: EventRow[] = [];
      readErrors(batch, counts, reject, opts.rejects && ((line, reason) => opts.rejects!.csv([], line, reason)));
      for (let i = 0; i < batch.items.length; i++) {
        const fields = batch.items[i];
        if (!rows) {
          rows = new CsvRows(fields.map((h) => h.trim()), map);
          requireColumns(rows, label);
          opts.rejects?.beginCsv(rows.header, label);
          continue;
        }
        counts.read++;
        const line = batch.lines[i];
        const v = rows.checkWidth(fields) ?? validateEvent(rows.event(fields), vctx);
        if (Array.isArray(v)) valid.push(v);
        else {
          const reason = reject(line, v.field === 'row' ? 'row' : rows.fieldName(v.field as Field), v.reason);
          opts.rejects?.csv(fields, line, reason);
        }
      }
      await opts.rejects?.flush();
      yield valid;
    }
  } else {
    const json = new JsonRows(map, format === 'cloudevents');
    opts.rejects?.beginJson();
    for await (const batch of readLines(source, batchSize)) {
      const valid: EventRow[] = [];
      readErrors(batch, counts, reject, opts.rejects && ((line, reason) => opts.rejects!.json(null, line, reason)));
      for (let i = 0; i < batch.items.length; i++) {
        counts.read++;
        const line = batch.lines[i];
        const { obj, result } = jsonRecord(batch.items[i], json, vctx);
        if (Array.isArray(result)) {
          valid.push(result);
          continue;
        }
        const field = obj === null || result.field === 'line' || result.field === 'row' ? result.field : json.fieldName(obj, result.field);
        const reason = reject(line, field, result.reason);
        opts.rejects?.json(obj ?? batch.items[i], line, reason);
      }
      await opts.rejects?.flush();
      yield valid;
    }
  }
}

/** Parse one JSON line and validate it; `obj` is null when the line is not a JSON object. */
function jsonRecord(
  text: string,
  json: JsonRows,
  vctx: ValidateContext,
): { obj: Record<string, unknown> | null; result: EventRow | Invalid } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    return { obj: null, result: { field: 'line', reason: `is not valid JSON (${(e as Error).message})` } };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    return { obj: null, result: { field: 'line', reason: 'is not a JSON object' } };
  }
  const obj = parsed as Record<string, unknown>;
  return { obj, result: validateEvent(json.event(obj), vctx) };
}

function readErrors(
  batch: RecordBatch<unknown>,
  counts: RunCounts,
  reject: (line: number, field: string, reason: string) => string,
  keep: ((line: number, reason: string) => void) | null,
): void {
  for (const e of batch.errors) {
    counts.read++;
    const reason = reject(e.line, 'row', e.message);
    keep?.(e.line, reason);
  }
}

/** Without a tenant or a feature column every row would be rejected: say so once instead. */
function requireColumns(rows: CsvRows, label: string): void {
  for (const f of ['tenant_id', 'feature'] as const) {
    if (!rows.has(f)) {
      throw new BillingError(
        'invalid_input',
        `${label}: the header has no ${f} column (looked for ${ALIASES[f].join(', ')}); name one with --map COLUMN=${f}`,
      );
    }
  }
}

function countsOf(c: RunCounts): RunCounts {
  return { read: c.read, inserted: c.inserted, duplicates: c.duplicates, rejected: c.rejected };
}

async function* prepend(first: Buffer, rest: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  yield first;
  yield* rest;
}
