import type { Db } from '../storage/db.js';
import type { LockOptions, LockResult } from './lock.js';

interface PgConnection {
  query(sql: string, params: unknown[]): Promise<{ rows: Array<Record<string, unknown>> }>;
}

/** Held by a session advisory lock on one dedicated connection; the server releases it if the process dies. */
export async function withAdvisoryLock<T>(db: Db, job: string, _opts: LockOptions, fn: () => Promise<T>): Promise<LockResult<T>> {
  // The schema is part of the key: advisory locks are per database, and separate schemas
  // are separate deployments (and separate test databases).
  const key = `hashtextextended(current_schema() || $1, 0)`;
  const name = `:${job}`;
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
