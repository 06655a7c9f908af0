import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world } from './invoice-world.js';
import type { Db } from '../src/storage/db.js';

async function scenario(db: Db): Promise<void> {
  const w = world(db);
  await w.apply('2026-01-01T00:00:00Z');
  for (const id of ['acme', 'globex']) {
    await w.tenant('2026-01-01T00:00:00Z', id);
    await w.subscribe('2026-01-01T00:00:00Z', id, 'basic');
    await w.usage('2026-01-10T00:00:00Z', id, 'OCR_SCAN', '150');
  }
  await w.generate('2026-02-01T01:00:00Z', { finalize: true });
  await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '40', '2026-01-20T00:00:00Z');
  await w.generate('2026-03-01T01:00:00Z');
}

async function verify(url: string) {
  const r = await runCli(['verify', '--json'], { db: url });
  return { code: r.code, report: JSON.parse(r.stdout) as { ok: boolean; violations: Array<{ check: string; invoice?: string; message: string }> } };
}

describeEachDb('billing verify', (t) => {
  it('passes on a clean database and reports a tampered line amount and a non-decimal total', async () => {
    const { db, url } = t();
    await scenario(db);
    const clean = await runCli(['verify'], { db: url });
    expect(clean.stdout).toMatch(/^ok: 4 invoice\(s\), 7 line\(s\) checked, no violations/);
    expect(clean.code).toBe(0);

    const jan = await db.knex('invoices').where({ tenant_id: 'acme', number: 'INV-000001' }).first();
    await db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: jan.id, line_no: 2 }).update({ amount: '3.50', amount_minor: 350 });
    let r = await verify(url);
    expect(r.code).toBe(1);
    expect(r.report.ok).toBe(false);
    const checks = r.report.violations.map((v) => `${v.check} ${v.invoice}`);
    expect(checks).toContain('recompute INV-000001'); // the line no longer matches its quantity and snapshot
    expect(checks).toContain('total INV-000001'); // nor does the invoice total match its lines

    await db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: jan.id, line_no: 2 }).update({ amount: '2.50', amount_minor: 250 });
    expect((await verify(url)).code).toBe(0);
    await db.knex('invoices').where({ id: jan.id }).update({ total: 'NaN' });
    r = await verify(url);
    expect(r.report.violations).toEqual([expect.objectContaining({ check: 'decimal', invoice: 'INV-000001' })]);

    await db.knex('invoices').where({ id: jan.id }).update({ total: '12.50' });
    await db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: jan.id, line_no: 2 }).update({ details: '{not json' });
    r = await verify(url);
    expect(r.report.violations).toEqual([expect.objectContaining({ check: 'recompute', invoice: 'INV-000001', line: 2 })]);
  });

  it('reports late usage priced on terms other than those its period was invoiced with', async () => {
    const { db, url } = t();
    await scenario(db);
    expect((await verify(url)).code).toBe(0);
    const jan = await db.knex('invoices').where({ tenant_id: 'acme', number: 'INV-000001' }).first();
    const terms = JSON.parse(jan.feature_terms);
    terms.OCR_SCAN.overage.unitPrice = '0.07';
    await db.knex('invoices').where({ id: jan.id }).update({ feature_terms: JSON.stringify(terms) });
    const r = await verify(url);
    expect(r.code).toBe(1);
    expect(r.report.violations).toEqual([expect.objectContaining({ check: 'late_terms', invoice: 'INV-000003' })]);
    expect(r.report.violations[0].message).toMatch(/^late_usage OCR_SCAN for the period starting 2026-01-01/);
    await db.knex('invoices').where({ id: jan.id }).update({ feature_terms: '{not json' });
    expect((await verify(url)).report.violations.map((v) => v.check)).toContain('late_terms');
  });

  it('reports an invoice duplicated behind a dropped unique index, as a duplicate and as double billing', async () => {
    const { db, url } = t();
    await scenario(db);
    const src = await db.knex('invoices').where({ tenant_id: 'globex', number: 'INV-000002' }).first();
    const lines = await db.knex('invoice_lines').where({ tenant_id: 'globex', invoice_id: src.id });
    await db.knex.raw('DROP INDEX invoices_current_period');
    await db.knex('invoices').insert({ ...src, id: 'in_copy', number: 'INV-000005' });
    await db.knex('invoice_lines').insert(lines.map((l) => ({ ...l, invoice_id: 'in_copy' })));
    await db.knex('invoice_counters').update({ last_number: 5 });

    const r = await verify(url);
    expect(r.code).toBe(1);
    const checks = r.report.violations.map((v) => `${v.check} ${v.invoice}`);
    expect(checks).toContain('duplicate INV-000005');
    expect(checks).toContain('double_billing INV-000005');
    const human = await runCli(['verify'], { db: url });
    expect(human.code).toBe(1);
    expect(human.stdout).toMatch(/INV-000002 and INV-000005 both bill subscription/);
  });
});
