import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import type { Db } from './db.js';
import { copyFrom, copyLine } from './pg-copy.js';

/**
 * Bulk "insert unless the unique key exists" for the ingest hot path, inside the caller's
 * transaction. knex's query builder costs more per row than the database does here, so each
 * dialect takes its fastest road: SQLite runs one cached prepared statement per row, at once;
 * PostgreSQL collects rows as COPY text and, on flush, copies them into a temporary staging
 * table and moves them with one INSERT ... SELECT ... ON CONFLICT DO NOTHING.
 */
export interface BulkTarget {
  table: string;
  columns: readonly string[];
  /** The unique key whose conflicts mean "duplicate, skip". */
  conflict: readonly string[];
}

export interface BulkWriter {
  /** Queue (PostgreSQL) or insert (SQLite) one row, values in `columns` order. */
  add(row: readonly unknown[]): void;
  /**
   * Send what is queued. On PostgreSQL it returns once the previous flush has completed and
   * this one is under way, so the caller can prepare the next rows meanwhile.
   */
  flush(): Promise<void>;
  /** Wait for everything sent; after it, `inserted` is final. Call before commit. */
  settle(): Promise<void>;
  /** Rows given to add(). */
  readonly added: number;
  /** Rows actually inserted (the others were duplicates). */
  readonly inserted: number;
}

/** `db`: a handle bound to the caller's transaction (tx()). */
export async function openBulkWriter(db: Db, target: BulkTarget): Promise<BulkWriter> {
  if (!db.trx) throw new Error('openBulkWriter needs a transaction handle');
  const conn = await (db.trx as unknown as { client: { acquireConnection(): Promise<unknown> } }).client.acquireConnection();
  return db.dialect === 'sqlite'
    ? new SqliteWriter(conn as BetterSqlite3.Database, target)
    : new PgWriter(conn as pg.ClientBase, target);
}

const quote = (id: string) => `"${id.replace(/"/g, '""')}"`;

const sqliteStatements = new WeakMap<BetterSqlite3.Database, Map<string, BetterSqlite3.Statement>>();

/**
 * Page cache for a connection that bulk-writes, in KiB (SQLite's default is 2 MB). Rows
 * spread over all tenants land all over the (tenant_id, ...) indexes; with the default cache
 * nearly every insert reads and evicts a page.
 */
export const SQLITE_BULK_CACHE_KIB = 32 * 1024;

class SqliteWriter implements BulkWriter {
  added = 0;
  inserted = 0;
  private readonly stmt: BetterSqlite3.Statement;

  constructor(conn: BetterSqlite3.Database, t: BulkTarget) {
    const sql =
      `INSERT INTO ${quote(t.table)} (${t.columns.map(quote).join(', ')}) ` +
      `VALUES (${t.columns.map(() => '?').join(', ')}) ON CONFLICT (${t.conflict.map(quote).join(', ')}) DO NOTHING`;
    let cache = sqliteStatements.get(conn);
    if (!cache) {
      sqliteStatements.set(conn, (cache = new Map()));
      conn.pragma(`cache_size = -${SQLITE_BULK_CACHE_KIB}`);
    }
    let stmt = cache.get(sql);
    if (!stmt) cache.set(sql, (stmt = conn.prepare(sql)));
    this.stmt = stmt;
  }

  add(row: readonly unknown[]): void {
    this.inserted += this.stmt.run(row as unknown[]).changes;
    this.added++;
  }

  async flush(): Promise<void> {}
  async settle(): Promise<void> {}
}

class PgWriter implements BulkWriter {
  added = 0;
  inserted = 0;
  private lines: string[] = [];
  private inflight: Promise<void> | null = null;
  private readonly stage: string;
  private readonly cols: string;

  constructor(
    private readonly client: pg.ClientBase,
    private readonly t: BulkTarget,
  ) {
    this.stage = quote(`${t.table}_stage`);
    this.cols = t.columns.map(quote).join(', ');
  }

  add(row: readonly unknown[]): void {
    this.lines.push(copyLine(row));
    this.added++;
  }

  async flush(): Promise<void> {
    if (this.lines.length === 0) return;
    await this.settle();
    const data = Buffer.from(this.lines.join(''), 'utf8');
    this.lines = [];
    const p = this.send(data).then((n) => {
      this.inserted += n;
    });
    p.catch(() => {}); // awaited by settle(); this only keeps it from counting as unhandled meanwhile
    this.inflight = p;
  }

  async settle(): Promise<void> {
    const p = this.inflight;
    this.inflight = null;
    if (p) await p;
  }

  private async send(data: Buffer): Promise<number> {
    const { client, stage, cols, t } = this;
    // Temporary, per connection; emptied on commit, and by TRUNCATE between flushes of one
    // long transaction. IF NOT EXISTS because a rolled-back transaction also undoes its creation.
    await client.query(
      `CREATE TEMP TABLE IF NOT EXISTS ${stage} ON COMMIT DELETE ROWS AS SELECT ${cols} FROM ${quote(t.table)} WITH NO DATA`,
    );
    await copyFrom(client, `COPY ${stage} (${cols}) FROM STDIN`, data);
    const res = await client.query(
      `INSERT INTO ${quote(t.table)} (${cols}) SELECT ${cols} FROM ${stage} ON CONFLICT (${t.conflict.map(quote).join(', ')}) DO NOTHING`,
    );
    await client.query(`TRUNCATE ${stage}`);
    return res.rowCount ?? 0;
  }
}
