import type { Instant } from '../domain/period.js';
import type { Db } from '../storage/db.js';

/**
 * The outbox: one row per Stripe call, keyed by (tenant, idempotency key). Rows are
 * written in the transaction of the local change that needs them and are only ever moved
 * forward: pending → sent, or pending → failed (Stripe refused) → pending (retry) … → dead.
 */

export type OutboxKind =
  | 'customer'
  | 'invoice'
  | 'invoice_item'
  | 'invoice_finalize'
  | 'credit_note'
  | 'invoice_pay'
  | 'invoice_uncollectible'
  | 'invoice_void'
  | 'meter_event';
export type OutboxStatus = 'pending' | 'sent' | 'failed' | 'dead';

/** Delivery order: each kind needs the Stripe ids the previous ones produce. */
export const KIND_ORDER: OutboxKind[] = [
  'customer',
  'invoice',
  'invoice_item',
  'invoice_finalize',
  // Before the payment attempt, so Stripe never collects what a credit note took off.
  'credit_note',
  'invoice_pay',
  'invoice_uncollectible',
  'invoice_void',
  'meter_event',
];

export interface OutboxRow {
  tenantId: string;
  idempotencyKey: string;
  kind: OutboxKind;
  localRef: string;
  payload: any;
  status: OutboxStatus;
  attempts: number;
  nextAttemptAt: Instant;
  firstAttemptAt: Instant | null;
  lastError: string | null;
  /** Stripe may have executed the last call (no answer, a 409 or a 5xx): past the key window it is not re-sent. */
  outcomeUnknown: boolean;
  stripeId: string | null;
  createdAt: Instant;
  updatedAt: Instant;
}

export interface NewOutboxRow {
  tenantId: string;
  idempotencyKey: string;
  kind: OutboxKind;
  localRef: string;
  payload: unknown;
}

export const DEFAULT_MAX_ATTEMPTS = 8;
const BACKOFF_BASE_MS = 60_000;
const BACKOFF_CAP_MS = 6 * 3_600_000;

export function rowFromDb(r: Record<string, any>): OutboxRow {
  const n = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    tenantId: r.tenant_id,
    idempotencyKey: r.idempotency_key,
    kind: r.kind,
    localRef: r.local_ref,
    payload: JSON.parse(r.payload),
    status: r.status,
    attempts: Number(r.attempts),
    nextAttemptAt: Number(r.next_attempt_at),
    firstAttemptAt: n(r.first_attempt_at),
    lastError: r.last_error ?? null,
    outcomeUnknown: Number(r.outcome_unknown) === 1,
    stripeId: r.stripe_id ?? null,
    createdAt: Number(r.created_at),
    updatedAt: Number(r.updated_at),
  };
}

/** Insert rows that are not there yet (same key = same call); returns how many were new. */
export async function enqueue(db: Db, rows: NewOutboxRow[], now: Instant): Promise<number> {
  let inserted = 0;
  for (let i = 0; i < rows.length; i += 500) {
    const batch = rows.slice(i, i + 500);
    const existing = new Set(
      (
        await db.knex('stripe_outbox')
          .select('tenant_id', 'idempotency_key')
          .whereIn('tenant_id', [...new Set(batch.map((r) => r.tenantId))])
          .whereIn('idempotency_key', batch.map((r) => r.idempotencyKey))
      ).map((r) => `${r.tenant_id}\u0000${r.idempotency_key}`),
    );
    const fresh = batch.filter((r) => !existing.has(`${r.tenantId}\u0000${r.idempotencyKey}`));
    if (fresh.length === 0) continue;
    await db.knex('stripe_outbox')
      .insert(
        fresh.map((r) => ({
          tenant_id: r.tenantId,
          idempotency_key: r.idempotencyKey,
          kind: r.kind,
          local_ref: r.localRef,
          payload: JSON.stringify(r.payload),
          status: 'pending',
          attempts: 0,
          next_attempt_at: now,
          created_at: now,
          updated_at: now,
        })),
      )
      .onConflict(['tenant_id', 'idempotency_key'])
      .ignore();
    inserted += fresh.length;
  }
  return inserted;
}

/** Pending rows of one kind whose time has come, oldest first, a page after `after`. */
export async function dueRows(
  db: Db,
  kind: OutboxKind,
  now: Instant,
  opts: { tenantId?: string; limit?: number; after?: OutboxRow | null } = {},
): Promise<OutboxRow[]> {
  const query = db.knex('stripe_outbox')
    .where({ kind, status: 'pending' })
    .andWhere('next_attempt_at', '<=', now)
    .orderBy(['created_at', 'tenant_id', 'idempotency_key'])
    .limit(opts.limit ?? 500);
  if (opts.tenantId) query.andWhere('tenant_id', opts.tenantId);
  const a = opts.after;
  if (a) {
    query.andWhere((w) =>
      w
        .where('created_at', '>', a.createdAt)
        .orWhere((x) => x.where('created_at', a.createdAt).andWhere('tenant_id', '>', a.tenantId))
        .orWhere((x) => x.where({ created_at: a.createdAt, tenant_id: a.tenantId }).andWhere('idempotency_key', '>', a.idempotencyKey)),
    );
  }
  return (await query).map(rowFromDb);
}

function where(db: Db, row: OutboxRow) {
  return db.knex('stripe_outbox').where({ tenant_id: row.tenantId, idempotency_key: row.idempotencyKey });
}

/**
 * Note the first use of the key before calling: Stripe forgets keys 24 h after that. Until an
 * answer is recorded the outcome is unknown (the run may die mid-call).
 */
export async function markAttemptStarted(db: Db, row: OutboxRow, now: Instant): Promise<void> {
  if (row.firstAttemptAt !== null) return;
  await where(db, row).whereNull('first_attempt_at').update({ first_attempt_at: now, outcome_unknown: true });
  row.firstAttemptAt = now;
  row.outcomeUnknown = true;
}

/** The key's 24 h at Stripe start again with this call (every earlier answer was a refusal, so nothing was saved). */
export async function restartKeyWindow(db: Db, row: OutboxRow, now: Instant): Promise<void> {
  await where(db, row).update({ first_attempt_at: now });
  row.firstAttemptAt = now;
}

/** Returns false when another process recorded this row first (its effects are already applied). */
export async function markSent(db: Db, row: OutboxRow, stripeId: string | null, now: Instant, note: string | null = null): Promise<boolean> {
  const n = await where(db, row).where('status', 'pending').update({
    status: 'sent',
    attempts: row.attempts + 1,
    stripe_id: stripeId,
    last_error: note,
    outcome_unknown: false,
    first_attempt_at: row.firstAttemptAt ?? now,
    updated_at: now,
  });
  return n > 0;
}

/** Exponential backoff from one minute, capped at six hours, with ±25 % jitter. */
export function backoffMs(attempts: number, random: () => number): number {
  const base = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.max(0, attempts - 1));
  return Math.round(base * (0.75 + 0.5 * random()));
}

export type FailureOutcome = 'retry_later' | 'failed' | 'dead';

/**
 * Record a failed attempt (one delivery run's try, its quick in-run retries included). Retryable failures stay pending until the backoff has passed;
 * refusals become failed (re-driven by `billing stripe retry`); either becomes dead once the
 * row has failed maxAttempts times.
 */
export async function markFailed(
  db: Db,
  row: OutboxRow,
  failure: { retryable: boolean; message: string; outcomeUnknown?: boolean },
  now: Instant,
  opts: { maxAttempts: number; random: () => number },
): Promise<FailureOutcome> {
  const outcomeUnknown = failure.outcomeUnknown ?? false;
  const attempts = row.attempts + 1;
  const outcome: FailureOutcome = attempts >= opts.maxAttempts ? 'dead' : failure.retryable ? 'retry_later' : 'failed';
  await where(db, row).update({
    status: outcome === 'retry_later' ? 'pending' : outcome,
    attempts,
    next_attempt_at: outcome === 'retry_later' ? now + backoffMs(attempts, opts.random) : now,
    last_error: failure.message,
    outcome_unknown: outcomeUnknown,
    first_attempt_at: row.firstAttemptAt ?? now,
    updated_at: now,
  });
  row.attempts = attempts;
  row.outcomeUnknown = outcomeUnknown;
  return outcome;
}

/**
 * Give up on a row that can never succeed (e.g. usage older than Stripe's window). Reviving
 * it (`stripe retry --dead`) is the operator's word that it is to be sent, so the outcome is no longer unknown.
 */
export async function markDead(db: Db, row: OutboxRow, reason: string, now: Instant): Promise<void> {
  await where(db, row).update({ status: 'dead', last_error: reason, outcome_unknown: false, updated_at: now });
  row.outcomeUnknown = false;
}

/** Move a row's next attempt (e.g. usage not yet inside Stripe's timestamp window). */
export async function postpone(db: Db, row: OutboxRow, until: Instant, now: Instant): Promise<void> {
  await where(db, row).update({ next_attempt_at: until, updated_at: now });
}

export interface OutboxProblems {
  /** Rows Stripe (or recovery) refused, waiting for `billing stripe retry`. */
  failed: number;
  /** Rows given up on, waiting for an operator (`billing stripe retry --dead`). */
  dead: number;
  /** Open invoices whose Stripe copy is a draft with no finalize call left to send (lines missing or refused). */
  stalledDrafts: number;
}

/** What needs a person, for exit codes and `billing status --strict`. */
export async function outboxProblems(db: Db, tenantId?: string): Promise<OutboxProblems> {
  const rows = db.knex('stripe_outbox').whereIn('status', ['failed', 'dead']).select('status').count({ n: '*' }).groupBy('status');
  if (tenantId) rows.andWhere('tenant_id', tenantId);
  const by = new Map((await rows).map((r: any) => [String(r.status), Number(r.n)]));
  const drafts = db.knex('stripe_invoices as s')
    .join('invoices as i', (j) => j.on('i.tenant_id', 's.tenant_id').andOn('i.id', 's.invoice_id'))
    .where('i.status', 'open')
    .andWhere('s.stripe_status', 'draft')
    .whereNotExists(
      db.knex('stripe_outbox as o')
        .select(db.knex.raw('1'))
        .whereRaw('o.tenant_id = s.tenant_id')
        .andWhere('o.kind', 'invoice_finalize')
        .andWhere('o.status', 'pending')
        .andWhereRaw('o.local_ref = s.invoice_id'),
    )
    .count({ n: '*' });
  if (tenantId) drafts.andWhere('s.tenant_id', tenantId);
  const [d] = await drafts;
  return { failed: by.get('failed') ?? 0, dead: by.get('dead') ?? 0, stalledDrafts: Number((d as any)?.n ?? 0) };
}

/** One line naming what needs a person, or null when nothing does. */
export function problemsText(p: OutboxProblems): string | null {
  if (p.failed + p.dead + p.stalledDrafts === 0) return null;
  const parts = [
    p.failed ? `${p.failed} call(s) refused (failed)` : '',
    p.dead ? `${p.dead} call(s) given up on (dead)` : '',
    p.stalledDrafts ? `${p.stalledDrafts} open invoice(s) left as drafts at Stripe` : '',
  ].filter(Boolean);
  return `Stripe: ${parts.join(', ')}; see \`billing stripe status\``;
}

/** Make failed (and optionally dead) rows pending and due now; returns how many. */
export async function requeue(db: Db, now: Instant, opts: { tenantId?: string; includeDead?: boolean }): Promise<number> {
  const statuses = opts.includeDead ? ['failed', 'dead'] : ['failed'];
  const query = db.knex('stripe_outbox').whereIn('status', statuses);
  if (opts.tenantId) query.andWhere('tenant_id', opts.tenantId);
  // A revived dead row gets a fresh attempt budget; a failed one keeps its count.
  return query.update({
    status: 'pending',
    next_attempt_at: now,
    attempts: opts.includeDead ? db.knex.raw(`CASE WHEN status = 'dead' THEN 0 ELSE attempts END`) : db.knex.raw('attempts'),
    updated_at: now,
  });
}
