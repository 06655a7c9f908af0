import { createHash } from 'node:crypto';
import type { Knex } from 'knex';
import type { Db } from './db.js';

// Dialect quirks live here and only here.

/** An expression selecting a (possibly > 2^53) integer column or aggregate as exact text. */
export function asText(db: Db, expr: string): Knex.Raw {
  return db.knex.raw(`CAST(${expr} AS TEXT)`);
}

/** SQL expression extracting a top-level field from a JSON text column, as text. */
export function jsonField(db: Db, column: string, field: string): Knex.Raw {
  if (db.dialect === 'pg') return db.knex.raw(`(??::jsonb ->> ?)`, [column, field]);
  return db.knex.raw(`json_extract(??, ?)`, [column, `$."${field.replace(/"/g, '')}"`]);
}

/** Rows a raw INSERT / UPDATE / DELETE wrote (an upsert's updates included). */
export function rowsWritten(db: Db, res: unknown): number {
  const r = res as { rowCount?: number | null; changes?: number };
  return Number((db.dialect === 'pg' ? r.rowCount : r.changes) ?? 0);
}

/** Booleans: SQLite returns 0/1. */
export function bool(v: unknown): boolean {
  return v === true || v === 1 || v === '1' || v === 't';
}

/**
 * Run fn in a write transaction. On SQLite the first statement takes the write lock, so a
 * second process waits on busy_timeout instead of failing with SQLITE_BUSY on lock upgrade.
 */
export async function withTx<T>(db: Db, fn: (trx: Knex.Transaction) => Promise<T>): Promise<T> {
  return db.tx((t) => fn(t.trx!));
}

/**
 * Claim rows for this transaction, passing over rows another transaction is claiming
 * (PostgreSQL: FOR UPDATE OF table SKIP LOCKED; SQLite: the transaction's write lock already
 * keeps other claimers out).
 */
export function skipLocked<Q extends Knex.QueryBuilder>(db: Db, q: Q, table: string): Q {
  return db.dialect === 'pg' ? (q.forUpdate(table).skipLocked() as Q) : q;
}

/** Lock the rows a select reads until the transaction ends (SQLite: withTx holds the database's write lock already). */
export function forUpdate<Q extends Knex.QueryBuilder>(db: Db, q: Q): Q {
  return db.dialect === 'pg' ? (q.forUpdate() as Q) : q;
}

/**
 * A hot statement run many times by a long-lived process (`billing serve`, the library):
 * PostgreSQL keeps it prepared per connection under a name derived from its text, so each
 * run skips parsing and planning (a fifth of a cached `checkEntitlement`). SQLite's
 * connections already reuse their prepared statements (db.ts). Use it only for a fixed set
 * of texts: each distinct text stays prepared on every connection that ran it.
 */
export function preparedRaw(db: Db, sql: string, bindings: readonly Knex.RawBinding[]): Knex.Raw {
  const raw = db.knex.raw(sql, bindings as Knex.RawBinding[]);
  // Named after the text the server gets: `??` bindings (identifiers) are part of it.
  return db.dialect === 'pg' ? raw.options({ name: statementName(raw.toSQL().sql) }) : raw;
}

const names = new Map<string, string>();

function statementName(sql: string): string {
  let name = names.get(sql);
  if (!name) names.set(sql, (name = `billing_${createHash('sha1').update(sql).digest('hex').slice(0, 20)}`));
  return name;
}

/** An integrity-constraint violation (unique, foreign key, not null, check) on either database. */
export function isConstraintViolation(e: unknown): boolean {
  const code = String((e as { code?: unknown })?.code ?? '');
  return /^23\d{3}$/.test(code) || code.startsWith('SQLITE_CONSTRAINT');
}

/**
 * A driver error's own message without the statement knex prefixes to it ("insert into ...
 * - UNIQUE constraint failed"): statements carry tenant data and never belong in a one-line
 * error. Null when `e` is not a database error.
 */
export function databaseErrorMessage(e: unknown): string | null {
  const code = String((e as { code?: unknown })?.code ?? '');
  if (!code.startsWith('SQLITE_') && !/^[0-9A-Z]{5}$/.test(code)) return null;
  const message = String((e as { message?: unknown }).message ?? '');
  const cut = message.lastIndexOf(' - ');
  return `${cut >= 0 ? message.slice(cut + 3) : message} (${code})`;
}
