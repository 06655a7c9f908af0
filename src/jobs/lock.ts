import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { forDialect, type Db } from '../storage/db.js';
import { withAdvisoryLock } from './lock-pg.js';
import { withLease } from './lock-sqlite.js';

/**
 * One run of a job at a time across every process sharing the database (DESIGN.md §10).
 * PostgreSQL: a session advisory lock held on one dedicated connection, released by the
 * server if the process dies (lock-pg.ts). SQLite: a lease row in job_locks, renewed while
 * the job runs; a lease whose owner crashed expires and can be taken over (lock-sqlite.ts).
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
  const lock = forDialect(db, { pg: withAdvisoryLock, sqlite: withLease });
  return lock(db, `${LOCK_PREFIX}${jobName}`, opts, fn);
}

