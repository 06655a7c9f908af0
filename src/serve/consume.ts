import { checkEntitlement, type CheckResult } from '../entitlements/check.js';
import { recordUsage, type RecordResult, type UsageInput } from '../ingest/record.js';
import type { Db } from '../storage/db.js';
import { lockForTransaction } from '../storage/xact-lock.js';

export interface ConsumeResult {
  check: CheckResult;
  /** What happened to the event; null when the check denied it and nothing was recorded. */
  record: RecordResult | null;
}

class NotADuplicate extends Error {}

/** The event's metadata as an object (a feature priced by dimension checks the value it carries); {} when none or unreadable. */
function metadataOf(input: UsageInput): Record<string, unknown> {
  let m: unknown = input.metadata;
  if (typeof m === 'string') {
    try {
      m = JSON.parse(m);
    } catch {
      m = null;
    }
  }
  return m && typeof m === 'object' && !Array.isArray(m) ? (m as Record<string, unknown>) : {};
}

/**
 * Check and record one event atomically: under a per-(tenant, feature) lock, in one
 * transaction, so concurrent callers cannot all pass the check and overshoot a hard stop.
 * A denied event that was already recorded (a retry of an earlier success) reports the
 * duplicate instead of the denial, so retries stay idempotent.
 */
export async function consumeUsage(db: Db, input: UsageInput, opts: { now: number; backfillDays?: number }): Promise<ConsumeResult> {
  return db.tx(async (tdb) => {
    const trx = tdb.trx!;
    await lockForTransaction(tdb, 'billing.consume', JSON.stringify([input.tenantId, input.featureKey]));
    const quantity = input.quantity === undefined || input.quantity === null ? undefined : String(input.quantity);
    const check = await checkEntitlement(db, { tenantId: input.tenantId, featureKey: input.featureKey, quantity, metadata: metadataOf(input) }, { now: opts.now, trx });
    if (check.allowed) {
      const [record] = await recordUsage(db, [input], { now: opts.now, trx, backfillDays: opts.backfillDays });
      return { check, record };
    }
    // Probe inside a savepoint: keep nothing unless the event turns out to be a duplicate.
    try {
      const record = await trx.transaction(async (sp) => {
        const [r] = await recordUsage(db, [input], { now: opts.now, trx: sp, backfillDays: opts.backfillDays });
        if (r.status !== 'duplicate') throw new NotADuplicate();
        return r;
      });
      return { check, record };
    } catch (e) {
      if (e instanceof NotADuplicate) return { check, record: null };
      throw e;
    }
  });
}
