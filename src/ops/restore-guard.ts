import type { Knex } from 'knex';
import type { Db } from '../storage/db.js';
import { BillingError } from '../domain/errors.js';
import { readTable } from './backup.js';
import type { TableInfo } from './tables.js';

/**
 * What a tenant restore may not undo (README "Backups and restores"). Invoices are financial
 * records with numbers from one global gapless sequence, and the Stripe tables mirror what
 * was done outside this database: a restore that rolled them back would delete an issued
 * invoice, reopen a void one, leave a numbering gap, or replay a Stripe call. So a tenant
 * restore is refused unless
 * - every invoice, credit note, Stripe invoice and dunning record the tenant has here is in
 *   the backup, unchanged (a tenant whose records match its backup, or has none, restores);
 * - every Stripe call made here (outbox row `sent`) is made in the backup too;
 * - every invoice or credit note of the backup that is not here takes a number that is free
 *   here and was issued here (at most its counter): it fills the gap its deletion left.
 */

/** Tables whose rows here must all be in the backup, unchanged. */
export const KEPT_TABLES = ['invoices', 'credit_notes', 'stripe_invoices', 'stripe_dunning'] as const;

/** The numbered documents: each its own gapless sequence (invoice/numbering.ts). */
const NUMBERED = [
  { table: 'invoices', what: 'invoice', issuer: 'default', pattern: /^INV-(\d+)$/ },
  { table: 'credit_notes', what: 'credit note', issuer: 'credit_note', pattern: /^CN-(\d+)$/ },
] as const;

/** Tables whose rows here must be in the backup in some state: the outbox's calls made. */
export const GUARDED_TABLES = new Set<string>([...KEPT_TABLES, 'stripe_outbox']);

type Row = Record<string, unknown>;

const norm = (v: unknown) => (v === null || v === undefined ? null : String(v));
const keyOf = (t: TableInfo, r: Row) => JSON.stringify(t.primaryKey.map((k) => norm(r[k])));

function differs(t: TableInfo, here: Row, there: Row): boolean {
  return t.columns.some((c) => norm(here[c.name]) !== norm(there[c.name]));
}

function label(table: string, r: Row): string {
  if (table === 'invoices') return `invoice ${String(r.number)}`;
  if (table === 'credit_notes') return `credit note ${String(r.number)}`;
  if (table === 'stripe_invoices') return `the Stripe invoice of ${String(r.invoice_id)}`;
  if (table === 'stripe_dunning') return `the dunning of ${String(r.invoice_id)}`;
  return `a Stripe ${String(r.kind)} call`;
}

/** Throws the refusal (one line, no row values beyond this tenant's invoice and credit note numbers) when the restore would break a rule. */
export async function checkTenantRestore(
  db: Db,
  opts: { file: string; tenant: string; target: TableInfo[]; backupRows: Map<string, Row[]> },
): Promise<void> {
  const { tenant, target, backupRows } = opts;
  const trx = db.knex;
  const reasons: string[] = [];
  for (const name of GUARDED_TABLES) {
    const t = target.find((x) => x.name === name);
    if (!t || t.tenantColumn === null) continue;
    const there = new Map((backupRows.get(name) ?? []).map((r) => [keyOf(t, r), r]));
    for await (const here of readTable(db, t, tenant)) {
      const b = there.get(keyOf(t, here));
      if (name === 'stripe_outbox') {
        if (here.status === 'sent' && b?.status !== 'sent') reasons.push(`${label(name, here)} was made since the backup`);
      } else if (!b) {
        reasons.push(`${label(name, here)} ${name === 'stripe_invoices' || name === 'stripe_dunning' ? 'was created' : 'was issued'} after the backup`);
      } else if (name === 'invoices' && here.status !== b.status) {
        reasons.push(`${label(name, here)} is ${String(here.status)} here, ${String(b.status)} in the backup`);
      } else if (differs(t, here, b)) {
        reasons.push(`${label(name, here)} changed since the backup`);
      }
    }
  }

  for (const doc of NUMBERED) {
    if (!target.some((x) => x.name === doc.table)) continue;
    const missing = await missingRows(trx, doc.table, tenant, backupRows.get(doc.table) ?? []);
    if (missing.length === 0) continue;
    const counter = await trx('invoice_counters').where('issuer', doc.issuer).first(trx.raw('CAST(last_number AS TEXT) as n'));
    const last = Number(counter?.n ?? 0);
    const taken = new Map<string, string>();
    const numbers = missing.map((r) => String(r.number));
    for (let i = 0; i < numbers.length; i += 500) {
      for (const r of await trx(doc.table).whereIn('number', numbers.slice(i, i + 500)).select('number', 'tenant_id')) {
        taken.set(String(r.number), String(r.tenant_id));
      }
    }
    for (const r of missing) {
      const owner = taken.get(String(r.number));
      const m = doc.pattern.exec(String(r.number));
      if (owner !== undefined) {
        reasons.push(`the backup's ${label(doc.table, r)} is numbered like ${owner === tenant ? `another ${doc.what} of the tenant` : `another tenant's ${doc.what}`} here`);
      } else if (!m || Number(m[1]) > last) {
        reasons.push(`the backup's ${label(doc.table, r)} was not issued by this database (its numbers end at ${last})`);
      }
    }
  }

  if (reasons.length === 0) return;
  reasons.sort(); // rows come in key order (random invoice ids): name the lowest number first
  const more = reasons.length > 1 ? ` (and ${reasons.length - 1} more)` : '';
  throw new BillingError(
    'invalid_input',
    `backup ${opts.file} cannot be restored into tenant "${tenant}": ${reasons[0]}${more}; a tenant restore never rolls back invoices, credit notes or Stripe state, nor takes numbers it did not issue; nothing was restored`,
  );
}

/** The backup's invoices (or credit notes) of the tenant that it does not have here (by id). */
async function missingRows(trx: Knex, table: string, tenant: string, rows: Row[]): Promise<Row[]> {
  const present = new Set<string>();
  const ids = rows.map((r) => String(r.id));
  for (let i = 0; i < ids.length; i += 500) {
    for (const r of await trx(table).where('tenant_id', tenant).whereIn('id', ids.slice(i, i + 500)).select('id')) present.add(String(r.id));
  }
  return rows.filter((r) => !present.has(String(r.id)));
}
