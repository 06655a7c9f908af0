import type { Db } from './db.js';
import type { SchemaDialect, TableShape } from './schema.js';
import { kindOf } from './schema.js';

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** The sequence a serial column draws from, or null. */
async function serialSequence(db: Db, table: string, column: string): Promise<string | null> {
  const [r] = await db.rows<{ seq: string | null }>(`select pg_get_serial_sequence(?, ?) as seq`, [quoteIdent(table), column]);
  return r?.seq ?? null;
}

async function serialColumn(db: Db, t: TableShape): Promise<string | null> {
  for (const c of t.columns.filter((x) => x.kind === 'int')) {
    if (await serialSequence(db, t.name, c.name)) return c.name;
  }
  return null;
}

export const pgSchema: SchemaDialect = {
  async tableNames(db) {
    const rows = await db.rows<{ name: string }>(
      `select table_name as name from information_schema.tables
      where table_schema = current_schema() and table_type = 'BASE TABLE'`,
    );
    return rows.map((x) => x.name);
  },

  async describe(db, table) {
    const cols = await db.rows<{ name: string; type: string }>(
      `select column_name as name, data_type as type from information_schema.columns
      where table_schema = current_schema() and table_name = ? order by ordinal_position`,
      [table],
    );
    const pk = await db.rows<{ name: string }>(
      `select k.column_name as name from information_schema.table_constraints c
       join information_schema.key_column_usage k
         on k.constraint_name = c.constraint_name and k.table_schema = c.table_schema and k.table_name = c.table_name
      where c.table_schema = current_schema() and c.table_name = ? and c.constraint_type = 'PRIMARY KEY'
      order by k.ordinal_position`,
      [table],
    );
    return { columns: cols.map((r) => ({ name: r.name, kind: kindOf(r.type) })), primaryKey: pk.map((r) => r.name) };
  },

  async foreignKeys(db, tables) {
    const deps = new Map<string, Set<string>>(tables.map((t) => [t, new Set<string>()]));
    const rows = await db.rows<{ child: string; parent: string }>(
      `select c.relname as child, p.relname as parent from pg_constraint k
       join pg_class c on c.oid = k.conrelid
       join pg_class p on p.oid = k.confrelid
       join pg_namespace n on n.oid = c.relnamespace
      where k.contype = 'f' and n.nspname = current_schema()`,
    );
    for (const row of rows) {
      if (row.child !== row.parent && deps.has(row.child) && deps.has(row.parent)) deps.get(row.child)!.add(row.parent);
    }
    return deps;
  },

  async readSequences(db, tables) {
    const out: Record<string, { column: string; last: string }> = {};
    for (const t of tables) {
      for (const c of t.columns.filter((x) => x.kind === 'int')) {
        const seq = await serialSequence(db, t.name, c.name);
        if (!seq) continue;
        const [{ last_value, is_called }] = await db.rows<{ last_value: string; is_called: boolean }>(
          `select CAST(last_value AS TEXT) as last_value, is_called from ${seq}`,
        );
        out[t.name] = { column: c.name, last: is_called ? last_value : String(BigInt(last_value) - 1n) };
      }
    }
    return out;
  },

  async bumpSequences(db, tables, wanted) {
    const q = db.knex;
    for (const t of tables) {
      const seqCol = await serialColumn(db, t);
      if (!seqCol) continue;
      const [row] = await q(t.name).select(q.raw(`CAST(MAX(??) AS TEXT) as m`, [seqCol]));
      let target = BigInt(row?.m ?? '0');
      const w = wanted[t.name];
      if (w && BigInt(w.last) > target) target = BigInt(w.last);
      const seq = (await serialSequence(db, t.name, seqCol))!;
      if (target >= 1n) await q.raw(`select setval(?::regclass, ?::bigint, true)`, [seq, target.toString()]);
      else await q.raw(`select setval(?::regclass, 1, false)`, [seq]);
    }
  },
};
