import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';

/**
 * What backup, restore and retention know about tables. Tables are discovered from the
 * database (so tables other migrations add are included); this registry only names the
 * exceptions. A table with a tenant_id column is tenant-owned; one without is global
 * (catalog, counters, job state) and travels only in a full backup.
 */

type Q = Knex | Knex.Transaction;

type Entry = { skip: string } | { tenantColumn?: string; appendOnly?: boolean };

const REGISTRY: Record<string, Entry> = {
  knex_migrations: { skip: 'migration bookkeeping: the target has its own' },
  knex_migrations_lock: { skip: 'migration bookkeeping' },
  db_meta: { skip: 'holds the SQLite write-lock row, seeded by the migration' },
  // Only ever moves forward; restoring an old value could make a stale cache look current.
  terms_epoch: { skip: 'cache counter moved by triggers; the target keeps its own' },
  job_locks: { skip: 'leases of live processes, meaningless elsewhere' },
  aggregate_windows: { skip: 'aggregation scratch, cleared by every run' },
  aggregate_groups: { skip: 'aggregation scratch, cleared by every run' },
  tenants: { tenantColumn: 'id' },
  // Never rewritten: a tenant restore adds the backup's missing entries and keeps the rest.
  audit_log: { appendOnly: true },
  // Each Stripe event applies once: forgetting one applied since the backup would apply it twice.
  stripe_events: { appendOnly: true },
};

export type ColumnKind = 'int' | 'bool' | 'other';

export interface Column {
  name: string;
  kind: ColumnKind;
}

export interface TableInfo {
  name: string;
  /** The column holding the tenant id, or null for a global table. */
  tenantColumn: string | null;
  columns: Column[];
  primaryKey: string[];
  appendOnly: boolean;
}

function kindOf(type: string): ColumnKind {
  const t = type.toLowerCase();
  if (t.includes('int')) return 'int';
  if (t.includes('bool')) return 'bool';
  return 'other';
}

async function listTableNames(db: Db, q: Q): Promise<string[]> {
  if (db.dialect === 'sqlite') {
    const rows = await q.raw(`select name from sqlite_master where type = 'table' and name not like 'sqlite_%'`);
    return (rows as Array<{ name: string }>).map((r) => r.name);
  }
  const r = await q.raw(
    `select table_name as name from information_schema.tables
      where table_schema = current_schema() and table_type = 'BASE TABLE'`,
  );
  return (r.rows as Array<{ name: string }>).map((x) => x.name);
}

async function describe(db: Db, q: Q, table: string): Promise<{ columns: Column[]; primaryKey: string[] }> {
  if (db.dialect === 'sqlite') {
    const rows = (await q.raw(`select name, type, pk from pragma_table_info(?)`, [table])) as Array<{ name: string; type: string; pk: number }>;
    return {
      columns: rows.map((r) => ({ name: r.name, kind: kindOf(r.type) })),
      primaryKey: rows.filter((r) => r.pk > 0).sort((a, b) => a.pk - b.pk).map((r) => r.name),
    };
  }
  const cols = await q.raw(
    `select column_name as name, data_type as type from information_schema.columns
      where table_schema = current_schema() and table_name = ? order by ordinal_position`,
    [table],
  );
  const pk = await q.raw(
    `select k.column_name as name from information_schema.table_constraints c
       join information_schema.key_column_usage k
         on k.constraint_name = c.constraint_name and k.table_schema = c.table_schema and k.table_name = c.table_name
      where c.table_schema = current_schema() and c.table_name = ? and c.constraint_type = 'PRIMARY KEY'
      order by k.ordinal_position`,
    [table],
  );
  return {
    columns: (cols.rows as Array<{ name: string; type: string }>).map((r) => ({ name: r.name, kind: kindOf(r.type) })),
    primaryKey: (pk.rows as Array<{ name: string }>).map((r) => r.name),
  };
}

/** child → parents it references (foreign keys within the schema). */
async function foreignKeys(db: Db, q: Q, tables: string[]): Promise<Map<string, Set<string>>> {
  const deps = new Map<string, Set<string>>(tables.map((t) => [t, new Set<string>()]));
  if (db.dialect === 'sqlite') {
    for (const t of tables) {
      const rows = (await q.raw(`select "table" as parent from pragma_foreign_key_list(?)`, [t])) as Array<{ parent: string }>;
      for (const r of rows) if (r.parent !== t && deps.has(r.parent)) deps.get(t)!.add(r.parent);
    }
    return deps;
  }
  const r = await q.raw(
    `select c.relname as child, p.relname as parent from pg_constraint k
       join pg_class c on c.oid = k.conrelid
       join pg_class p on p.oid = k.confrelid
       join pg_namespace n on n.oid = c.relnamespace
      where k.contype = 'f' and n.nspname = current_schema()`,
  );
  for (const row of r.rows as Array<{ child: string; parent: string }>) {
    if (row.child !== row.parent && deps.has(row.child) && deps.has(row.parent)) deps.get(row.child)!.add(row.parent);
  }
  return deps;
}

/** Parents before children, ties by name: the insert order (reverse it to delete). */
function topoSort(deps: Map<string, Set<string>>): string[] {
  const out: string[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = (t: string) => {
    if (done.has(t) || visiting.has(t)) return;
    visiting.add(t);
    for (const p of [...deps.get(t)!].sort()) visit(p);
    visiting.delete(t);
    done.add(t);
    out.push(t);
  };
  for (const t of [...deps.keys()].sort()) visit(t);
  return out;
}

/** Every table worth backing up, in foreign-key order. */
export async function discoverTables(db: Db, q: Q = db.knex): Promise<TableInfo[]> {
  const names = (await listTableNames(db, q)).filter((n) => !(REGISTRY[n] && 'skip' in REGISTRY[n]));
  const order = topoSort(await foreignKeys(db, q, names));
  const out: TableInfo[] = [];
  for (const name of order) {
    const { columns, primaryKey } = await describe(db, q, name);
    const entry = REGISTRY[name] as { tenantColumn?: string; appendOnly?: boolean } | undefined;
    const tenantColumn = entry?.tenantColumn ?? (columns.some((c) => c.name === 'tenant_id') ? 'tenant_id' : null);
    out.push({ name, tenantColumn, columns, primaryKey, appendOnly: Boolean(entry?.appendOnly) });
  }
  return out;
}

/** Serial / autoincrement counters: table → the last value handed out. */
export async function readSequences(db: Db, q: Q, tables: TableInfo[]): Promise<Record<string, { column: string; last: string }>> {
  const out: Record<string, { column: string; last: string }> = {};
  if (db.dialect === 'sqlite') {
    const has = await q.raw(`select 1 from sqlite_master where type = 'table' and name = 'sqlite_sequence'`);
    if ((has as unknown[]).length === 0) return out;
    const rows = (await q.raw(`select name, CAST(seq AS TEXT) as seq from sqlite_sequence`)) as Array<{ name: string; seq: string }>;
    for (const r of rows) {
      const t = tables.find((x) => x.name === r.name);
      if (t && t.primaryKey.length === 1) out[r.name] = { column: t.primaryKey[0], last: r.seq };
    }
    return out;
  }
  for (const t of tables) {
    for (const c of t.columns.filter((x) => x.kind === 'int')) {
      const r = await q.raw(`select pg_get_serial_sequence(?, ?) as seq`, [quoteIdent(t.name), c.name]);
      const seq = r.rows[0]?.seq as string | null;
      if (!seq) continue;
      const v = await q.raw(`select CAST(last_value AS TEXT) as last_value, is_called from ${seq}`);
      const { last_value, is_called } = v.rows[0] as { last_value: string; is_called: boolean };
      out[t.name] = { column: c.name, last: is_called ? last_value : String(BigInt(last_value) - 1n) };
    }
  }
  return out;
}

/** Move each counter to at least `last` and past every id present, so new rows never collide. */
export async function bumpSequences(
  db: Db,
  q: Q,
  tables: TableInfo[],
  wanted: Record<string, { column: string; last: string }>,
): Promise<void> {
  for (const t of tables) {
    const seqCol = db.dialect === 'pg' ? await serialColumn(q, t) : sqliteRowidColumn(t);
    if (!seqCol) continue;
    const [row] = await q(t.name).select(q.raw(`CAST(MAX(??) AS TEXT) as m`, [seqCol]));
    let target = BigInt(row?.m ?? '0');
    const w = wanted[t.name];
    if (w && BigInt(w.last) > target) target = BigInt(w.last);
    if (db.dialect === 'pg') {
      const r = await q.raw(`select pg_get_serial_sequence(?, ?) as seq`, [quoteIdent(t.name), seqCol]);
      const seq = r.rows[0].seq as string;
      if (target >= 1n) await q.raw(`select setval(?::regclass, ?::bigint, true)`, [seq, target.toString()]);
      else await q.raw(`select setval(?::regclass, 1, false)`, [seq]);
    } else if (target > 0n) {
      const has = await q.raw(`select 1 from sqlite_master where type = 'table' and name = 'sqlite_sequence'`);
      if ((has as unknown[]).length === 0) continue;
      const cur = (await q.raw(`select CAST(seq AS TEXT) as seq from sqlite_sequence where name = ?`, [t.name])) as Array<{ seq: string }>;
      if (cur.length === 0) {
        if (!w) continue; // not an autoincrement table
        await q.raw(`insert into sqlite_sequence (name, seq) values (?, ?)`, [t.name, target.toString()]);
      } else if (BigInt(cur[0].seq) < target) {
        await q.raw(`update sqlite_sequence set seq = ? where name = ?`, [target.toString(), t.name]);
      }
    }
  }
}

/** SQLite: an INTEGER PRIMARY KEY is the rowid (the only kind AUTOINCREMENT applies to). */
function sqliteRowidColumn(t: TableInfo): string | null {
  if (t.primaryKey.length !== 1) return null;
  const col = t.columns.find((c) => c.name === t.primaryKey[0]);
  return col?.kind === 'int' ? col.name : null;
}

async function serialColumn(q: Q, t: TableInfo): Promise<string | null> {
  for (const c of t.columns.filter((x) => x.kind === 'int')) {
    const r = await q.raw(`select pg_get_serial_sequence(?, ?) as seq`, [quoteIdent(t.name), c.name]);
    if (r.rows[0]?.seq) return c.name;
  }
  return null;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}
