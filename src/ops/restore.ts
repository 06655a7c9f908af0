import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createGunzip } from 'node:zlib';
import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';
import { BillingError } from '../domain/errors.js';
import { writeAudit } from '../storage/audit.js';
import { isConstraintViolation } from '../storage/sql.js';
import { BACKUP_FORMAT, BACKUP_VERSION, backupChecksum, type BackupHeader, type BackupTable } from './backup.js';
import { bumpSequences, discoverTables, type TableInfo } from './tables.js';
import { checkTenantRestore, GUARDED_TABLES } from './restore-guard.js';

/**
 * `billing restore`: verify the whole file (header, per-table counts, checksum) first, then
 * in ONE transaction replace either everything (full restore, into an empty database unless
 * forced) or only one tenant's rows. Ids are preserved and serial counters moved past them.
 * A tenant restore first checks that it rolls back no invoice or Stripe state (restore-guard.ts).
 */

export interface RestoreSummary {
  file: string;
  scope: 'full' | 'tenant';
  tenant: string | null;
  checksum: string;
  tables: Array<{ name: string; deleted: number; inserted: number }>;
  rows: number;
  /** Things the operator should know (an old format read), for stderr. */
  warnings: string[];
}

// Rows per INSERT: under the bound-parameter limits, and under SQLite's 500 terms of the
// compound SELECT knex builds for a multi-row insert.
const INSERT_PARAMS = 30_000;
const INSERT_ROWS = 400;

async function isGzip(file: string): Promise<boolean> {
  const fh = await open(file, 'r').catch((e: Error) => {
    throw new BillingError('usage', `cannot read backup ${file}: ${e.message}`);
  });
  try {
    const { buffer, bytesRead } = await fh.read(Buffer.alloc(2), 0, 2, 0);
    return bytesRead === 2 && buffer[0] === 0x1f && buffer[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

async function* lines(file: string, gzip: boolean): AsyncGenerator<string> {
  const raw = createReadStream(file);
  const input = gzip ? raw.pipe(createGunzip()) : raw;
  raw.on('error', (e) => input.destroy(e));
  const rl = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const line of rl) yield line;
  } catch (e) {
    throw new BillingError('invalid_input', `backup ${file} cannot be read: ${(e as Error).message}`);
  } finally {
    rl.close();
    input.destroy();
  }
}

function corrupt(file: string, why: string): BillingError {
  return new BillingError('invalid_input', `backup ${file} is not usable: ${why}; nothing was restored`);
}

/** A version 2 header line: its text up to the checksum field, then the checksum, last. */
const CHECKSUM_FIELD = /^(.*),"checksum":"(sha256:[0-9a-f]{64})"\}$/s;

interface ParsedHeader {
  header: BackupHeader;
  /** The header line's bytes the checksum covers (version 2). */
  text: string;
}

function parseHeader(file: string, line: string | undefined): ParsedHeader {
  let h: BackupHeader;
  try {
    h = JSON.parse(line ?? '') as BackupHeader;
  } catch {
    throw corrupt(file, 'the first line is not a backup header');
  }
  if (h?.format !== BACKUP_FORMAT) throw corrupt(file, 'the first line is not a billing backup header');
  if (h.version !== BACKUP_VERSION && h.version !== 1) {
    throw corrupt(file, `format version ${String(h.version)} is not supported (this build reads 1 and ${BACKUP_VERSION})`);
  }
  if (!Array.isArray(h.tables) || typeof h.checksum !== 'string') throw corrupt(file, 'the header has no table list or checksum');
  const m = CHECKSUM_FIELD.exec(line!);
  if (h.version !== 1 && (!m || m[2] !== h.checksum)) throw corrupt(file, 'the header does not end with its checksum');
  return { header: h, text: m ? m[1] : '' };
}

const TABLE_PREFIX = /^\{"t":"((?:[^"\\]|\\.)*)",/;

/** Pass 1: the header, every line's table, the per-table counts and the checksum. */
async function verify(file: string, gzip: boolean): Promise<BackupHeader> {
  const it = lines(file, gzip);
  const first = await it.next();
  const { header, text } = parseHeader(file, first.done ? undefined : first.value);
  const expected = new Map(header.tables.map((t) => [t.name, t.count]));
  const counts = new Map<string, number>();
  const hash = createHash('sha256');
  let lineNo = 1;
  for await (const line of it) {
    lineNo++;
    hash.update(line + '\n');
    const m = TABLE_PREFIX.exec(line);
    if (!m || !expected.has(m[1])) throw corrupt(file, `line ${lineNo} is not a row of a table listed in the header`);
    counts.set(m[1], (counts.get(m[1]) ?? 0) + 1);
  }
  for (const [name, n] of expected) {
    const got = counts.get(name) ?? 0;
    if (got !== n) throw corrupt(file, `table ${name} has ${got} rows, the header says ${n}`);
  }
  const checksum = backupChecksum(header.version, text, hash.digest('hex'));
  if (checksum !== header.checksum) throw corrupt(file, `checksum mismatch (header ${header.checksum}, file ${checksum})`);
  return header;
}

/** Backup tables must exist here with every column they carry. */
function checkSchema(file: string, wanted: BackupTable[], target: TableInfo[]): void {
  for (const t of wanted) {
    const here = target.find((x) => x.name === t.name);
    if (!here) {
      throw new BillingError('conflict', `backup ${file} has table ${t.name}, which this database lacks; run \`billing migrate\` (or use the build that wrote the backup)`);
    }
    for (const c of t.columns) {
      if (!here.columns.some((x) => x.name === c.name)) {
        throw new BillingError('conflict', `backup ${file} has column ${t.name}.${c.name}, which this database lacks; run \`billing migrate\``);
      }
    }
  }
}

async function hasBusinessData(trx: Knex.Transaction, target: TableInfo[]): Promise<string | null> {
  const first = ['tenants', 'features', 'plans'];
  const ordered = [...first.flatMap((n) => target.filter((t) => t.name === n)), ...target.filter((t) => !first.includes(t.name))];
  for (const t of ordered) {
    if (t.tenantColumn === null && !first.includes(t.name)) continue;
    const row = await trx(t.name).first(trx.raw('1 as x'));
    if (row) return t.name;
  }
  return null;
}

/** Rows of an append-only table not already present (by primary key). */
async function missingRows(trx: Knex.Transaction, t: TableInfo, rows: Record<string, unknown>[]): Promise<Record<string, unknown>[]> {
  if (t.primaryKey.length !== 1) throw new BillingError('internal', `append-only table ${t.name} needs a one-column primary key`);
  const pk = t.primaryKey[0];
  const present = new Set<string>();
  for (let i = 0; i < rows.length; i += 1000) {
    const ids = rows.slice(i, i + 1000).map((r) => r[pk] as Knex.Value);
    const found = await trx(t.name).whereIn(pk, ids).select(trx.raw('CAST(?? AS TEXT) as k', [pk]));
    for (const f of found) present.add(String(f.k));
  }
  return rows.filter((r) => !present.has(String(r[pk])));
}

export async function restore(
  db: Db,
  opts: { file: string; tenantId?: string; force?: boolean; now: number; actor: string },
): Promise<RestoreSummary> {
  const { file } = opts;
  const gzip = await isGzip(file);
  const header = await verify(file, gzip);

  if (header.scope === 'tenant' && opts.tenantId !== undefined && opts.tenantId !== header.tenant) {
    throw new BillingError('usage', `backup ${file} holds tenant "${header.tenant}" only, not "${opts.tenantId}"`);
  }
  const tenant = opts.tenantId ?? header.tenant;
  const scope: 'full' | 'tenant' = tenant === null ? 'full' : 'tenant';
  const wanted = header.tables.filter((t) => scope === 'full' || t.tenantColumn !== null);
  if (scope === 'tenant' && header.scope === 'tenant' && !wanted.some((t) => t.name === 'tenants' && t.count > 0)) {
    throw corrupt(file, 'the tenant backup has no tenant row');
  }

  const target = await discoverTables(db);
  checkSchema(file, wanted, target);
  const wantedNames = new Set(wanted.map((t) => t.name));
  const order = target.filter((t) => wantedNames.has(t.name)); // this database's foreign-key order

  const guarded = scope === 'tenant' ? await guardedRows(file, gzip, tenant!, order) : new Map<string, Record<string, unknown>[]>();

  return db.tx(async (tdb) => {
    const trx = tdb.trx!;
    if (scope === 'tenant') {
      await checkTenantRestore(tdb, { file, tenant: tenant!, target: order, backupRows: guarded });
    }
    if (scope === 'full' && !opts.force) {
      const busy = await hasBusinessData(trx, target);
      if (busy) {
        throw new BillingError('conflict', `database is not empty (${busy} has rows); restore a full backup into a fresh database, or pass --force to replace everything`);
      }
    }
    const stats = new Map(order.map((t) => [t.name, { name: t.name, deleted: 0, inserted: 0 }]));
    for (const t of [...order].reverse()) {
      if (scope === 'tenant' && t.appendOnly) continue;
      const q = trx(t.name);
      if (scope === 'tenant') q.where(t.tenantColumn!, tenant);
      stats.get(t.name)!.deleted = Number(await q.delete());
    }

    const hash = createHash('sha256');
    let headerText = '';
    let batch: Record<string, unknown>[] = [];
    let batchTable: TableInfo | null = null;
    const flush = async () => {
      if (!batchTable || batch.length === 0) return;
      if (scope === 'tenant' && batchTable.appendOnly) batch = await missingRows(trx, batchTable, batch);
      const size = Math.max(1, Math.min(INSERT_ROWS, Math.floor(INSERT_PARAMS / batchTable.columns.length)));
      for (let i = 0; i < batch.length; i += size) {
        try {
          await trx(batchTable.name).insert(batch.slice(i, i + size));
        } catch (e) {
          // The driver's message holds the statement and its values: name the table only.
          if (!isConstraintViolation(e)) throw e;
          throw new BillingError(
            'invalid_input',
            `backup ${file} cannot be restored: a row of ${batchTable.name} clashes with a row of this database (a key held by another row here, e.g. another tenant's, or a missing parent row); nothing was restored`,
          );
        }
      }
      stats.get(batchTable.name)!.inserted += batch.length;
      batch = [];
    };
    let sawTenant = scope === 'full';
    let first = true;
    for await (const line of lines(file, gzip)) {
      if (first) {
        first = false;
        headerText = parseHeader(file, line).text;
        continue;
      }
      hash.update(line + '\n');
      const { t: name, r: row } = JSON.parse(line) as { t: string; r: Record<string, unknown> };
      if (!wantedNames.has(name)) continue;
      const info = order.find((x) => x.name === name)!;
      if (scope === 'tenant' && row[info.tenantColumn!] !== tenant) continue;
      if (name === 'tenants') sawTenant = true;
      if (batchTable !== info) {
        await flush();
        batchTable = info;
      }
      batch.push(row);
      if (batch.length >= 5000) await flush();
    }
    await flush();
    if (backupChecksum(header.version, headerText, hash.digest('hex')) !== header.checksum) {
      throw corrupt(file, 'the file changed while it was being restored');
    }
    if (!sawTenant) throw new BillingError('not_found', `backup ${file} has no tenant "${tenant}"; nothing was restored`);

    await bumpSequences(tdb, order, scope === 'full' ? (header.sequences ?? {}) : {});
    if (scope === 'tenant') await markRecut(trx, tenant!);
    const tables = [...stats.values()];
    const rows = tables.reduce((n, t) => n + t.inserted, 0);
    await writeAudit(trx, {
      at: opts.now,
      actor: opts.actor,
      tenantId: tenant,
      entity: 'backup',
      entityId: header.checksum,
      action: scope === 'full' ? 'restore' : 'restore_tenant',
      after: { file, createdAt: header.createdAt, rows },
    });
    const warnings =
      header.version === 1 ? [`backup ${file} has format version 1, whose checksum covers the data lines only, not the header; back up again with this build`] : [];
    return { file, scope, tenant, checksum: header.checksum, tables, rows, warnings };
  });
}

/** The backup's rows of the tenant in the tables a tenant restore must not roll back. */
async function guardedRows(file: string, gzip: boolean, tenant: string, order: TableInfo[]): Promise<Map<string, Record<string, unknown>[]>> {
  const out = new Map<string, Record<string, unknown>[]>();
  const infos = new Map(order.filter((t) => GUARDED_TABLES.has(t.name)).map((t) => [t.name, t]));
  if (infos.size === 0) return out;
  let first = true;
  for await (const line of lines(file, gzip)) {
    if (first) {
      first = false;
      continue;
    }
    const m = TABLE_PREFIX.exec(line);
    const info = m ? infos.get(m[1]) : undefined;
    if (!info) continue;
    const row = (JSON.parse(line) as { r: Record<string, unknown> }).r;
    if (row[info.tenantColumn!] !== tenant) continue;
    const rows = out.get(info.name);
    if (rows) rows.push(row);
    else out.set(info.name, [row]);
  }
  return out;
}

/**
 * A tenant's summaries in its backup were cut against the source database's aggregate
 * watermark, while its events keep their seqs, on either side of this database's: mark the
 * tenant re-cut, so that the next aggregate run rebuilds it from its events and `billing
 * check` reads its events until then (aggregate/usage-read.ts). No subscription key looks like this.
 */
async function markRecut(trx: Knex.Transaction, tenantId: string): Promise<void> {
  await trx('aggregate_tenants').insert({ tenant_id: tenantId, windows_key: RESTORED_CUT }).onConflict('tenant_id').merge();
}

export const RESTORED_CUT = '(restored)';
