import type { Knex } from 'knex';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import type { Db } from './db.js';
import { copyFrom, copyText } from './pg-copy.js';

/**
 * Bulk "insert unless the unique key exists" for the ingest hot path, inside the caller's
 * transaction. Returns how many rows were inserted (the rest were duplicates). knex's query
 * builder costs more per row than the database does here, so each dialect takes its fastest
 * road: SQLite a cached prepared statement on the raw connection, PostgreSQL COPY into a
 * temporary staging table then one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
 */
export interface BulkTarget {
  table: string;
  columns: readonly string[];
  /** The unique key whose conflicts mean "duplicate, skip". */
  conflict: readonly string[];
}

export async function insertIgnoringConflicts(
  db: Db,
  trx: Knex.Transaction,
  target: BulkTarget,
  rows: readonly (readonly unknown[])[],
): Promise<number> {
  if (rows.length === 0) return 0;
  const conn = await (trx as unknown as { client: { acquireConnection(): Promise<unknown> } }).client.acquireConnection();
  return db.dialect === 'sqlite'
    ? insertSqlite(conn as BetterSqlite3.Database, target, rows)
    : insertPg(conn as pg.ClientBase, target, rows);
}

const quote = (id: string) => `"${id.replace(/"/g, '""')}"`;

const sqliteStatements = new WeakMap<BetterSqlite3.Database, Map<string, BetterSqlite3.Statement>>();

function insertSqlite(conn: BetterSqlite3.Database, t: BulkTarget, rows: readonly (readonly unknown[])[]): number {
  const sql =
    `INSERT INTO ${quote(t.table)} (${t.columns.map(quote).join(', ')}) ` +
    `VALUES (${t.columns.map(() => '?').join(', ')}) ON CONFLICT (${t.conflict.map(quote).join(', ')}) DO NOTHING`;
  let cache = sqliteStatements.get(conn);
  if (!cache) sqliteStatements.set(conn, (cache = new Map()));
  let stmt = cache.get(sql);
  if (!stmt) cache.set(sql, (stmt = conn.prepare(sql)));
  let inserted = 0;
  for (const r of rows) inserted += stmt.run(r as unknown[]).changes;
  return inserted;
}

async function insertPg(client: pg.ClientBase, t: BulkTarget, rows: readonly (readonly unknown[])[]): Promise<number> {
  const stage = quote(`${t.table}_stage`);
  const cols = t.columns.map(quote).join(', ');
  // Temporary, per connection; emptied on commit (and by TRUNCATE between batches of one
  // long transaction). IF NOT EXISTS because a rolled-back batch also rolls back its creation.
  await client.query(
    `CREATE TEMP TABLE IF NOT EXISTS ${stage} ON COMMIT DELETE ROWS AS SELECT ${cols} FROM ${quote(t.table)} WITH NO DATA`,
  );
  await copyFrom(client, `COPY ${stage} (${cols}) FROM STDIN`, copyText(rows));
  const res = await client.query(
    `INSERT INTO ${quote(t.table)} (${cols}) SELECT ${cols} FROM ${stage} ` +
      `ON CONFLICT (${t.conflict.map(quote).join(', ')}) DO NOTHING`,
  );
  await client.query(`TRUNCATE ${stage}`);
  return res.rowCount ?? 0;
}
