import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';
import type { LockOptions, LockResult } from './lock.js';

const everyInterval = (renew: () => Promise<void>, ms: number) => {
  const timer = setInterval(() => void renew(), ms);
  timer.unref();
  return () => clearInterval(timer);
};

/** Held by a lease row in job_locks, renewed while fn runs; a lease whose owner crashed expires and can be taken over. */
export async function withLease<T>(db: Db, job: string, opts: LockOptions, fn: () => Promise<T>): Promise<LockResult<T>> {
  const started = performance.now();
  const clock = opts.clock ?? (() => opts.now + Math.round(performance.now() - started));

  const taken = await withTx(db, async (trx) => {
    const t = clock();
    const row = await trx('job_locks').where({ job }).first();
    if (!row) {
      await trx('job_locks').insert({ job, owner: opts.owner, acquired_at: t, expires_at: t + opts.ttlMs });
      return null;
    }
    if (row.owner !== opts.owner && Number(row.expires_at) > t) {
      return { holder: String(row.owner), expiresAt: Number(row.expires_at) };
    }
    // Free, ours, or expired (its owner crashed or stalled): take it over.
    await trx('job_locks').where({ job }).update({ owner: opts.owner, acquired_at: t, expires_at: t + opts.ttlMs });
    return null;
  });
  if (taken) return { acquired: false, ...taken };

  let lost = false;
  let renewing: Promise<void> = Promise.resolve();
  const renew = async () => {
    try {
      const n = await db
        .knex('job_locks')
        .where({ job, owner: opts.owner })
        .update({ expires_at: clock() + opts.ttlMs });
      if (n === 0 && !lost) {
        lost = true;
        opts.onLeaseLost?.();
      }
    } catch {
      // A busy database delays a renewal; the next one (or the release) catches up.
    }
  };
  const stopRenewing = (opts.every ?? everyInterval)(
    () => (renewing = renewing.then(renew)),
    Math.max(50, Math.floor(opts.ttlMs / 3)),
  );
  try {
    return { acquired: true, value: await fn() };
  } finally {
    stopRenewing();
    await renewing;
    await db.knex('job_locks').where({ job, owner: opts.owner }).delete();
  }
}
