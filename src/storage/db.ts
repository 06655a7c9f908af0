import { accessSync, closeSync, constants as fsConstants, existsSync, openSync, readFileSync, readSync } from 'node:fs';
import { dirname } from 'node:path';
import knexFactory, { type Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import { MigrationSource } from './migrations.js';
import { parseDbUrl, redactUrl, type DbTarget } from './url.js';

export type Dialect = 'sqlite' | 'pg';

/**
 * A storage handle: the database, its dialect, and the way its results come back. Code
 * outside src/storage takes one of these (never a bare knex plus a dialect): `tx()` gives a
 * handle of the same type bound to a transaction, and `rows()` hides the drivers' result shapes.
 */
export interface Db {
  /** The pool, or the transaction of a handle from tx(). */
  knex: Knex;
  dialect: Dialect;
  /** SQLite opened read-only (sqlite:PATH?mode=ro, or a file or directory we cannot write). */
  readonly?: boolean;
  /** URL safe to print (password removed). */
  display: string;
  /** The transaction of a handle from tx() (null on the pool's handle). */
  readonly trx: Knex.Transaction | null;
  /**
   * Run fn in a write transaction (inside one: a savepoint) with a handle bound to it. On
   * SQLite the first statement takes the write lock, so a second process waits on
   * busy_timeout instead of failing with SQLITE_BUSY on lock upgrade.
   */
  tx<T>(fn: (t: Db) => Promise<T>, config?: TxConfig): Promise<T>;
  /** The rows of a raw statement (or a Raw built on this handle), whatever the driver returns. */
  rows<T = Record<string, unknown>>(sql: string | Knex.Raw, bindings?: readonly Knex.RawBinding[]): Promise<T[]>;
  close(): Promise<void>;
}

/** A read-only snapshot transaction (PostgreSQL's repeatable read; SQLite's are snapshots already). */
export type TxConfig = { snapshot: true };

/** The implementation for this handle's database, among per-dialect modules behind one interface. */
export function forDialect<T>(db: Pick<Db, 'dialect'>, impls: Record<Dialect, T>): T {
  return impls[db.dialect];
}

/** db itself, or its handle bound to q when q is a transaction (for callers still holding a bare knex). */
export function handleOn(db: Db, q: Knex | Knex.Transaction): Db {
  return q === db.knex ? db : makeHandle(q, { dialect: db.dialect, display: db.display, readonly: db.readonly });
}

/** A handle on this knex (pool or transaction). */
export function makeHandle(
  knex: Knex,
  props: { dialect: Dialect; display: string; readonly?: boolean; close?: () => Promise<void> },
): Db {
  const { dialect } = props;
  const handle: Db = {
    knex,
    dialect,
    display: props.display,
    readonly: props.readonly,
    trx: knex.isTransaction ? (knex as Knex.Transaction) : null,
    close: props.close ?? (async () => {}),
    tx(fn, config) {
      const body = async (trx: Knex.Transaction) => {
        if (dialect === 'sqlite' && !config?.snapshot) await trx.raw(`UPDATE db_meta SET value = value WHERE key = 'write_lock'`);
        return fn(makeHandle(trx, { dialect, display: props.display, readonly: props.readonly }));
      };
      return config?.snapshot && dialect === 'pg'
        ? knex.transaction(body, { isolationLevel: 'repeatable read', readOnly: true })
        : knex.transaction(body);
    },
    async rows<T>(sql: string | Knex.Raw, bindings?: readonly Knex.RawBinding[]): Promise<T[]> {
      const res = typeof sql === 'string' ? await knex.raw(sql, (bindings ?? []) as Knex.RawBinding[]) : await sql;
      return (dialect === 'pg' ? (res as { rows: T[] }).rows : res) as T[];
    },
  };
  return handle;
}

export type MigrationPolicy =
  /** SQLite: run pending migrations; PostgreSQL: fail with a hint to run `billing migrate`. */
  | 'auto'
  /** Open without looking at migrations (the `migrate` command itself). */
  | 'none'
  /** As 'auto', and PostgreSQL with no migration applied yet is migrated too (`billing demo`). */
  | 'fresh';

let pgTypesConfigured = false;

/**
 * pg probes for a Cloudflare Worker when it loads: without `navigator` (Node < 21) it builds
 * a fetch Response, which loads Node's whole fetch stack — a fifth of `billing check`'s
 * startup on PostgreSQL. For the duration of the import, a navigator that says "Node.js"
 * answers the probe first; it is gone again once pg is loaded.
 */
async function importPg(): Promise<typeof import('pg').default> {
  if ('navigator' in globalThis) return (await import('pg')).default;
  Object.defineProperty(globalThis, 'navigator', { value: { userAgent: 'Node.js' }, configurable: true });
  try {
    return (await import('pg')).default;
  } finally {
    delete (globalThis as { navigator?: unknown }).navigator;
  }
}

async function configurePgTypes(): Promise<void> {
  if (pgTypesConfigured) return;
  const pg = await importPg();
  // int8 (counts, epoch-ms instants) as JS numbers. Quantities that may exceed 2^53 are
  // always selected as text (see sql.ts), never through this parser.
  pg.types.setTypeParser(20, (v: string) => Number(v));
  pgTypesConfigured = true;
}

interface SqliteConnection {
  pragma(s: string): unknown;
  prepare(sql: string): unknown;
}

const STATEMENT_CACHE_SIZE = 256;

/**
 * knex prepares every query anew on better-sqlite3, and preparing costs as much as running a
 * small indexed query (a third of `checkEntitlement`). Reuse statements per connection, LRU.
 * Safe because knex runs each with all()/run() to completion and sets no per-statement mode.
 */
function cachePreparedStatements(conn: SqliteConnection): void {
  const prepare = conn.prepare.bind(conn);
  const cache = new Map<string, unknown>();
  conn.prepare = (sql: string) => {
    let stmt = cache.get(sql);
    if (stmt) cache.delete(sql);
    else {
      stmt = prepare(sql);
      if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
    }
    cache.set(sql, stmt);
    return stmt;
  };
}

/**
 * knex's logger writes to stdout (console.log), which would break `--json`. Its warnings go to
 * stderr instead; the connect failure it logs with a stack is dropped because openDb reports it
 * as one line.
 */
function stderrLog(msg: unknown): void {
  const text = typeof msg === 'string' ? msg : msg instanceof Error ? msg.message : String(msg);
  if (text.startsWith('Acquire connection error')) return;
  process.stderr.write(`billing: knex: ${text.split('\n')[0]}\n`);
}

export const knexLog = { warn: stderrLog, error: stderrLog, deprecate: stderrLog, debug: stderrLog };

function writable(path: string): boolean {
  try {
    accessSync(path, fsConstants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** How to open a SQLite file: read-write, read-only, or (read-only in a read-only directory) a snapshot. */
function sqliteMode(target: Extract<DbTarget, { dialect: 'sqlite' }>): 'rw' | 'ro' | 'snapshot' {
  if (!existsSync(target.filename)) return 'rw'; // created (or refused) by the driver
  const dir = dirname(target.filename);
  if (!target.readonly && writable(target.filename) && writable(dir)) return 'rw';
  // A WAL database is read through its -shm file; in a directory we cannot write, and without
  // one already there, SQLite cannot open it at all: read a copy in memory instead.
  if (!writable(dir) && !existsSync(`${target.filename}-shm`) && walMode(target.filename)) return 'snapshot';
  return 'ro';
}

/** Bytes 18-19 of the header are 2 for WAL. */
function walMode(file: string): boolean {
  const b = Buffer.alloc(2);
  const fd = openSync(file, 'r');
  try {
    readSync(fd, b, 0, 2, 18);
  } finally {
    closeSync(fd);
  }
  return b[0] === 2 && b[1] === 2;
}

/** The file's bytes as a rollback-journal database (memory cannot hold a WAL database). */
function snapshot(file: string): Buffer {
  const b = readFileSync(file);
  b[18] = 1;
  b[19] = 1;
  return b;
}

export function knexConfig(target: DbTarget): Knex.Config {
  const migrations = { migrationSource: new MigrationSource(), tableName: 'knex_migrations' };
  if (target.dialect === 'sqlite') {
    const mode = sqliteMode(target);
    return {
      client: 'better-sqlite3',
      // knex hands the filename to better-sqlite3, which also opens a Buffer (the snapshot).
      connection: { filename: (mode === 'snapshot' ? snapshot(target.filename) : target.filename) as string, options: { readonly: mode !== 'rw' } },
      useNullAsDefault: true,
      log: knexLog,
      migrations,
      pool: {
        afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
          try {
            if (mode === 'rw') {
              conn.pragma('journal_mode = WAL');
              conn.pragma('synchronous = NORMAL');
            }
            conn.pragma('busy_timeout = 10000');
            conn.pragma('foreign_keys = ON');
            cachePreparedStatements(conn);
            done(null, conn);
          } catch (e) {
            done(e as Error, conn);
          }
        },
      },
    };
  }
  return {
    client: 'pg',
    connection: { connectionString: target.connectionString },
    searchPath: target.schema ? [target.schema] : undefined,
    pool: { min: 0, max: 10 },
    log: knexLog,
    migrations: { ...migrations, schemaName: target.schema ?? undefined },
  };
}

export async function openDb(url: string, policy: MigrationPolicy = 'auto'): Promise<Db> {
  const target = parseDbUrl(url);
  if (target.dialect === 'pg') await configurePgTypes();
  const config = knexConfig(target);
  const knex = knexFactory(config);
  const readonly = Boolean((config.connection as { options?: { readonly?: boolean } }).options?.readonly);
  const db = makeHandle(knex, { dialect: target.dialect, display: target.display, readonly, close: () => knex.destroy() });
  try {
    await knex.raw('select 1');
    if (target.dialect === 'pg' && target.schema) {
      await knex.raw('create schema if not exists ??', [target.schema]);
    }
  } catch (e) {
    await knex.destroy().catch(() => {});
    throw new BillingError(
      'db_unreachable',
      `cannot open database ${redactUrl(url)}: ${(e as Error).message.split('\n')[0]}`,
    );
  }
  if (policy !== 'none') {
    try {
      await ensureMigrated(db, policy === 'fresh');
    } catch (e) {
      await knex.destroy().catch(() => {});
      throw e;
    }
  }
  return db;
}

/** Every migration file recorded as applied? One query, and no migration module loaded. */
async function allApplied(db: Db): Promise<boolean> {
  const source = new MigrationSource();
  const names = (await source.getMigrations()).map((f) => source.getMigrationName(f));
  try {
    const applied = new Set((await db.knex('knex_migrations').select('name')).map((r) => r.name as string));
    return names.every((n) => applied.has(n));
  } catch {
    return false; // no migrations table yet
  }
}

async function ensureMigrated(db: Db, migrateEmpty: boolean): Promise<void> {
  // The fast path keeps `billing check` quick; the migrator settles anything else.
  if (await allApplied(db)) return;
  if (db.readonly) {
    throw new BillingError('db_not_migrated', `database ${db.display} is read-only and has pending migrations; run \`billing migrate\` with write access first`);
  }
  const [applied, pendingList] = (await db.knex.migrate.list()) as [unknown[], unknown[]];
  const pending = pendingList.length;
  if (pending === 0) return;
  if (db.dialect === 'sqlite' || (migrateEmpty && applied.length === 0)) {
    await db.knex.migrate.latest();
    return;
  }
  throw new BillingError(
    'db_not_migrated',
    `database ${db.display} has ${pending} pending migration(s); run \`billing migrate\` first`,
  );
}
