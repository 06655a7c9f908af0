import { randomBytes } from 'node:crypto';
import pLimit from 'p-limit';
import { BillingError } from '../domain/errors.js';
import type { Instant } from '../domain/period.js';
import { toIso } from '../domain/period.js';
import { writeAudit } from '../storage/audit.js';
import type { Db } from '../storage/db.js';
import { skipLocked } from '../storage/sql.js';
import { SIGNATURE_HEADER, signatureHeader } from './signature.js';

/**
 * Delivery of the event outbox (DESIGN.md §15). A run claims due deliveries by leasing them
 * in a short transaction (PostgreSQL: FOR UPDATE SKIP LOCKED; SQLite: the write lock), POSTs
 * the stored body outside any transaction, then records the answer only while it still holds
 * the lease. So two runs never send one delivery at once; a run that dies leaves its rows to
 * the next one once the lease has passed (the receiver may then see the event twice, with
 * the same id and body).
 */

export const MAX_ATTEMPTS = 8;
export const BACKOFF_BASE_MS = 30_000;
export const BACKOFF_CAP_MS = 6 * 3_600_000;
export const TIMEOUT_MS = 10_000;
/** Longer than a batch of timed-out requests, so a live run never loses its lease. */
const LEASE_MS = 10 * 60_000;
const BATCH = 200;

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** Full jitter: a uniform wait in [0, min(cap, base·2^(attempts-1))). */
export function backoffMs(attempts: number, random: () => number): number {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.floor(ceiling * random());
}

export interface WebhookDeliverOptions {
  now: Instant;
  /** The clock the signature's timestamp is read from (default: `now`). */
  clock?: () => number;
  fetch?: typeof fetch;
  random?: () => number;
  timeoutMs?: number;
  maxAttempts?: number;
  /** Lease owner; one per run. */
  owner?: string;
  concurrency?: number;
}

export interface WebhookDeliverReport {
  attempted: number;
  delivered: number;
  retryLater: number;
  /** Deliveries that used their last attempt in this run (dead letters). */
  failed: number;
  errors: Array<{ delivery: string; event: string; endpoint: string; message: string }>;
}

interface Claimed {
  id: string;
  eventId: string;
  endpointId: string;
  attempts: number;
  url: string;
  secret: string;
  body: string;
}

async function claim(db: Db, owner: string, now: Instant): Promise<Claimed[]> {
  return db.tx(async (t) => {
    const q = t.knex('webhook_deliveries as d')
      .join('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
      .where('d.status', 'pending')
      .andWhere('d.next_attempt_at', '<=', now)
      .andWhere('e.enabled', true)
      .andWhere((w) => w.whereNull('d.lease_until').orWhere('d.lease_until', '<=', now))
      .orderBy([{ column: 'd.next_attempt_at' }, { column: 'd.created_at' }, { column: 'd.id' }])
      .limit(BATCH)
      .select('d.id');
    const ids = (await skipLocked(t, q, 'd')).map((r) => String(r.id));
    if (ids.length === 0) return [];
    await t.knex('webhook_deliveries').whereIn('id', ids).update({ lease_owner: owner, lease_until: now + LEASE_MS });
    const rows = await t.knex('webhook_deliveries as d')
      .join('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
      .join('webhook_events as v', 'v.id', 'd.event_id')
      .whereIn('d.id', ids)
      .select('d.id', 'd.event_id', 'd.endpoint_id', 'd.attempts', 'e.url', 'e.secret', 'v.body');
    const byId = new Map(rows.map((r) => [String(r.id), r]));
    return ids.map((id) => {
      const r = byId.get(id)!;
      return { id, eventId: r.event_id, endpointId: r.endpoint_id, attempts: Number(r.attempts), url: r.url, secret: r.secret, body: r.body };
    });
  });
}

type Answer = { ok: true; status: number } | { ok: false; status: number | null; error: string };

async function post(c: Claimed, o: Required<Pick<WebhookDeliverOptions, 'clock' | 'fetch' | 'timeoutMs'>>): Promise<Answer> {
  const t = Math.floor(o.clock() / 1000);
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), o.timeoutMs);
  try {
    const res = await o.fetch(c.url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [SIGNATURE_HEADER]: signatureHeader(c.secret, t, c.body), 'user-agent': 'billing-webhooks/1' },
      body: c.body,
      signal: ctrl.signal,
      redirect: 'manual', // a redirect is not an acknowledgement
    });
    await res.body?.cancel().catch(() => undefined);
    if (res.status >= 200 && res.status < 300) return { ok: true, status: res.status };
    return { ok: false, status: res.status, error: `HTTP ${res.status}` };
  } catch (e) {
    if (ctrl.signal.aborted) return { ok: false, status: null, error: `timeout: no answer within ${o.timeoutMs} ms` };
    const err = e as Error & { cause?: { code?: string; message?: string } };
    return { ok: false, status: null, error: `network: ${err.cause?.code ?? err.cause?.message ?? err.message}` };
  } finally {
    clearTimeout(timer);
  }
}

/** Send every delivery due at `now`, once each; failures wait out the backoff (the next run retries). */
export async function deliverWebhooks(db: Db, opts: WebhookDeliverOptions): Promise<WebhookDeliverReport> {
  const owner = opts.owner ?? `whd-${randomBytes(6).toString('hex')}`;
  const o = { clock: opts.clock ?? (() => opts.now), fetch: opts.fetch ?? globalThis.fetch, timeoutMs: opts.timeoutMs ?? TIMEOUT_MS };
  const random = opts.random ?? Math.random;
  const maxAttempts = opts.maxAttempts ?? MAX_ATTEMPTS;
  const limit = pLimit(Math.max(1, opts.concurrency ?? 4));
  const report: WebhookDeliverReport = { attempted: 0, delivered: 0, retryLater: 0, failed: 0, errors: [] };
  for (;;) {
    const batch = await claim(db, owner, opts.now);
    if (batch.length === 0) break;
    // Successes are recorded together after the batch (one statement per status code, not
    // one round trip each); a run dying before that re-sends them, which at-least-once allows.
    const delivered = new Map<number, string[]>();
    await Promise.all(
      batch.map((c) =>
        limit(async () => {
          report.attempted++;
          const a = await post(c, o);
          const attempts = c.attempts + 1;
          const mine = db.knex('webhook_deliveries').where({ id: c.id, lease_owner: owner });
          const common = { attempts, last_status_code: a.status, lease_owner: null, lease_until: null, updated_at: opts.now };
          if (a.ok) {
            delivered.set(a.status, [...(delivered.get(a.status) ?? []), c.id]);
            report.delivered++;
            return;
          }
          const dead = attempts >= maxAttempts;
          await mine.update({
            ...common,
            status: dead ? 'failed' : 'pending',
            // At least 1 ms later: a retry is never due again within the run that failed it.
            next_attempt_at: dead ? opts.now : opts.now + Math.max(1, backoffMs(attempts, random)),
            last_error: a.error,
          });
          if (dead) report.failed++;
          else report.retryLater++;
          report.errors.push({ delivery: c.id, event: c.eventId, endpoint: c.endpointId, message: a.error });
        }),
      ),
    );
    for (const [status, ids] of delivered) {
      await db.knex('webhook_deliveries')
        .whereIn('id', ids)
        .where('lease_owner', owner)
        .update({
          status: 'delivered',
          attempts: db.knex.raw('attempts + 1'),
          delivered_at: opts.now,
          last_error: null,
          last_status_code: status,
          lease_owner: null,
          lease_until: null,
          updated_at: opts.now,
        });
    }
    if (batch.length < BATCH) break;
  }
  return report;
}

export interface DeliveryView {
  id: string;
  event: string;
  type: string;
  tenant: string | null;
  endpoint: string;
  url: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: string | null;
  deliveredAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
}

export async function listDeliveries(db: Db, opts: { failedOnly?: boolean; limit?: number } = {}): Promise<DeliveryView[]> {
  const q = db.knex('webhook_deliveries as d')
    .join('webhook_events as v', 'v.id', 'd.event_id')
    .join('webhook_endpoints as e', 'e.id', 'd.endpoint_id')
    .select('d.*', 'v.type', 'e.url')
    .orderBy([{ column: 'd.created_at', order: 'desc' }, { column: 'd.id', order: 'desc' }])
    .limit(opts.limit ?? 100);
  if (opts.failedOnly) q.where('d.status', 'failed');
  return (await q).map((r) => ({
    id: r.id,
    event: r.event_id,
    type: r.type,
    tenant: r.tenant_id ?? null,
    endpoint: r.endpoint_id,
    url: r.url,
    status: r.status,
    attempts: Number(r.attempts),
    nextAttemptAt: r.status === 'pending' ? toIso(Number(r.next_attempt_at)) : null,
    deliveredAt: r.delivered_at == null ? null : toIso(Number(r.delivered_at)),
    lastStatusCode: r.last_status_code == null ? null : Number(r.last_status_code),
    lastError: r.last_error ?? null,
    createdAt: toIso(Number(r.created_at)),
  }));
}

/** A delivery (dead, delivered or waiting) becomes pending and due now with a fresh attempt budget; the body is the stored one. */
export async function redeliver(db: Db, id: string, opts: { now: Instant; actor: string }): Promise<{ before: DeliveryStatus }> {
  return db.tx(async (t) => {
    const row = await t.knex('webhook_deliveries').where({ id }).first();
    if (!row) throw new BillingError('not_found', `no webhook delivery "${id}"; list them with \`billing webhook deliveries\``);
    await t.knex('webhook_deliveries').where({ id }).update({ status: 'pending', attempts: 0, next_attempt_at: opts.now, lease_owner: null, lease_until: null, updated_at: opts.now });
    await writeAudit(t.knex, {
      at: opts.now, actor: opts.actor, tenantId: row.tenant_id ?? null, entity: 'webhook_delivery', entityId: id, action: 'redeliver',
      before: { status: row.status, attempts: Number(row.attempts) }, after: { status: 'pending', event: row.event_id, endpoint: row.endpoint_id },
    });
    return { before: row.status as DeliveryStatus };
  });
}

export interface WebhookBacklog {
  pending: number;
  due: number;
  failed: number;
}

export async function webhookBacklog(db: Db, now: Instant): Promise<WebhookBacklog> {
  const rows = await db.knex('webhook_deliveries').whereIn('status', ['pending', 'failed']).select('status').count('* as n').groupBy('status');
  const by = new Map(rows.map((r) => [String(r.status), Number(r.n)]));
  const [due] = await db.knex('webhook_deliveries').where('status', 'pending').andWhere('next_attempt_at', '<=', now).count('* as n');
  return { pending: by.get('pending') ?? 0, due: Number(due?.n ?? 0), failed: by.get('failed') ?? 0 };
}
