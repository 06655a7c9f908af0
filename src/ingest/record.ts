import type { Knex } from 'knex';
import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import type { Field } from './fields.js';
import { loadKnownIdsFor } from './known.js';
import { EVENT_COLUMNS, validateEvent, type EventRow } from './validate.js';

/** One event from `billing record`, the HTTP API or the library. */
export interface UsageInput {
  tenantId: string;
  featureKey: string;
  quantity?: string | number;
  eventId?: string;
  sourceService?: string;
  sourceEntityId?: string;
  userId?: string;
  /** ISO 8601 with offset, or epoch seconds / milliseconds; default: `now`. */
  occurredAt?: string | number;
  /** A JSON object, or its text (as in a CSV cell or on the command line). */
  metadata?: Record<string, unknown> | string;
}

export type RecordResult =
  | { status: 'inserted'; idempotencyKey: string }
  | { status: 'duplicate'; idempotencyKey: string }
  | { status: 'rejected'; field: string; reason: string };

/** Reject messages name the caller's field, not the column. */
const INPUT_NAME: Record<Field, keyof UsageInput> = {
  tenant_id: 'tenantId',
  feature: 'featureKey',
  quantity: 'quantity',
  occurred_at: 'occurredAt',
  event_id: 'eventId',
  source_service: 'sourceService',
  source_entity_id: 'sourceEntityId',
  user_id: 'userId',
  metadata: 'metadata',
};

const CHUNK = 500; // rows per INSERT: well under SQLite's bound-parameter limit

/** Events received together at one instant (one API request, one `billing record`). */
export interface UsageBatch {
  inputs: UsageInput[];
  now: Instant;
}

/**
 * Record events with the same validation and idempotency key as file ingest, one result per
 * input in order. A key seen earlier (in the database or earlier in `inputs`) is a duplicate.
 */
export async function recordUsage(
  db: Db,
  inputs: UsageInput[],
  opts: { now: Instant; trx?: Knex.Transaction; backfillDays?: number },
): Promise<RecordResult[]> {
  return (await recordUsageBatches(db, [{ inputs, now: opts.now }], opts))[0];
}

/**
 * Several batches in one transaction and one INSERT: each validated at its own `now`, with
 * its own results; duplicates as if the batches were recorded one after another, in order.
 */
export async function recordUsageBatches(
  db: Db,
  batches: UsageBatch[],
  opts: { trx?: Knex.Transaction; backfillDays?: number } = {},
): Promise<RecordResult[][]> {
  const all = batches.flatMap((b) => b.inputs);
  const run = async (q: Knex.Transaction): Promise<RecordResult[][]> => {
    const known = await loadKnownIdsFor(
      q,
      [...new Set(all.map((i) => i.tenantId).filter((t): t is string => typeof t === 'string'))],
      [...new Set(all.map((i) => i.featureKey).filter((f): f is string => typeof f === 'string'))],
    );
    const verdicts = batches.map((b) => b.inputs.map((input) => validateEvent(rawEvent(input), { known, now: b.now, runId: null, backfillDays: opts.backfillDays })));
    const rows = verdicts.flat().filter((v): v is EventRow => Array.isArray(v));
    const pair = (r: { 0: string; 1: string }) => `${r[0]}\u0000${r[1]}`;
    const inserted = new Set<string>();
    for (let i = 0; i < rows.length; i += CHUNK) {
      const chunk = rows.slice(i, i + CHUNK).map((r) => Object.fromEntries(EVENT_COLUMNS.map((c, j) => [c, r[j]])));
      const returned: Array<{ tenant_id: string; idempotency_key: string }> = await q('usage_events')
        .insert(chunk)
        .onConflict(['tenant_id', 'idempotency_key'])
        .ignore()
        .returning(['tenant_id', 'idempotency_key']);
      for (const r of returned) inserted.add(pair([r.tenant_id, r.idempotency_key]));
    }
    return verdicts.map((vs) =>
      vs.map((v): RecordResult => {
        if (!Array.isArray(v)) {
          return { status: 'rejected', field: v.field in INPUT_NAME ? INPUT_NAME[v.field as Field] : v.field, reason: v.reason };
        }
        return { status: inserted.delete(pair(v)) ? 'inserted' : 'duplicate', idempotencyKey: v[1] };
      }),
    );
  };
  return opts.trx ? run(opts.trx) : withTx(db, run);
}

function rawEvent(input: UsageInput) {
  return {
    tenant_id: input.tenantId,
    feature: input.featureKey,
    quantity: input.quantity,
    occurred_at: input.occurredAt,
    event_id: input.eventId,
    source_service: input.sourceService,
    source_entity_id: input.sourceEntityId,
    user_id: input.userId,
    metadata: input.metadata,
  };
}
