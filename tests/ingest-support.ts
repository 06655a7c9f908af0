import { Readable } from 'node:stream';
import type { Db } from '../src/storage/db.js';
import { ingest, type IngestOptions, type IngestSummary } from '../src/ingest/ingest.js';
import { streamInput } from '../src/ingest/source.js';
import { asText } from '../src/storage/sql.js';

export const NOW = '2026-11-21T12:00:00Z';
export const NOW_MS = Date.parse(NOW);

/** Tenants t1, t2 and features API_CALL, STORAGE_GB (metered) and PREMIUM_VOICE (boolean). */
export async function seedIngest(db: Db): Promise<void> {
  await db.knex('tenants').insert([
    { id: 't1', created_at: 0 },
    { id: 't2', created_at: 0 },
  ]);
  const feature = (key: string, type: string) => ({ key, name: key, type, aggregation: 'sum', created_at: 0, updated_at: 0 });
  await db.knex('features').insert([
    feature('API_CALL', 'metered'),
    feature('STORAGE_GB', 'metered'),
    feature('PREMIUM_VOICE', 'boolean'),
  ]);
}

/** Ingest `text` as if it came from a file called `name`. */
export function ingestText(db: Db, name: string, text: string | Buffer, opts: Partial<IngestOptions> = {}): Promise<IngestSummary> {
  const input = streamInput(name, Readable.from([Buffer.isBuffer(text) ? text : Buffer.from(text)]));
  return ingest(db, [input], { now: NOW_MS, ...opts });
}

export interface StoredEvent {
  tenant_id: string;
  idempotency_key: string;
  feature_key: string;
  quantity: string;
  occurred_at: number;
  event_id: string | null;
  source_service: string | null;
  source_entity_id: string | null;
  user_id: string | null;
  metadata: string | null;
}

export async function storedEvents(db: Db): Promise<StoredEvent[]> {
  const rows = await db
    .knex('usage_events')
    .select('tenant_id', 'idempotency_key', 'feature_key', asText(db, 'quantity').wrap('(', ') as quantity'), 'occurred_at')
    .select('event_id', 'source_service', 'source_entity_id', 'user_id', 'metadata')
    .orderBy('seq');
  return rows.map((r) => ({ ...r, occurred_at: Number(r.occurred_at) }));
}

export async function totals(db: Db): Promise<{ count: number; sum: string }> {
  const [r] = await db
    .knex('usage_events')
    .select(db.knex.raw('COUNT(*) as count'), asText(db, 'COALESCE(SUM(quantity), 0)').wrap('(', ') as sum'));
  return { count: Number(r.count), sum: String(r.sum) };
}
