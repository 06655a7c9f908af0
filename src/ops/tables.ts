import type { Db } from '../storage/db.js';
import { schemaOf, type Sequences, type TableShape } from '../storage/schema.js';

/**
 * What backup, restore and retention know about tables. Tables are discovered from the
 * database (so tables other migrations add are included); this registry only names the
 * exceptions. A table with a tenant_id column is tenant-owned; one without is global
 * (catalog, counters, job state) and travels only in a full backup.
 */

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

export type { Column, ColumnKind } from '../storage/schema.js';

export interface TableInfo extends TableShape {
  /** The column holding the tenant id, or null for a global table. */
  tenantColumn: string | null;
  appendOnly: boolean;
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
export async function discoverTables(db: Db): Promise<TableInfo[]> {
  const schema = schemaOf(db);
  const names = (await schema.tableNames(db)).filter((n) => !(REGISTRY[n] && 'skip' in REGISTRY[n]));
  const order = topoSort(await schema.foreignKeys(db, names));
  const out: TableInfo[] = [];
  for (const name of order) {
    const { columns, primaryKey } = await schema.describe(db, name);
    const entry = REGISTRY[name] as { tenantColumn?: string; appendOnly?: boolean } | undefined;
    const tenantColumn = entry?.tenantColumn ?? (columns.some((c) => c.name === 'tenant_id') ? 'tenant_id' : null);
    out.push({ name, tenantColumn, columns, primaryKey, appendOnly: Boolean(entry?.appendOnly) });
  }
  return out;
}

/** Serial / autoincrement counters: table → the last value handed out. */
export async function readSequences(db: Db, tables: TableInfo[]): Promise<Sequences> {
  return schemaOf(db).readSequences(db, tables);
}

/** Move each counter to at least `last` and past every id present, so new rows never collide. */
export async function bumpSequences(db: Db, tables: TableInfo[], wanted: Sequences): Promise<void> {
  await schemaOf(db).bumpSequences(db, tables, wanted);
}
