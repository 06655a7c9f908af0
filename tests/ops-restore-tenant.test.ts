import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb, freshDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { snapshot } from './jobs-support.js';
import { T, world } from './invoice-world.js';
import { voidInvoice } from '../src/invoice/lifecycle.js';
import { createCreditNote } from '../src/invoice/credit-notes.js';
import { addDiscount } from '../src/subscriptions/discounts.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { setTenantTax } from '../src/subscriptions/taxes.js';
import type { Db } from '../src/storage/db.js';

const AT = '2026-03-05T00:00:00.000Z';

/**
 * acme and globex on basic; January invoiced and finalized (acme INV-000001, globex INV-000002).
 * `commercial`: each also has a 10 % discount (3 invoices), VAT 19 % and a 5.00 prepaid grant before
 * invoicing, and a 2.00 credit note on its invoice after (acme CN-000001, globex CN-000002).
 */
async function scenario(db: Db, tenants = ['acme', 'globex'], opts: { commercial?: boolean } = {}): Promise<void> {
  const w = world(db);
  await w.apply('2026-01-01T00:00:00Z');
  const at = { now: T('2026-01-01T00:00:00Z'), actor: 'test' };
  for (const id of tenants) {
    await w.tenant('2026-01-01T00:00:00Z', id);
    await w.subscribe('2026-01-01T00:00:00Z', id, 'basic');
    await w.usage('2026-01-10T00:00:00Z', id, 'OCR_SCAN', '150');
    if (opts.commercial) {
      await addDiscount(db, { tenantId: id, percent: '10', duration: 'repeating', periods: 3 }, at);
      await setTenantTax(db, id, { name: 'VAT', rate: '19', inclusive: false }, at);
      await grantCredit(db, { tenantId: id, amount: '5.00' }, at);
    }
  }
  const { created } = await w.generate('2026-02-01T01:00:00Z', { finalize: true });
  if (opts.commercial) {
    for (const inv of created) await creditNote(db, inv.number);
  }
}

const creditNote = (db: Db, invoice: string, when = '2026-02-02T00:00:00Z') =>
  createCreditNote(db, { invoice, amount: '2.00', reason: 'outage' }, { now: T(when), actor: 'test' });

/** The DESIGN.md §13 tables a tenant restore carries. */
const COMMERCIAL = ['tenant_tax_rates', 'discounts', 'discount_uses', 'credit_grants', 'credit_uses', 'credit_notes'];

async function backupTenant(url: string, tenant: string): Promise<string> {
  const file = path.join(tempDir('billing-restore-'), `${tenant}.ndjson`);
  const r = await runCli(['backup', '--tenant', tenant, '--out', file], { db: url, now: AT });
  expect(r.code).toBe(0);
  return file;
}

async function expectVerifyPasses(url: string): Promise<void> {
  const v = await runCli(['verify'], { db: url, now: AT });
  expect(v.stdout).toMatch(/^ok: /);
  expect(v.code).toBe(0);
}

/** A refusal: exit 2, one line on stderr naming the reason, no SQL, nothing on stdout. */
function expectRefused(r: { code: number; stdout: string; stderr: string }, reason: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(reason);
  expect(r.stderr).toMatch(/nothing was restored/);
  expect(r.stderr).not.toMatch(/insert into|values|select /i);
}

describeEachDb('tenant restore keeps invoices and numbering whole', (t) => {
  it('refuses to undo a void and reissue made after the backup', async () => {
    const { db, url } = t();
    await scenario(db);
    const file = await backupTenant(url, 'acme');
    const jan = (await db.knex('invoices').where({ tenant_id: 'acme' }).first()) as { id: string; number: string };
    expect(jan.number).toBe('INV-000001');
    await voidInvoice(db, jan.id, { now: T('2026-02-03T00:00:00Z'), actor: 'test', reason: 'wrong address' });
    const reissued = await world(db).generate('2026-02-03T01:00:00Z', { finalize: true });
    expect(reissued.created.map((i) => i.number)).toEqual(['INV-000003']);
    await expectVerifyPasses(url);
    const before = await snapshot(db);

    const r = await runCli(['restore', file], { db: url, now: AT });
    expectRefused(r, /cannot be restored into tenant "acme": invoice INV-000001 is void here, open in the backup \(and 1 more\); a tenant restore never rolls back invoices/);
    expect(await snapshot(db)).toEqual(before);
    await expectVerifyPasses(url);
  });

  it('refuses a Stripe call made since the backup', async () => {
    const { db, url } = t();
    await scenario(db);
    const file = await backupTenant(url, 'acme');
    await db.knex('stripe_outbox').insert({
      tenant_id: 'acme', idempotency_key: 'k1', kind: 'customer', local_ref: 'acme', payload: '{}', status: 'sent',
      attempts: 1, next_attempt_at: 0, stripe_id: 'cus_1', created_at: 0, updated_at: 0,
    });
    const before = await snapshot(db);
    expectRefused(await runCli(['restore', file], { db: url, now: AT }), /a Stripe customer call was made since the backup/);
    expect(await snapshot(db)).toEqual(before);
  });

  it("refuses invoice numbers that are another tenant's here, and rows that clash, in one line without SQL", async () => {
    const { db, url, dialect } = t();
    await scenario(db);
    const file = await backupTenant(url, 'acme');
    expect((await db.knex('invoices').where({ tenant_id: 'acme' }).first()).number).toBe('INV-000001');
    const other = await freshDb(dialect);
    try {
      // Another database, without acme, where globex took INV-000001.
      await scenario(other.db, ['globex']);
      expect((await other.db.knex('invoices').where({ number: 'INV-000001' }).first()).tenant_id).toBe('globex');
      const before = await snapshot(other.db);
      expectRefused(await runCli(['restore', file], { db: other.url, now: AT }), /the backup's invoice INV-000001 is numbered like another tenant's invoice here/);
      expect(await snapshot(other.db)).toEqual(before);

      // No invoice in the way, but the backup's event ids are held by the other tenant's events here.
      const early = await backupTenantBefore();
      const clash = await runCli(['restore', early], { db: other.url, now: AT });
      expectRefused(clash, /a row of usage_events clashes with a row of this database/);
      expect(await snapshot(other.db)).toEqual(before);
    } finally {
      await other.cleanup();
    }
  });

  it('restores a tenant whose invoices match the backup, or that lost them, and verify passes after each', async () => {
    const { db, url } = t();
    await scenario(db);
    const file = await backupTenant(url, 'acme');
    const before = await snapshot(db);
    const acme = (s: Record<string, unknown[]>, table: string) => (s[table] as Array<Record<string, unknown>>).filter((r) => r.tenant_id === 'acme');

    // Usage changed since the backup, invoices did not: the usage is rolled back.
    await db.knex('usage_events').where({ tenant_id: 'acme' }).delete();
    let r = await runCli(['restore', file], { db: url, now: AT });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    let after = await snapshot(db);
    for (const table of ['usage_events', 'invoices', 'invoice_lines']) expect(acme(after, table)).toEqual(acme(before, table));
    await expectVerifyPasses(url);

    // The tenant's invoices were deleted by mistake: the restore fills the gap they left.
    await db.knex('invoice_lines').where({ tenant_id: 'acme' }).delete();
    await db.knex('invoices').where({ tenant_id: 'acme' }).delete();
    expect((await runCli(['verify'], { db: url, now: AT })).code).toBe(1);
    r = await runCli(['restore', file], { db: url, now: AT });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    after = await snapshot(db);
    for (const table of ['invoices', 'invoice_lines']) expect(acme(after, table)).toEqual(acme(before, table));
    await expectVerifyPasses(url);
  });
});

describeEachDb('tenant restore of discounts, taxes, prepaid credits and credit notes', (t) => {
  const rowsOf = (s: Record<string, unknown[]>, table: string, tenant: string) => (s[table] as Array<Record<string, unknown>>).filter((r) => r.tenant_id === tenant);

  it("brings back every §13 row the tenant lost, leaves the other tenant's, and verify passes", async () => {
    const { db, url } = t();
    await scenario(db, ['acme', 'globex'], { commercial: true });
    // basic 10.00 + 50 × 0.05 = 12.50; 10 % off 1.25; VAT 19 % of 11.25 = 2.14; total 13.39;
    // credit 5.00; CN-000001 2.00: due 6.39.
    const inv = await db.knex('invoices').where({ tenant_id: 'acme' }).first();
    expect([inv.number, inv.total, inv.credits_applied, inv.credit_note_total, inv.amount_due]).toEqual(['INV-000001', '13.39', '5.00', '2.00', '6.39']);
    const file = await backupTenant(url, 'acme');
    const before = await snapshot(db);
    for (const table of COMMERCIAL) expect(rowsOf(before, table, 'acme'), table).not.toEqual([]);

    // Lost by mistake: acme's invoices and every §13 row, children first.
    for (const table of ['credit_notes', 'credit_uses', 'discount_uses', 'invoice_lines', 'invoices', 'credit_grants', 'discounts', 'tenant_tax_rates']) {
      await db.knex(table).where({ tenant_id: 'acme' }).delete();
    }
    await db.knex('tenants').where({ id: 'acme' }).update({ taxes_set: false });
    expect((await runCli(['verify'], { db: url, now: AT })).code).toBe(1);
    const r = await runCli(['restore', file], { db: url, now: AT });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const after = await snapshot(db);
    for (const table of [...COMMERCIAL, 'invoices', 'invoice_lines']) {
      expect(rowsOf(after, table, 'acme'), table).toEqual(rowsOf(before, table, 'acme'));
      expect(rowsOf(after, table, 'globex'), table).toEqual(rowsOf(before, table, 'globex'));
    }
    expect(after.tenants).toEqual(before.tenants); // taxes_set is back
    expect(JSON.parse((await runCli(['tax', 'show', 'acme', '--json'], { db: url, now: AT })).stdout).rates).toEqual([{ name: 'VAT', rate: '19', inclusive: false }]);
    await expectVerifyPasses(url);
  });

  it('refuses to undo a credit note issued after the backup', async () => {
    const { db, url } = t();
    await scenario(db, ['acme', 'globex'], { commercial: true });
    const file = await backupTenant(url, 'acme');
    expect((await creditNote(db, 'INV-000001', '2026-02-03T00:00:00Z')).number).toBe('CN-000003');
    const before = await snapshot(db);
    // The invoice it lowered changed too: one more reason.
    expectRefused(await runCli(['restore', file], { db: url, now: AT }), /into tenant "acme": credit note CN-000003 was issued after the backup \(and 1 more\); a tenant restore never rolls back invoices, credit notes/);
    expect(await snapshot(db)).toEqual(before);
    await expectVerifyPasses(url);
  });

  it('refuses credit note numbers this database did not issue, or that are another tenant\'s here', async () => {
    const { db, url, dialect } = t();
    await scenario(db, ['acme', 'globex'], { commercial: true });
    const file = await backupTenant(url, 'acme');
    const other = await freshDb(dialect);
    try {
      // Another database with the same invoices but no credit note yet, where acme lost its invoice.
      await scenario(other.db, ['acme', 'globex']);
      await other.db.knex('invoice_lines').where({ tenant_id: 'acme' }).delete();
      await other.db.knex('invoices').where({ tenant_id: 'acme' }).delete();
      let before = await snapshot(other.db);
      expectRefused(await runCli(['restore', file], { db: other.url, now: AT }), /the backup's credit note CN-000001 was not issued by this database \(its numbers end at 0\)/);
      expect(await snapshot(other.db)).toEqual(before);

      expect((await creditNote(other.db, 'INV-000002')).number).toBe('CN-000001');
      before = await snapshot(other.db);
      expectRefused(await runCli(['restore', file], { db: other.url, now: AT }), /the backup's credit note CN-000001 is numbered like another tenant's credit note here/);
      expect(await snapshot(other.db)).toEqual(before);
    } finally {
      await other.cleanup();
    }
  });
});

/** A backup of acme taken before any invoice, from a database of its own. */
async function backupTenantBefore(): Promise<string> {
  const t = await freshDb('sqlite');
  try {
    const w = world(t.db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '150');
    return await backupTenant(t.url, 'acme');
  } finally {
    await t.cleanup();
  }
}
