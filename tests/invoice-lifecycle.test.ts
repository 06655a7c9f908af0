import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { expectVerified, invoicesByNumber, shape, T, world } from './invoice-world.js';
import { finalizeInvoice, markInvoicePaid, markInvoiceUncollectible, voidInvoice } from '../src/invoice/lifecycle.js';
import { getInvoice, insertLines, listInvoices } from '../src/invoice/repository.js';
import { previewInvoice } from '../src/invoice/generate.js';
import { withTx } from '../src/storage/sql.js';

const opts = (at: string) => ({ now: T(at), actor: 'test' });

describeEachDb('invoice lifecycle', (t) => {
  it('finalizes, freezes lines, voids and reissues a period without billing late usage twice', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '150');
    await w.generate('2026-02-01T01:00:00Z');
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '40', '2026-01-20T00:00:00Z');
    const feb = await w.generate('2026-03-01T01:00:00Z', { finalize: true });
    expect(feb.created.map((i) => [i.number, i.status, i.total, i.finalizedAt])).toEqual([['INV-000002', 'open', '12.00', T('2026-03-01T01:00:00Z')]]);

    // draft → open: issued and due from now; a second finalize changes nothing.
    const fin = await finalizeInvoice(db, 'INV-000001', { ...opts('2026-02-02T00:00:00Z'), dueDays: 30 });
    expect(fin).toMatchObject({ changed: true, invoice: { status: 'open', issuedAt: T('2026-02-02T00:00:00Z'), dueAt: T('2026-03-04T00:00:00Z') } });
    expect((await finalizeInvoice(db, 'INV-000001', opts('2026-02-03T00:00:00Z'))).changed).toBe(false);

    // An open invoice's lines are immutable.
    const jan = await getInvoice(db, 'INV-000001');
    await expect(withTx(db, (trx) => insertLines(trx, jan.id, [{ ...jan.lines[0], lineNo: 99 }]))).rejects.toMatchObject({
      code: 'conflict',
      message: expect.stringMatching(/INV-000001 is open: its lines are immutable/),
    });

    // Paid is final: it cannot be voided.
    expect((await markInvoicePaid(db, 'INV-000002', { ...opts('2026-03-05T00:00:00Z'), reference: 'pi_123' })).invoice).toMatchObject({
      status: 'paid', paidAt: T('2026-03-05T00:00:00Z'), paymentRef: 'pi_123',
    });
    expect((await markInvoicePaid(db, 'INV-000002', opts('2026-03-06T00:00:00Z'))).changed).toBe(false);
    await expect(voidInvoice(db, 'INV-000002', { ...opts('2026-03-06T00:00:00Z'), reason: 'x' })).rejects.toMatchObject({ code: 'conflict' });
    await expect(voidInvoice(db, 'INV-000001', { ...opts('2026-03-06T00:00:00Z'), reason: '  ' })).rejects.toMatchObject({ code: 'usage' });

    // Void January and regenerate it: a new number, and its usage line bills only what the
    // February invoice's late line did not (190 scans → 4.50 due, 2.00 already billed).
    const voided = await voidInvoice(db, jan.id, { ...opts('2026-03-06T00:00:00Z'), reason: 'wrong billing address' });
    expect(voided.invoice).toMatchObject({ status: 'void', voidReason: 'wrong billing address', voidedAt: T('2026-03-06T00:00:00Z') });
    const again = await w.generate('2026-03-06T01:00:00Z');
    expect(again.created.map((i) => [i.number, i.supersedes])).toEqual([['INV-000003', jan.id]]);
    const reissued = await getInvoice(db, 'INV-000003');
    expect(shape(reissued)).toEqual(['acme', '2026-01-01..2026-02-01', ['base_fee basic@1 10.00', 'overage OCR_SCAN 2.50'], '12.50']);
    expect(reissued.lines[1].details).toMatchObject({ usedTotal: '190', dueAmount: '4.50', billedBefore: '2.00' });
    expect(await w.generate('2026-03-06T02:00:00Z')).toEqual({ created: [], skipped: 0 });
    await expectVerified(db);

    // A draft cannot be given up on; an open one can, and may still be paid later.
    await expect(markInvoiceUncollectible(db, 'INV-000003', opts('2026-03-07T00:00:00Z'))).rejects.toMatchObject({ code: 'conflict' });
    await finalizeInvoice(db, 'INV-000003', opts('2026-03-07T00:00:00Z'));
    expect((await markInvoiceUncollectible(db, 'INV-000003', opts('2026-04-01T00:00:00Z'))).invoice.status).toBe('uncollectible');
    expect((await markInvoicePaid(db, 'INV-000003', opts('2026-04-02T00:00:00Z'))).invoice.status).toBe('paid');
    await expect(markInvoicePaid(db, 'nope', opts('2026-04-02T00:00:00Z'))).rejects.toMatchObject({ code: 'not_found' });

    expect((await listInvoices(db, { status: 'void' })).map((i) => i.number)).toEqual(['INV-000001']);
    const trail = await db.knex('audit_log').where({ entity: 'invoice' }).orderBy('id').select('entity_id', 'action');
    expect(trail.map((a) => a.action)).toEqual(['create', 'create', 'finalize', 'finalize', 'paid', 'void', 'create', 'finalize', 'uncollectible', 'paid']);
    await expectVerified(db);
  });

  it('previews the current period without writing anything', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '130');
    const counts = async () =>
      Promise.all(['invoices', 'invoice_lines', 'usage_summaries', 'audit_log'].map(async (tb) => Number((await db.knex(tb).count({ n: '*' }).first())!.n)));
    const before = await counts();
    const p = await previewInvoice(db, { now: T('2026-01-20T00:00:00Z'), tenantId: 'acme' });
    expect(shape(p!)).toEqual(['acme', '2026-01-01..2026-02-01', ['base_fee basic@1 10.00', 'overage OCR_SCAN 1.50'], '11.50']);
    expect(await counts()).toEqual(before);
    const dry = await w.generate('2026-03-01T00:00:00Z', { dryRun: true });
    expect(dry.created.map((i) => [i.id, i.number, i.total])).toEqual([['(new)', '(new)', '11.50'], ['(new)', '(new)', '10.00']]);
    expect(await counts()).toEqual(before);
    expect(await previewInvoice(db, { now: T('2025-12-01T00:00:00Z'), tenantId: 'acme' })).toBeNull();
    await expect(previewInvoice(db, { now: T('2026-01-20T00:00:00Z'), tenantId: 'nobody' })).rejects.toMatchObject({ code: 'not_found' });
    expect((await invoicesByNumber(db)).length).toBe(0);
  });
});
