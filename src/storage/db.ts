import knexFactory, { type Knex } from 'knex';
import { BillingError } from '../domain/errors.js';
import { MigrationSource } from './migrations.js';
import { parseDbUrl, redactUrl, type DbTarget } from './url.js';

export type Dialect = 'sqlite' | 'pg';

export interface Db {
  knex: Knex;
  dialect: Dialect;
  /** URL safe to print (password removed). */
  display: string;
  close(): Promise<void>;
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

export function knexConfig(target: DbTarget): Knex.Config {
  const migrations = { migrationSource: new MigrationSource(), tableName: 'knex_migrations' };
  if (target.dialect === 'sqlite') {
    return {
      client: 'better-sqlite3',
      connection: { filename: target.filename },
      useNullAsDefault: true,
      log: knexLog,
      migrations,
      pool: {
        afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
          try {
            conn.pragma('journal_mode = WAL');
            conn.pragma('busy_timeout = 10000');
            conn.pragma('synchronous = NORMAL');
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
  const knex = knexFactory(knexConfig(target));
  const db: Db = { knex, dialect: target.dialect, display: target.display, close: () => knex.destroy() };
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

export async function pendingMigrations(db: Db): Promise<string[]> {
  const [, pending] = (await db.knex.migrate.list()) as [unknown[], Array<{ file: string } | string>];
  return pending.map((p) => (typeof p === 'string' ? p : p.file));
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
