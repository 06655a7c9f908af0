import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { setQuota } from '../src/subscriptions/quota.js';
import { catalog, expectVerified, invoicesByNumber, shape, T, world } from './invoice-world.js';

describeEachDb('invoice scenarios', (t) => {
  it('bills five tenants over four months: anniversary on the 31st, late usage, trial, price change, upgrade, cancellation', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    for (const id of ['acme', 'globex', 'hooli', 'pied', 'umbrella']) await w.tenant('2026-01-01T00:00:00Z', id);
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '150');
    await w.subscribe('2026-01-31T00:00:00Z', 'globex', 'basic');
    await w.subscribe('2026-02-01T00:00:00Z', 'hooli', 'basic');

    // February 1st: only acme's January has ended.
    let r = await w.generate('2026-02-01T01:00:00Z');
    expect(r.created.map((i) => [i.number, i.tenantId, i.status, i.total])).toEqual([['INV-000001', 'acme', 'draft', '12.50']]);
    let all = await invoicesByNumber(db);
    expect(shape(all[0])).toEqual(['acme', '2026-01-01..2026-02-01', ['base_fee basic@1 10.00', 'overage OCR_SCAN 2.50'], '12.50']);
    expect(all[0].lines[1]).toMatchObject({ quantity: '50', unitPrice: '0.05', amountMinor: '250' });
    expect(all[0].dueAt - all[0].issuedAt).toBe(7 * 86_400_000);

    // Late usage for January arrives with February's.
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '40', '2026-01-20T00:00:00Z');
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '80');
    await w.subscribe('2026-03-01T00:00:00Z', 'umbrella', 'starter'); // 14-day trial

    r = await w.generate('2026-03-01T01:00:00Z');
    expect(r.created.map((i) => i.number)).toEqual(['INV-000002', 'INV-000003', 'INV-000004']);
    all = await invoicesByNumber(db);
    expect(all.slice(1).map(shape)).toEqual([
      ['acme', '2026-02-01..2026-03-01', ['base_fee basic@1 10.00', 'overage OCR_SCAN 0.00', 'late_usage OCR_SCAN 2.00'], '12.00'],
      ['globex', '2026-01-31..2026-02-28', ['base_fee basic@1 10.00'], '10.00'],
      ['hooli', '2026-02-01..2026-03-01', ['base_fee basic@1 10.00'], '10.00'],
    ]);
    const late = all[1].lines[2];
    expect(late.period).toEqual({ start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') });
    expect(late.description).toMatch(/^Late usage for 2026-01-01 to 2026-02-01: OCR scans, \+40 \(now 190\)$/);

    // A price change makes basic v2 at 12.00: hooli keeps v1, pied signs up on v2.
    const applied = await w.apply('2026-03-05T00:00:00Z', catalog('12.00'));
    expect(applied.changes).toContainEqual(expect.objectContaining({ key: 'basic', action: 'new_version', version: 2 }));
    await w.subscribe('2026-03-05T00:00:00Z', 'pied', 'basic');

    r = await w.generate('2026-04-01T01:00:00Z');
    all = await invoicesByNumber(db);
    expect(all.slice(4).map(shape)).toEqual([
      ['acme', '2026-03-01..2026-04-01', ['base_fee basic@1 10.00'], '10.00'],
      ['globex', '2026-02-28..2026-03-31', ['base_fee basic@1 10.00'], '10.00'],
      ['hooli', '2026-03-01..2026-04-01', ['base_fee basic@1 10.00'], '10.00'],
      // trial 1–15 March free; 17 of 31 days of 29.00 = 15.903… → 15.90; API minimum without usage
      ['umbrella', '2026-03-01..2026-04-01', ['base_fee starter@1 15.90', 'minimum API_CALL 2.00'], '17.90'],
    ]);

    await w.cancel('2026-04-15T00:00:00Z', 'globex', 'now');
    await w.change('2026-04-16T00:00:00Z', 'acme', 'pro'); // an upgrade: takes effect now, half-way through April
    await w.usage('2026-04-20T00:00:00Z', 'acme', 'OCR_SCAN', '1200');
    await w.usage('2026-04-20T00:00:00Z', 'umbrella', 'API_CALL', '1500');

    r = await w.generate('2026-05-01T01:00:00Z');
    all = await invoicesByNumber(db);
    expect(all.slice(8).map(shape)).toEqual([
      // 5.00 + 10.00 base; usage rated on pro (in force at period end): 200 × 0.02
      ['acme', '2026-04-01..2026-05-01', ['base_fee basic@1 5.00', 'base_fee pro@1 10.00', 'overage OCR_SCAN 4.00'], '19.00'],
      // canceled on 15 April: the final period ends there, 15 of 30 days
      ['globex', '2026-03-31..2026-04-15', ['base_fee basic@1 5.00'], '5.00'],
      ['hooli', '2026-04-01..2026-05-01', ['base_fee basic@1 10.00'], '10.00'],
      ['pied', '2026-03-05..2026-04-05', ['base_fee basic@2 12.00'], '12.00'],
      // 500 billable × 0.001 = 0.50, topped up to the 2.00 minimum
      ['umbrella', '2026-04-01..2026-05-01', ['base_fee starter@1 29.00', 'overage API_CALL 2.00'], '31.00'],
    ]);
    expect(all.map((i) => i.number)).toEqual(Array.from({ length: 13 }, (_, i) => `INV-${String(i + 1).padStart(6, '0')}`));

    // Idempotent: a rerun finds nothing to do.
    expect(await w.generate('2026-05-01T02:00:00Z')).toEqual({ created: [], skipped: 0 });
    expect(await db.knex('invoices').count({ n: '*' }).first()).toMatchObject({ n: expect.anything() });
    expect(Number((await db.knex('invoices').count({ n: '*' }).first())!.n)).toBe(13);
    await expectVerified(db);
    const audits = await db.knex('audit_log').where({ entity: 'invoice', action: 'create' }).count({ n: '*' }).first();
    expect(Number(audits!.n)).toBe(13);
  });

  it('prices late usage of a feature the invoice had no line for on the terms of when it was invoiced, not a later quota override', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    // January is invoiced without any OCR usage: no OCR line.
    await w.generate('2026-02-01T01:00:00Z');
    // Then the override changes, and January's usage arrives late.
    await setQuota(db, { tenantId: 'acme', featureKey: 'OCR_SCAN', included: '0', unitPrice: '1.00' }, { now: T('2026-02-05T00:00:00Z'), actor: 'test' });
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'OCR_SCAN', '150', '2026-01-20T00:00:00Z');
    await w.generate('2026-03-01T01:00:00Z');
    const all = await invoicesByNumber(db);
    expect(all.map(shape)).toEqual([
      ['acme', '2026-01-01..2026-02-01', ['base_fee basic@1 10.00'], '10.00'],
      // January's terms: 100 included, 0.05 each → 50 × 0.05
      ['acme', '2026-02-01..2026-03-01', ['base_fee basic@1 10.00', 'late_usage OCR_SCAN 2.50'], '12.50'],
    ]);
    await expectVerified(db);
  });

  it('bills a yearly plan once a year and a mid-period downgrade pro rata', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'initech');
    await w.tenant('2026-01-01T00:00:00Z', 'soylent');
    await w.subscribe('2026-01-15T00:00:00Z', 'initech', 'annual');
    await w.usage('2026-03-01T00:00:00Z', 'initech', 'OCR_SCAN', '700');
    await w.usage('2026-11-01T00:00:00Z', 'initech', 'OCR_SCAN', '800');

    await w.subscribe('2026-06-01T00:00:00Z', 'soylent', 'pro');
    await w.change('2026-06-11T00:00:00Z', 'soylent', 'basic', 'now'); // a downgrade, forced to now
    await w.usage('2026-06-20T00:00:00Z', 'soylent', 'OCR_SCAN', '500');

    expect((await w.generate('2026-07-01T01:00:00Z', { tenantId: 'initech' })).created).toEqual([]);
    const june = await w.generate('2026-07-01T01:00:00Z', { tenantId: 'soylent' });
    expect(june.created).toHaveLength(1);
    const jan = await w.generate('2027-01-15T01:00:00Z', { tenantId: 'initech' });
    expect(jan.created).toHaveLength(1);

    const all = await invoicesByNumber(db);
    expect(all.map(shape)).toEqual([
      // 10 days of pro (20 × 1/3 = 6.666… → 6.67) and 20 of basic (10 × 2/3 → 6.67); usage on basic: 400 × 0.05
      ['soylent', '2026-06-01..2026-07-01', ['base_fee pro@1 6.67', 'base_fee basic@1 6.67', 'overage OCR_SCAN 20.00'], '33.34'],
      ['initech', '2026-01-15..2027-01-15', ['base_fee annual@1 120.00', 'overage OCR_SCAN 5.00'], '125.00'],
    ]);
    await expectVerified(db);
  });
});
