import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Db } from '../storage/db.js';
import { withTx } from '../storage/sql.js';

/**
 * One run of a job at a time across every process sharing the database (DESIGN.md §10).
 * PostgreSQL: a session advisory lock held on one dedicated connection, released by the
 * server if the process dies. SQLite: a lease row in job_locks, renewed while the job runs;
 * a lease whose owner crashed expires and can be taken over.
 */

export interface LockOptions {
  /** Who holds the lock (see newOwnerId); written to the lease row. */
  owner: string;
  /** The caller's notion of "now" when acquiring. */
  now: number;
  /** Lease length (SQLite); renewed every ttlMs / 3 while fn runs. */
  ttlMs: number;
  /**
   * Wall clock for lease times. Leases are about process liveness, not billing time, so the
   * CLI passes Date.now; without it, time advances from `now` by the elapsed monotonic time.
   */
  clock?: () => number;
  /** Called once if a renewal finds the lease was taken over (the job ran past its lease). */
  onLeaseLost?: () => void;
  /** Calls `renew` every `ms` until the returned stop is called (setInterval; tests drive it). */
  every?: (renew: () => Promise<void>, ms: number) => () => void;
}

const everyInterval = (renew: () => Promise<void>, ms: number) => {
  const timer = setInterval(() => void renew(), ms);
  timer.unref();
  return () => clearInterval(timer);
};

export type LockResult<T> =
  | { acquired: true; value: T }
  | { acquired: false; holder: string | null; expiresAt: number | null };

export const LOCK_PREFIX = 'billing-job:';

/** A process-unique lock owner id: host, pid and a nonce (two handles in one process differ). */
export function newOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export async function withJobLock<T>(
  db: Db,
  jobName: string,
  opts: LockOptions,
  fn: () => Promise<T>,
): Promise<LockResult<T>> {
  return db.dialect === 'pg' ? withAdvisoryLock(db, jobName, fn) : withLease(db, jobName, opts, fn);
}

interface PgConnection {
  query(sql: string, params: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

async function withAdvisoryLock<T>(db: Db, jobName: string, fn: () => Promise<T>): Promise<LockResult<T>> {
  // The schema is part of the key: advisory locks are per database, and separate schemas
  // are separate deployments (and separate test databases).
  const key = `hashtextextended(current_schema() || $1, 0)`;
  const name = `:${LOCK_PREFIX}${jobName}`;
  const client = db.knex.client as { acquireConnection(): Promise<PgConnection>; releaseConnection(c: PgConnection): Promise<void> };
  const conn = await client.acquireConnection();
  try {
    const got = await conn.query(`select pg_try_advisory_lock(${key}) as ok`, [name]);
    if (!got.rows[0]?.ok) return { acquired: false, holder: await advisoryHolder(conn, key, name), expiresAt: null };
    try {
      return { acquired: true, value: await fn() };
    } finally {
      await conn.query(`select pg_advisory_unlock(${key})`, [name]);
    }
  } finally {
    await client.releaseConnection(conn);
  }
}

/** The backend holding the advisory lock, for the "busy" message (best effort). */
async function advisoryHolder(conn: PgConnection, key: string, name: string): Promise<string | null> {
  // A bigint advisory key shows in pg_locks as classid (high 32 bits) and objid (low 32 bits).
  const r = await conn.query(
    `with k as (select ${key} as v)
     select a.pid, a.client_addr::text as addr from k, pg_locks l
       join pg_stat_activity a on a.pid = l.pid
      where l.locktype = 'advisory' and l.granted and l.objsubid = 1
        and l.classid::bigint = ((k.v >> 32) & 4294967295) and l.objid::bigint = (k.v & 4294967295)
      limit 1`,
    [name],
  );
  const row = r.rows[0];
  return row ? `postgres backend pid ${row.pid}${row.addr ? ` from ${row.addr}` : ''}` : null;
}

async function withLease<T>(db: Db, jobName: string, opts: LockOptions, fn: () => Promise<T>): Promise<LockResult<T>> {
  const started = performance.now();
  const clock = opts.clock ?? (() => opts.now + Math.round(performance.now() - started));
  const job = `${LOCK_PREFIX}${jobName}`;

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
