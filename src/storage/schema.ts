import { forDialect, type Db } from './db.js';
import { pgSchema } from './schema-pg.js';
import { sqliteSchema } from './schema-sqlite.js';

/** What the database says about its tables and counters (schema-pg.ts, schema-sqlite.ts). */

export type ColumnKind = 'int' | 'bool' | 'other';

export interface Column {
  name: string;
  kind: ColumnKind;
}

export interface TableShape {
  name: string;
  columns: Column[];
  primaryKey: string[];
}

/** Serial / autoincrement counters: table → its column and the last value handed out. */
export type Sequences = Record<string, { column: string; last: string }>;

export interface SchemaDialect {
  /** The base tables of the current schema. */
  tableNames(db: Db): Promise<string[]>;
  describe(db: Db, table: string): Promise<{ columns: Column[]; primaryKey: string[] }>;
  /** child → parents it references (foreign keys among `tables`). */
  foreignKeys(db: Db, tables: string[]): Promise<Map<string, Set<string>>>;
  readSequences(db: Db, tables: TableShape[]): Promise<Sequences>;
  /** Move each counter to at least `wanted` and past every id present, so new rows never collide. */
  bumpSequences(db: Db, tables: TableShape[], wanted: Sequences): Promise<void>;
}

export function kindOf(type: string): ColumnKind {
  const t = type.toLowerCase();
  if (t.includes('int')) return 'int';
  if (t.includes('bool')) return 'bool';
  return 'other';
}

export function schemaOf(db: Db): SchemaDialect {
  return forDialect(db, { pg: pgSchema, sqlite: sqliteSchema });
}
