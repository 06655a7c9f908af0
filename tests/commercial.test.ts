// DESIGN.md §13's worked example through the CLI on both databases: a minimum commitment, a
// forever discount, exclusive VAT, a prepaid grant and a credit note; then taxes (inclusive,
// per-tenant over the catalog default), credit grants' order and expiry, and credit notes on
// open and paid invoices, each checked by `billing verify`.
import { expect, it } from 'vitest';
import type { Db } from '../src/storage/db.js';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { T, expectVerified, invoicesByNumber, world } from './invoice-world.js';
import { markInvoicePaid } from '../src/invoice/lifecycle.js';

const JAN = '2026-01-01T00:00:00Z';

function growthCatalog(extra: Record<string, unknown> = {}) {
  return {
    features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
    plans: [
      {
        key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month', minimumCommitment: '150.00',
        features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } } },
      },
      { key: 'eur', name: 'EUR', currency: 'EUR', price: '119.00', interval: 'month', features: {} },
      { key: 'jpy', name: 'JPY', currency: 'JPY', price: '1000', interval: 'month', features: {} },
    ],
    ...extra,
  };
}

/** The worked example through the CLI: acme on growth, 10 % forever, VAT 19 %, a 50.00 grant, 3,000 calls, January invoiced. */
async function workedExampleJanuary(db: Db, url: string) {
  const w = world(db);
  const cli = (args: string[], now = JAN) => runCli(args, { db: url, now });
  await w.apply(JAN, growthCatalog());
  await w.tenant(JAN, 'acme');
  await w.subscribe(JAN, 'acme', 'growth', 0);
  const discount = await cli(['discount', 'add', 'acme', '--percent', '10', '--duration', 'forever', '--start', JAN]);
  const tax = await cli(['tax', 'set', 'acme', '--name', 'VAT', '--rate', '19']);
  const grant = await cli(['credit', 'grant', 'acme', '50.00']);
  await w.usage('2026-01-15T00:00:00Z', 'acme', 'API_CALL', '3000');
  const generate = await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z');
  return { w, cli, steps: { discount, tax, grant, generate } };
}

describeEachDb('§13 commercial invoice', (t) => {
  it('the worked example: commitment, 10 % forever, VAT 19 %, a 50.00 grant and a 20.00 credit note', async () => {
    const { db, url } = t();
    const { w, cli, steps } = await workedExampleJanuary(db, url);
    expect(steps.discount.code).toBe(0);
    expect(steps.tax.stdout).toBe('acme: VAT 19%\n');
    expect(steps.grant.stdout).toMatch(/^cg_[0-9a-f]{16}\n$/);
    expect(steps.generate.code).toBe(0);

    let [jan] = await invoicesByNumber(db);
    expect(jan.lines.map((l) => `${l.kind} ${l.amount}`)).toEqual([
      'base_fee 100.00', 'overage 20.00', 'commitment 30.00', 'discount -15.00', 'tax 25.65', 'prepaid_credit -50.00',
    ]);
    const shown = JSON.parse((await cli(['invoice', 'show', jan.number, '--json'])).stdout);
    expect(shown).toMatchObject({
      subtotal: '150.00', discountTotal: '15.00', taxes: [{ name: 'VAT', rate: '19', inclusive: false, base: '135.00', amount: '25.65' }],
      taxTotal: '25.65', total: '160.65', creditsApplied: '50.00', creditNotes: [], amountDue: '110.65',
    });
    expect(JSON.parse((await cli(['credit', 'balance', 'acme', '--json'], '2026-02-01T02:00:00Z')).stdout).balances).toEqual([{ currency: 'USD', balance: '0.00', grants: 0 }]);

    const note = await cli(['credit-note', 'create', jan.number, '--amount', '20.00', '--reason', 'outage'], '2026-02-02T00:00:00Z');
    expect(note.stdout).toBe(`CN-000001  ${jan.number}  20.00 USD  amount due −20.00\n`);
    [jan] = await invoicesByNumber(db);
    expect([jan.amountDue, jan.creditNotes]).toEqual(['90.65', [{ number: 'CN-000001', amount: '20.00', dueReduction: '20.00' }]]);
    const text = (await cli(['invoice', 'show', jan.number])).stdout;
    const block = text.slice(text.indexOf('\nSubtotal') + 1).split('\n').map((l) => l.replace(/ {2,}/g, ' | '));
    expect(block).toEqual([
      'Subtotal | 150.00 USD',
      expect.stringMatching(/^.*10% .* \| -15\.00 USD$/),
      'VAT 19% on 135.00 | 25.65 USD',
      'Total | 160.65 USD',
      'Prepaid credit applied | -50.00 USD',
      'Credit note CN-000001 | -20.00 USD',
      'Amount due | 90.65 USD',
      '',
    ]);
    const csv = (await cli(['invoice', 'export', jan.number, '--format', 'csv'])).stdout.trim().split('\n').map((l) => l.split(','));
    const kind = csv[0].indexOf('kind');
    expect(csv.slice(1 + jan.lines.length).map((r) => `${r[kind]} ${r.at(-1)}`)).toEqual([
      'subtotal 150.00', 'discount -15.00', 'tax 25.65', 'total 160.65', 'credits_applied -50.00', 'credit_note -20.00', 'amount_due 90.65',
    ]);

    await w.usage('2026-02-15T00:00:00Z', 'acme', 'API_CALL', '10000');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-03-01T01:00:00Z')).code).toBe(0);
    const [, feb] = await invoicesByNumber(db);
    expect(feb.lines.map((l) => `${l.kind} ${l.amount}`)).toEqual(['base_fee 100.00', 'overage 90.00', 'discount -19.00', 'tax 32.49']);
    expect([feb.subtotal, feb.discountTotal, feb.taxTotal, feb.total, feb.creditsApplied, feb.amountDue]).toEqual(['190.00', '19.00', '32.49', '203.49', '0.00', '203.49']);
    await expectVerified(db);
    expect((await cli(['verify'])).code).toBe(0);
  });
});

/** One plan per case; each case is a tenant of its own. */
const tableCatalog = {
  features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
  plans: [
    { key: 'usd100', name: 'USD 100', currency: 'USD', price: '100.00', interval: 'month', features: {} },
    { key: 'usd10', name: 'USD 10', currency: 'USD', price: '10.00', interval: 'month', features: {} },
    { key: 'jpy', name: 'JPY', currency: 'JPY', price: '1000', interval: 'month', features: {} },
    { key: 'kwd', name: 'KWD', currency: 'KWD', price: '2.125', interval: 'month', features: {} },
    { key: 'commit', name: 'Commit', currency: 'USD', price: '10.00', interval: 'month', minimumCommitment: '30.00', features: {} },
  ],
};

interface Case {
  plan: string;
  trialDays?: number;
  /** CLI commands run at JAN, with TENANT standing for the case's tenant. */
  setup: string[][];
  /** Per month (Jan, Feb, Mar): the lines as "kind amount", then total and amount due. */
  months: Array<[string[], string, string]>;
  /** The invoices that used a grant up, in order. */
  depletedOn?: string[];
}

// Hand-computed from DESIGN.md §13's order of operations.
const CASES: Record<string, Case> = {
  // Percentages first, each on the subtotal, in creation order; then fixed amounts.
  'stacked discounts (USD): 10 % and 20 % of 100.00, then 5.00 added first': {
    plan: 'usd100',
    setup: [
      ['discount', 'add', 'TENANT', '--amount', '5.00', '--duration', 'forever', '--start', JAN],
      ['discount', 'add', 'TENANT', '--percent', '10', '--duration', 'forever', '--start', JAN],
      ['discount', 'add', 'TENANT', '--percent', '20', '--duration', 'forever', '--start', JAN],
    ],
    months: [
      [['base_fee 100.00', 'discount -10.00', 'discount -20.00', 'discount -5.00'], '65.00', '65.00'],
      [['base_fee 100.00', 'discount -10.00', 'discount -20.00', 'discount -5.00'], '65.00', '65.00'],
    ],
  },
  // 1000 − 1000 / 1.1 = 90.909… → 91, already in the price: shown, not added.
  'inclusive tax (JPY 10 %): total stays 1000': {
    plan: 'jpy',
    setup: [['tax', 'set', 'TENANT', '--name', 'JCT', '--rate', '10', '--inclusive']],
    months: [[['base_fee 1000', 'tax 0'], '1000', '1000']],
  },
  // 5 % of 2.125 = 0.10625 → 0.106; 2.231 is collected as 2.230.
  'exclusive tax then cash rounding (KWD 5 %)': {
    plan: 'kwd',
    setup: [['tax', 'set', 'TENANT', '--name', 'VAT', '--rate', '5']],
    months: [[['base_fee 2.125', 'tax 0.106', 'rounding -0.001'], '2.231', '2.230']],
  },
  'a credit larger than the total (25.00 on 10.00 a month) lasts two and a half months': {
    plan: 'usd10',
    setup: [['credit', 'grant', 'TENANT', '25.00']],
    months: [
      [['base_fee 10.00', 'prepaid_credit -10.00'], '10.00', '0.00'],
      [['base_fee 10.00', 'prepaid_credit -10.00'], '10.00', '0.00'],
      [['base_fee 10.00', 'prepaid_credit -5.00'], '10.00', '5.00'],
    ],
    depletedOn: ['INV-000003'],
  },
  'an expired grant is not applied': {
    plan: 'usd10',
    setup: [['credit', 'grant', 'TENANT', '50.00', '--expires', '2026-01-20T00:00:00Z']],
    months: [[['base_fee 10.00'], '10.00', '10.00']],
  },
  // Lowest priority number first, then earliest expiry, then oldest.
  'grants in priority, then expiry order': {
    plan: 'usd10',
    setup: [
      ['credit', 'grant', 'TENANT', '5.00', '--priority', '1'],
      ['credit', 'grant', 'TENANT', '4.00'],
      ['credit', 'grant', 'TENANT', '3.00', '--expires', '2026-02-15T00:00:00Z'],
    ],
    months: [
      [['base_fee 10.00', 'prepaid_credit -3.00', 'prepaid_credit -4.00', 'prepaid_credit -3.00'], '10.00', '0.00'],
      [['base_fee 10.00', 'prepaid_credit -2.00'], '10.00', '8.00'],
    ],
    depletedOn: ['INV-000001', 'INV-000001', 'INV-000002'],
  },
  'a repeating discount ends after its periods': {
    plan: 'usd10',
    setup: [['discount', 'add', 'TENANT', '--percent', '50', '--duration', 'repeating', '--periods', '2', '--start', JAN]],
    months: [
      [['base_fee 10.00', 'discount -5.00'], '5.00', '5.00'],
      [['base_fee 10.00', 'discount -5.00'], '5.00', '5.00'],
      [['base_fee 10.00'], '10.00', '10.00'],
    ],
  },
  // A 15-day trial: 16 of January's 31 days are paid. 30.00 × 16/31 = 15.48 committed,
  // 10.00 × 16/31 = 5.16 billed: a 10.32 true-up. February: 30.00 − 10.00.
  'a minimum commitment prorated for a partial period': {
    plan: 'commit',
    trialDays: 15,
    setup: [],
    months: [
      [['base_fee 5.16', 'commitment 10.32'], '15.48', '15.48'],
      [['base_fee 10.00', 'commitment 20.00'], '30.00', '30.00'],
    ],
  },
};

const MONTH_ENDS = ['2026-02-01T01:00:00Z', '2026-03-01T01:00:00Z', '2026-04-01T01:00:00Z'];

describeEachDb('§13 order of operations and rounding, table-driven', (t) => {
  it.each(Object.entries(CASES))('%s', async (_name, c) => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, tableCatalog);
    await w.tenant(JAN, 'ten');
    await w.subscribe(JAN, 'ten', c.plan, c.trialDays ?? 0);
    for (const args of c.setup) {
      const r = await runCli(args.map((a) => (a === 'TENANT' ? 'ten' : a)), { db: url, now: JAN });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    for (let m = 0; m < c.months.length; m++) {
      expect((await runCli(['invoice', 'generate', '--finalize'], { db: url, now: MONTH_ENDS[m] })).code).toBe(0);
    }
    const invoices = await invoicesByNumber(db);
    expect(invoices.slice(0, c.months.length).map((i) => [i.lines.map((l) => `${l.kind} ${l.amount}`), i.total, i.amountDue])).toEqual(c.months);
    await expectVerified(db);
    // The invoice that uses a grant up records it as an event, once.
    const depleted = await db.knex('audit_log').where({ tenant_id: 'ten', entity: 'credit_grant', action: 'depleted' }).orderBy('at');
    const byInvoice = new Map(invoices.map((i) => [i.id, i.number]));
    expect(depleted.map((r) => byInvoice.get(JSON.parse(r.after).invoiceId))).toEqual(c.depletedOn ?? []);
  });
});

describeEachDb('§13 credit notes on open and paid invoices', (t) => {
  it('open: lowers the amount due; paid: becomes prepaid credit used by the next invoice; --refund: neither; never past the creditable amount', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    await w.apply(JAN, tableCatalog);
    for (const id of ['open', 'paid', 'refund']) {
      await w.tenant(JAN, id);
      await w.subscribe(JAN, id, 'usd10', 0);
    }
    expect((await cli(['invoice', 'generate', '--finalize'], MONTH_ENDS[0])).code).toBe(0);
    const byTenant = async () => new Map((await invoicesByNumber(db)).map((i) => [i.tenantId, i]));
    let jan = await byTenant();
    // Paid as a Stripe webhook would record it.
    for (const id of ['paid', 'refund']) await markInvoicePaid(db, jan.get(id)!.id, { now: T('2026-02-02T00:00:00Z'), actor: 'test' });

    const open = await cli(['credit-note', 'create', jan.get('open')!.number, '--amount', '4.00', '--reason', 'outage'], '2026-02-03T00:00:00Z');
    expect(open.code, open.stderr).toBe(0);
    const paid = await cli(['credit-note', 'create', jan.get('paid')!.number, '--amount', '4.00', '--reason', 'outage'], '2026-02-03T00:00:00Z');
    expect(paid.code, paid.stderr).toBe(0);
    const refund = await cli(['credit-note', 'create', jan.get('refund')!.number, '--amount', '4.00', '--reason', 'outage', '--refund'], '2026-02-03T00:00:00Z');
    expect(refund.code, refund.stderr).toBe(0);
    // 4.00 + 7.00 would pass the 10.00 total.
    const over = await cli(['credit-note', 'create', jan.get('open')!.number, '--amount', '7.00', '--reason', 'again'], '2026-02-03T00:00:00Z');
    expect([over.code, over.stdout]).toEqual([2, '']);
    expect(over.stderr).toMatch(/at most 6\.00 USD can be credited/);

    jan = await byTenant();
    expect(jan.get('open')!.amountDue).toBe('6.00');
    expect(jan.get('paid')!.amountDue).toBe('10.00');
    expect(JSON.parse((await cli(['credit', 'balance', 'paid', '--json'], '2026-02-04T00:00:00Z')).stdout).balances).toEqual([{ currency: 'USD', balance: '4.00', grants: 1 }]);
    expect(JSON.parse((await cli(['credit', 'balance', 'refund', '--json'], '2026-02-04T00:00:00Z')).stdout).balances).toEqual([]);
    const notes = JSON.parse((await cli(['credit-note', 'list', '--json'], '2026-02-04T00:00:00Z')).stdout);
    expect(notes.map((n: any) => [n.number, n.tenant, n.amount, n.refund])).toEqual([
      ['CN-000001', 'open', '4.00', false], ['CN-000002', 'paid', '4.00', false], ['CN-000003', 'refund', '4.00', true],
    ]);

    const csv = (await cli(['credit-note', 'export', '--tenant', 'paid'], '2026-02-04T00:00:00Z')).stdout.trim().split('\n').map((l) => l.split(','));
    expect(csv[0].slice(0, 4)).toEqual(['number', 'id', 'tenant', 'invoice']);
    expect(csv.slice(1).map((r) => [r[0], r[2], r[csv[0].indexOf('amount')], r[csv[0].indexOf('credited')], r[csv[0].indexOf('reason')]])).toEqual([['CN-000002', 'paid', '4.00', '4.00', 'outage']]);
    expect(JSON.parse((await cli(['credit-note', 'export', '--format', 'json'], '2026-02-04T00:00:00Z')).stdout)).toEqual(notes);

    expect((await cli(['invoice', 'generate', '--finalize'], MONTH_ENDS[1])).code).toBe(0);
    const feb = (await invoicesByNumber(db)).filter((i) => i.period.start === T('2026-02-01T00:00:00Z'));
    expect(feb.map((i) => [i.tenantId, i.lines.map((l) => `${l.kind} ${l.amount}`), i.amountDue])).toEqual([
      ['open', ['base_fee 10.00'], '10.00'],
      ['paid', ['base_fee 10.00', 'prepaid_credit -4.00'], '6.00'],
      ['refund', ['base_fee 10.00'], '10.00'],
    ]);
    await expectVerified(db);
  });
});

describeEachDb('billing verify: §13 invariants', (t) => {
  it('names a corrupted tax, commitment, amount due, credit use and credit note, and passes once each is restored', async () => {
    const { db, url } = t();
    const { cli } = await workedExampleJanuary(db, url);
    const [jan] = await invoicesByNumber(db);
    expect((await cli(['credit-note', 'create', jan.number, '--amount', '20.00', '--reason', 'outage'], '2026-02-02T00:00:00Z')).code).toBe(0);
    expect((await cli(['verify'])).code).toBe(0);

    const line = (kind: string) => db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: jan.id, kind });
    const corruptions: Array<[string, () => Promise<unknown>, () => Promise<unknown>, RegExp]> = [
      ['tax', () => line('tax').update({ amount: '25.66', amount_precise: '25.66', amount_minor: 2566 }), () => line('tax').update({ amount: '25.65', amount_precise: '25.65', amount_minor: 2565 }), /VAT line amount 25\.66 but its tax is 25\.65/],
      ['commitment', () => line('commitment').update({ amount: '31.00', amount_precise: '31.00', amount_minor: 3100 }), () => line('commitment').update({ amount: '30.00', amount_precise: '30.00', amount_minor: 3000 }), /commitment 31\.00/],
      ['amount due', () => db.knex('invoices').where({ tenant_id: 'acme', id: jan.id }).update({ amount_due: '110.65' }), () => db.knex('invoices').where({ tenant_id: 'acme', id: jan.id }).update({ amount_due: '90.65' }), /amount_due 110\.65 but total − credits applied \(\+ rounding\) − credit notes is 90\.65/],
      ['credit use', () => db.knex('credit_uses').where({ tenant_id: 'acme' }).update({ amount: '60.00' }), () => db.knex('credit_uses').where({ tenant_id: 'acme' }).update({ amount: '50.00' }), /gave 60\.00 of 50\.00: its balance went negative/],
      ['credit note', () => db.knex('credit_notes').where({ tenant_id: 'acme' }).update({ amount: '200.00', credited: '180.00' }), () => db.knex('credit_notes').where({ tenant_id: 'acme' }).update({ amount: '20.00', credited: '0.00' }), /credit notes 200\.00 exceed the invoice total 160\.65/],
    ];
    for (const [name, corrupt, restore, message] of corruptions) {
      await corrupt();
      const r = await cli(['verify', '--json']);
      expect(r.code, name).toBe(1);
      const messages = JSON.parse(r.stdout).violations.map((v: any) => `${v.check}: ${v.message}`);
      expect(messages.some((m: string) => message.test(m)), `${name}: ${messages.join(' | ')}`).toBe(true);
      await restore();
      expect((await cli(['verify'])).code, `${name} restored`).toBe(0);
    }
  });
});
