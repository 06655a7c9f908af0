import type { Knex } from 'knex';
import type { Db } from './db.js';

/**
 * Serialize transactions on (namespace, key) until the caller's transaction ends.
 * PostgreSQL: a transaction-scoped advisory lock in the two-int4 key space, which cannot
 * collide with single-bigint advisory locks (the job locks). SQLite: nothing more to do,
 * because withTx already holds the database write lock, which serializes every writer.
 */
export async function lockForTransaction(db: Db, trx: Knex.Transaction, namespace: string, key: string): Promise<void> {
  if (db.dialect === 'pg') await trx.raw('SELECT pg_advisory_xact_lock(hashtext(?), hashtext(?))', [namespace, key]);
}
