import type { Db } from './db.js';

/**
 * Serialize transactions on (namespace, key) until the transaction of `db` (a tx() handle) ends.
 * PostgreSQL: a transaction-scoped advisory lock in the two-int4 key space, which cannot
 * collide with single-bigint advisory locks (the job locks). SQLite: nothing more to do,
 * because withTx already holds the database write lock, which serializes every writer.
 */
export async function lockForTransaction(db: Db, namespace: string, key: string): Promise<void> {
  if (!db.trx) throw new Error('lockForTransaction needs a transaction handle');
  if (db.dialect === 'pg') await db.trx.raw('SELECT pg_advisory_xact_lock(hashtext(?), hashtext(?))', [namespace, key]);
}
