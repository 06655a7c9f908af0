// Spend thresholds (DESIGN.md §15) on both databases: a plan's `spendThreshold` gets threshold
// invoices while its period runs, each billing the usage owed so far less what earlier invoices
// of the period billed; the period's final invoice bills the rest, so the invoices of a period
// add up, line kind by line kind and to the minor unit, to the one invoice the same usage
// gets without a threshold — discounts, taxes, commitment and prepaid credit included.
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { T, expectVerified, world } from './invoice-world.js';
import { addDiscount } from '../src/subscriptions/discounts.js';
import { setTenantTax } from '../src/subscriptions/taxes.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { listInvoices } from '../src/invoice/repository.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { dec } from '../src/domain/decimal.js';
import type { Invoice } from '../src/invoice/types.js';

const JAN = '2026-01-01T00:00:00Z';
const plan = (key: string, threshold: string | null) => ({
  key, name: key, currency: 'USD', price: '100.00', interval: 'month', minimumCommitment: '400.00',
  ...(threshold ? { spendThreshold: threshold } : {}),
  features: {
    API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.013' } },
    STORAGE_GB: { included: 5, overage: { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '0.37' }, { upTo: null, unitPrice: '0.11' }] } },
  },
});
const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'STORAGE_GB', name: 'Storage', unit: 'GB', aggregation: 'max' },
  ],
  plans: [plan('metered', '50.00'), plan('plain', null)],
};

/** The money of a set of invoices, summed per total and per line kind. */
function sums(invoices: Invoice[]) {
  const add = (pick: (i: Invoice) => string) => invoices.reduce((s, i) => s.plus(pick(i)), dec(0)).toFixed(2);
  const byKind: Record<string, string> = {};
  for (const l of invoices.flatMap((i) => i.lines)) byKind[l.kind] = dec(byKind[l.kind] ?? 0).plus(l.amount).toFixed(2);
  return { subtotal: add((i) => i.subtotal), discountTotal: add((i) => i.discountTotal), taxTotal: add((i) => i.taxTotal), total: add((i) => i.total), amountDue: add((i) => i.amountDue), byKind };
}

describeEachDb('spend thresholds', (t) => {
  it("a period's threshold invoices and its final invoice add up to the single invoice of the same usage", async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    for (const [tenant, planKey] of [['split', 'metered'], ['whole', 'plain']]) {
      await w.tenant(JAN, tenant);
      await w.subscribe(JAN, tenant, planKey, 0);
      await addDiscount(db, { tenantId: tenant, percent: '7.5', duration: 'forever' }, { now: T(JAN), actor: 'test' });
      await setTenantTax(db, tenant, { name: 'VAT', rate: '19', inclusive: false }, { now: T(JAN), actor: 'test' });
      await setTenantTax(db, tenant, { name: 'CITY', rate: '2.35', inclusive: false }, { now: T(JAN), actor: 'test' });
      await grantCredit(db, { tenantId: tenant, amount: '20.00' }, { now: T(JAN), actor: 'test' });
    }
    const usage = async (at: string, feature: string, q: string) => {
      for (const tenant of ['split', 'whole']) await w.usage(at, tenant, feature, q);
    };
    const generate = async (at: string) => (await w.generate(at, { finalize: true })).created.map((c) => `${c.tenantId} ${c.billingReason} ${c.total}`);

    // 4,901 calls: 3,901 billable × 0.013 = 50.713 → 50.71 reaches 50.00; less 7.5% (3.80), plus VAT 8.91 and CITY 1.10.
    await usage('2026-01-05T00:00:00Z', 'API_CALL', '4901');
    expect(await generate('2026-01-05T01:00:00Z')).toEqual(['split threshold 56.92']);
    // A rerun at once finds nothing new to bill; 1,000 more calls (13.00) stay below the threshold.
    expect(await generate('2026-01-05T02:00:00Z')).toEqual([]);
    await usage('2026-01-09T00:00:00Z', 'API_CALL', '1000');
    expect(await generate('2026-01-09T01:00:00Z')).toEqual([]);
    // Storage peaks at 187 GB: 95 × 0.37 + 87 × 0.11 = 44.72, with the 13.00 of calls 57.72 unbilled.
    await usage('2026-01-12T00:00:00Z', 'STORAGE_GB', '187');
    expect(await generate('2026-01-12T01:00:00Z')).toHaveLength(1);
    await usage('2026-01-20T00:00:00Z', 'API_CALL', '333');
    const final = await generate('2026-02-01T01:00:00Z');
    expect(final.sort()).toEqual([expect.stringMatching(/^split period /), expect.stringMatching(/^whole period /)]);

    const all = await listInvoices(db);
    const split = all.filter((i) => i.tenantId === 'split');
    const whole = all.filter((i) => i.tenantId === 'whole');
    expect(split.map((i) => i.billingReason)).toEqual(['threshold', 'threshold', 'period']);
    expect(whole).toHaveLength(1);
    expect(sums(split)).toEqual(sums(whole));
    // Only the final invoice has the base fee and the commitment true-up.
    expect(split[2].lines.map((l) => l.kind)).toContain('base_fee');
    expect(split.slice(0, 2).flatMap((i) => i.lines.map((l) => l.kind))).not.toContain('base_fee');
    await expectVerified(db);
    // Each threshold invoice announces itself, with the threshold and what it billed.
    const announced = (await db.knex('webhook_events').where({ tenant_id: 'split', type: 'threshold.invoiced' }).orderBy('created_at').select('body')).map((e) => JSON.parse(e.body).data);
    expect(announced.map((d) => [d.threshold, d.invoice.number, d.unbilled === d.invoice.subtotal])).toEqual(split.slice(0, 2).map((i) => ['50.00', i.number, true]));

    const json = JSON.parse((await runCli(['invoice', 'list', '--tenant', 'split', '--json'], { db: url, now: '2026-02-02T00:00:00Z' })).stdout);
    expect(json.map((i: { billingReason: string }) => i.billingReason).sort()).toEqual(['period', 'threshold', 'threshold']);
  });

  it('two runs at once issue one threshold invoice, and a run below the threshold uses no invoice number', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'metered', 0);
    await w.usage('2026-01-03T00:00:00Z', 'acme', 'API_CALL', '1500');
    const cli = (now: string) => runCli(['invoice', 'generate', '--finalize', '--json'], { db: url, now });
    expect(JSON.parse((await cli('2026-01-03T01:00:00Z')).stdout).created).toEqual([]);
    await w.usage('2026-01-04T00:00:00Z', 'acme', 'API_CALL', '5000');
    const runs = await Promise.all([cli('2026-01-04T01:00:00Z'), cli('2026-01-04T01:00:00Z')]);
    const created = runs.flatMap((r) => JSON.parse(r.stdout).created);
    expect(created.map((c: { number: string; billingReason: string }) => `${c.number} ${c.billingReason}`)).toEqual(['INV-000001 threshold']);
    await expectVerified(db);
  });

  it('verify names a threshold tax or discount that does not add up with the period', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'metered', 0);
    await addDiscount(db, { tenantId: 'acme', percent: '10', duration: 'forever' }, { now: T(JAN), actor: 'test' });
    await setTenantTax(db, 'acme', { name: 'VAT', rate: '19', inclusive: false }, { now: T(JAN), actor: 'test' });
    await w.usage('2026-01-03T00:00:00Z', 'acme', 'API_CALL', '6000');
    await w.generate('2026-01-03T01:00:00Z', { finalize: true });
    await w.usage('2026-01-13T00:00:00Z', 'acme', 'API_CALL', '777');
    await w.generate('2026-02-01T01:00:00Z', { finalize: true });
    await expectVerified(db);
    const final = (await listInvoices(db)).find((i) => i.billingReason === 'period')!;
    const tax = final.lines.find((l) => l.kind === 'tax')!;
    const details = { ...(tax.details as object), billedBefore: '0.01' };
    await db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: final.id, line_no: tax.lineNo }).update({ details: JSON.stringify(details) });
    const r = await verifyInvoices(db);
    expect(r.violations.map((x) => x.check)).toContain('threshold');
    expect(r.violations.find((x) => x.check === 'threshold')!.message).toMatch(/^VAT says 0.01 was added/);
  });
});
