import type { SchemaDialect, TableShape } from './schema.js';
import { kindOf } from './schema.js';
import type { Db } from './db.js';

async function hasSequenceTable(db: Db): Promise<boolean> {
  return (await db.rows(`select 1 from sqlite_master where type = 'table' and name = 'sqlite_sequence'`)).length > 0;
}

/** An INTEGER PRIMARY KEY is the rowid (the only kind AUTOINCREMENT applies to). */
function rowidColumn(t: TableShape): string | null {
  if (t.primaryKey.length !== 1) return null;
  const col = t.columns.find((c) => c.name === t.primaryKey[0]);
  return col?.kind === 'int' ? col.name : null;
}

export const sqliteSchema: SchemaDialect = {
  async tableNames(db) {
    const rows = await db.rows<{ name: string }>(`select name from sqlite_master where type = 'table' and name not like 'sqlite_%'`);
    return rows.map((r) => r.name);
  },

  async describe(db, table) {
    const rows = await db.rows<{ name: string; type: string; pk: number }>(`select name, type, pk from pragma_table_info(?)`, [table]);
    return {
      columns: rows.map((r) => ({ name: r.name, kind: kindOf(r.type) })),
      primaryKey: rows.filter((r) => r.pk > 0).sort((a, b) => a.pk - b.pk).map((r) => r.name),
    };
  },

  async foreignKeys(db, tables) {
    const deps = new Map<string, Set<string>>(tables.map((t) => [t, new Set<string>()]));
    for (const t of tables) {
      const rows = await db.rows<{ parent: string }>(`select "table" as parent from pragma_foreign_key_list(?)`, [t]);
      for (const r of rows) if (r.parent !== t && deps.has(r.parent)) deps.get(t)!.add(r.parent);
    }
    return deps;
  },

  async readSequences(db, tables) {
    const out: Record<string, { column: string; last: string }> = {};
    if (!(await hasSequenceTable(db))) return out;
    const rows = await db.rows<{ name: string; seq: string }>(`select name, CAST(seq AS TEXT) as seq from sqlite_sequence`);
    for (const r of rows) {
      const t = tables.find((x) => x.name === r.name);
      if (t && t.primaryKey.length === 1) out[r.name] = { column: t.primaryKey[0], last: r.seq };
    }
    return out;
  },

  async bumpSequences(db, tables, wanted) {
    const q = db.knex;
    for (const t of tables) {
      const seqCol = rowidColumn(t);
      if (!seqCol) continue;
      const [row] = await q(t.name).select(q.raw(`CAST(MAX(??) AS TEXT) as m`, [seqCol]));
      let target = BigInt(row?.m ?? '0');
      const w = wanted[t.name];
      if (w && BigInt(w.last) > target) target = BigInt(w.last);
      if (target <= 0n) continue;
      if (!(await hasSequenceTable(db))) continue;
      const cur = await db.rows<{ seq: string }>(`select CAST(seq AS TEXT) as seq from sqlite_sequence where name = ?`, [t.name]);
      if (cur.length === 0) {
        if (!w) continue; // not an autoincrement table
        await q.raw(`insert into sqlite_sequence (name, seq) values (?, ?)`, [t.name, target.toString()]);
      } else if (BigInt(cur[0].seq) < target) {
        await q.raw(`update sqlite_sequence set seq = ? where name = ?`, [target.toString(), t.name]);
      }
    }
  },
};
