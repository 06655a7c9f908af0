import type { Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import type { FieldMap } from './fields.js';
import { ingestInput } from './ingest-input.js';
import { loadKnownIds } from './known.js';
import { RejectsFile } from './rejects.js';
import { finishRuns, IngestInterrupted, startRuns, type RunCounts } from './runs.js';
import type { Format, IngestInput } from './source.js';
import type { Delimiter } from './readers/csv.js';

export { IngestInterrupted };

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
  /** CSV field separator (default 'auto': a header without a comma may use ";" or a tab). */
  delimiter?: Delimiter | 'auto';
  /** Read zone-less date-times as UTC (`--assume-utc`); else they are rejected. */
  assumeUtc?: boolean;
  /** The option named in the reject of a zone-less time. */
  assumeUtcOption?: string;
  /** All-or-nothing: any rejected record and nothing is inserted. */
  strict?: boolean;
  rejectsPath?: string;
  /** Records between two writes/progress reports (default 5,000, or rowsPerTransaction if smaller). */
  batchSize?: number;
  /** Records per transaction, in whole batches (default: SQLite 50,000, PostgreSQL 5,000). */
  rowsPerTransaction?: number;
  /** How many reject messages to return in the summary (default 10). */
  maxMessages?: number;
  /** Days an event may lie before its tenant's creation (default DEFAULT_BACKFILL_DAYS). */
  backfillDays?: number;
  onProgress?: (p: IngestProgress) => void;
  /** Milliseconds since the run started, for seconds / rows per second and finished_at. */
  elapsedMs?: () => number;
  /** Aborted (the CLI on SIGINT/SIGTERM): commit what was read, stop, throw IngestInterrupted. */
  signal?: AbortSignal;
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

/** Thrown inside the --strict transaction to roll it back; never escapes ingest(). */
class StrictRollback extends Error {}

/**
 * `billing ingest`: stream each input, validate every record, and insert the valid ones,
 * committing every `rowsPerTransaction` records (or once for everything with `strict`).
 * Duplicates (same tenant and idempotency key, within the input or from an earlier run) are
 * counted and skipped. Memory stays flat whatever the input size.
 */
export async function ingest(db: Db, inputs: IngestInput[], opts: IngestOptions): Promise<IngestSummary> {
  const elapsed = opts.elapsedMs ?? (() => 0);
  const known = await loadKnownIds(db.knex);
  if (opts.rejectsPath) {
    // Caught here when the names tell; otherwise when the second kind of input starts.
    const kinds = new Set(inputs.map((i) => opts.format ?? i.format).filter((f) => f !== undefined).map((f) => f === 'csv'));
    if (kinds.size > 1) throw new BillingError('usage', '--rejects needs inputs of one kind: all CSV, or all JSON lines');
  }
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
        onReject: (m: string) => {
          if (messages.length < maxMessages) messages.push(m);
        },
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
    // Aborting may also end a reader with an error (stdin closed under it): still an interruption.
    if (e instanceof IngestInterrupted || opts.signal?.aborted) {
      if (opts.strict) for (const s of summaries) s.inserted = 0; // its one transaction rolled back
      await finishRuns(db, summaries, 'interrupted', opts.now + Math.round(elapsed())).catch(() => {});
      throw new IngestInterrupted(summaries.reduce((n, s) => n + s.inserted, 0));
    }
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
