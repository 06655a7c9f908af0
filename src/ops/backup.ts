import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, renameSync, rmSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import type { Knex } from 'knex';
import type { Writable } from 'node:stream';
import type { Db } from '../storage/db.js';
import { BillingError } from '../domain/errors.js';
import { discoverTables, readSequences, type TableInfo } from './tables.js';

/**
 * `billing backup`: NDJSON, one header line then one line per row ({"t": table, "r": row}).
 * The header carries the format version, the tables (columns, tenant column, row count),
 * serial counters and, as its last field, a checksum over the rest of the header line and
 * the data lines (backupChecksum), so restore can verify the whole file before it writes
 * anything. Rows are read in one snapshot transaction, page by page in primary-key order
 * (bounded memory, byte-identical output for identical data).
 */

export const BACKUP_FORMAT = 'billing-backup';
/** 2: the checksum covers the header too. 1: the data lines only (still read, with a warning). */
export const BACKUP_VERSION = 2;
const PAGE = 2000;

export interface BackupTable {
  name: string;
  tenantColumn: string | null;
  columns: Array<{ name: string; kind: string }>;
  primaryKey: string[];
  count: number;
}

export interface BackupHeader {
  format: typeof BACKUP_FORMAT;
  version: number;
  createdAt: string;
  scope: 'full' | 'tenant';
  tenant: string | null;
  dialect: string;
  migrations: string[];
  tables: BackupTable[];
  sequences: Record<string, { column: string; last: string }>;
  checksum: string;
}

/**
 * The header's checksum field. Version 2: sha256 over the header line up to its checksum
 * field (`headerText`, the exact bytes in the file) and the data lines' sha256, so a changed
 * byte anywhere in the file is refused. Version 1: the data lines' sha256 alone.
 */
export function backupChecksum(version: number, headerText: string, dataDigest: string): string {
  if (version === 1) return `sha256:${dataDigest}`;
  return `sha256:${createHash('sha256').update(headerText).update('\n').update(dataDigest).digest('hex')}`;
}

/** The header line: every field but the checksum, then the checksum over them (always last). */
export function headerLine(h: Omit<BackupHeader, 'checksum'>, dataDigest: string): { line: string; checksum: string } {
  const text = JSON.stringify(h).slice(0, -1); // without the closing brace
  const checksum = backupChecksum(h.version, text, dataDigest);
  return { line: `${text},"checksum":${JSON.stringify(checksum)}}`, checksum };
}

export interface BackupSummary {
  /** The file written, or "-" for stdout. */
  file: string;
  scope: 'full' | 'tenant';
  tenant: string | null;
  tables: Array<{ name: string; count: number }>;
  rows: number;
  checksum: string;
}

/** Row as stored in the file (and as a restore compares it): integers as strings (exact beyond 2^53), booleans as booleans. */
function encodeRow(t: TableInfo, r: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const c of t.columns) {
    const v = r[c.name];
    if (v === null || v === undefined) out[c.name] = null;
    else if (c.kind === 'bool') out[c.name] = v === true || v === 1 || v === '1' || v === 't' || v === 'true';
    else out[c.name] = v;
  }
  return out;
}

export async function* readTable(db: Db, t: TableInfo, tenant: string | null): AsyncGenerator<Record<string, unknown>> {
  const trx = db.knex;
  const select = t.columns.map((c) => (c.kind === 'int' ? trx.raw('CAST(?? AS TEXT) as ??', [`${t.name}.${c.name}`, c.name]) : c.name));
  // Order and compare on the table's columns, not on the text aliases of the same name.
  const key = (t.primaryKey.length > 0 ? t.primaryKey : t.columns.map((c) => c.name)).map((k) => `${t.name}.${k}`);
  const keyed = t.primaryKey.length > 0;
  let after: unknown[] | null = null;
  let offset = 0;
  for (;;) {
    const q = trx(t.name).select(select).limit(PAGE);
    if (tenant !== null && t.tenantColumn) q.where(t.tenantColumn, tenant);
    for (const k of key) q.orderBy(k);
    if (keyed && after) {
      const cols = key.map(() => '??').join(', ');
      const vals = key.map(() => '?').join(', ');
      q.whereRaw(`(${cols}) > (${vals})`, [...key, ...after] as Knex.RawBinding[]);
    } else if (!keyed) {
      q.offset(offset); // no primary key: page by position within the snapshot
    }
    const rows = await q;
    for (const r of rows) yield encodeRow(t, r);
    if (rows.length < PAGE) return;
    offset += rows.length;
    const last = rows[rows.length - 1] as Record<string, unknown>;
    after = key.map((k) => last[k.slice(t.name.length + 1)]);
  }
}

/** A stream whose errors are kept and rethrown at the next write (never left unhandled). */
function guarded<S extends Writable>(stream: S): S & { check(): void } {
  let failure: Error | null = null;
  stream.on('error', (e) => (failure ??= e));
  return Object.assign(stream, {
    check() {
      if (failure) throw new BillingError('internal', `cannot write the backup: ${failure.message}`);
    },
  });
}

async function write(stream: Writable & { check(): void }, chunk: string | Buffer): Promise<void> {
  stream.check();
  if (!stream.write(chunk)) await once(stream, 'drain');
}

/**
 * Write a backup to `opts.out`, or to `opts.stream` (stdout for `--out -`, plain NDJSON, left
 * open). A file appears under its name only once complete.
 */
export async function backup(
  db: Db,
  opts: { out: string; stream?: Writable; tenantId?: string; now: number },
): Promise<BackupSummary> {
  const tenant = opts.tenantId ?? null;
  const toStream = opts.stream !== undefined;
  const base = toStream ? path.join(tmpdir(), 'billing-backup') : opts.out;
  const dataFile = `${base}.data-${process.pid}.tmp`;
  const partial = `${base}.partial-${process.pid}.tmp`;
  if (!toStream) {
    try {
      writeFileSync(partial, ''); // fail early, with the path, if the directory is not writable
    } catch (e) {
      throw new BillingError('usage', `cannot write ${opts.out}: ${(e as Error).message}`);
    }
  }
  try {
    const { tables, sequences, migrations, dataDigest } = await db.tx(
      async (snap) => {
        const trx = snap.trx!;
        if (tenant !== null) {
          const exists = await trx('tenants').where({ id: tenant }).first('id');
          if (!exists) throw new BillingError('not_found', `tenant "${tenant}" does not exist; nothing to back up`);
        }
        const infos = (await discoverTables(snap)).filter((t) => tenant === null || t.tenantColumn !== null);
        const hash = createHash('sha256');
        const data = guarded(createWriteStream(dataFile));
        const tables: BackupTable[] = [];
        for (const t of infos) {
          let count = 0;
          for await (const row of readTable(snap, t, tenant)) {
            const line = JSON.stringify({ t: t.name, r: row }) + '\n';
            hash.update(line);
            await write(data, line);
            count++;
          }
          tables.push({ name: t.name, tenantColumn: t.tenantColumn, columns: t.columns, primaryKey: t.primaryKey, count });
        }
        data.end();
        await once(data, 'finish');
        data.check();
        const sequences = tenant === null ? await readSequences(snap, infos) : {};
        const migrations = (await trx('knex_migrations').select('name').orderBy('id')).map((r) => r.name as string);
        return { tables, sequences, migrations, dataDigest: hash.digest('hex') };
      },
      // One consistent, read-only snapshot of every table.
      { snapshot: true },
    );

    const header: Omit<BackupHeader, 'checksum'> = {
      format: BACKUP_FORMAT,
      version: BACKUP_VERSION,
      createdAt: new Date(opts.now).toISOString(),
      scope: tenant === null ? 'full' : 'tenant',
      tenant,
      dialect: db.dialect,
      migrations,
      tables,
      sequences,
    };
    const { line, checksum } = headerLine(header, dataDigest);
    if (opts.stream) {
      const out = guarded(opts.stream);
      await write(out, line + '\n');
      for await (const chunk of createReadStream(dataFile)) await write(out, chunk as Buffer);
      // Not ended (stdout stays open): wait until the last chunk is flushed.
      await new Promise<void>((resolve, reject) => out.write('', (e) => (e ? reject(e) : resolve())));
      out.check();
    } else {
      const out = guarded(createWriteStream(partial));
      const gzip = opts.out.endsWith('.gz');
      const zip = gzip ? guarded(createGzip()) : null;
      const sink = zip ?? out;
      const done = zip ? pipeline(zip, out) : once(out, 'finish');
      await write(sink, line + '\n');
      for await (const chunk of createReadStream(dataFile)) await write(sink, chunk as Buffer);
      sink.end();
      await done;
      out.check();
      renameSync(partial, opts.out);
    }
    return {
      file: toStream ? '-' : opts.out,
      scope: header.scope,
      tenant,
      tables: tables.map((t) => ({ name: t.name, count: t.count })),
      rows: tables.reduce((n, t) => n + t.count, 0),
      checksum,
    };
  } finally {
    rmSync(dataFile, { force: true });
    rmSync(partial, { force: true });
  }
}
