import type { Db } from '../storage/db.js';

class Rollback<T> extends Error {
  constructor(readonly value: T) {
    super('rollback');
  }
}

/**
 * Run fn against a Db whose queries all go through one write transaction, then roll it back:
 * dry runs and previews execute the real code path (aggregation included) and leave no trace.
 * Nested withTx calls become savepoints.
 */
export async function inRolledBackTx<T>(db: Db, fn: (tdb: Db) => Promise<T>): Promise<T> {
  try {
    await db.tx(async (tdb) => {
      throw new Rollback(await fn(tdb));
    });
  } catch (e) {
    if (e instanceof Rollback) return e.value as T;
    throw e;
  }
  throw new Error('unreachable: the transaction always rolls back');
}

/** A unique-constraint violation (PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE). */
export function isUniqueViolation(e: unknown): boolean {
  const err = e as { code?: string; message?: string } | null;
  return err?.code === '23505' || err?.code === 'SQLITE_CONSTRAINT_UNIQUE' || /UNIQUE constraint failed/.test(err?.message ?? '');
}
