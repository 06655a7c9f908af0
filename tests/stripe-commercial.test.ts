// DESIGN.md §13 invoices at the Stripe edge, table-driven in USD, JPY and KWD on both
// databases: a discount, an exclusive tax, an inclusive tax, a commitment true-up and a
// prepaid credit each reach the fake as items that add up to our amount due in Stripe's units.
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { useFakeStripe } from './support/use-fake-stripe.js';
import { T, invoicesByNumber, world } from './invoice-world.js';
import { stripeSync } from '../src/stripe/sync.js';
import { toStripeUnits } from '../src/stripe/currency.js';
import { verifyAgainstStripe } from '../src/stripe/reconcile.js';

const stripe = useFakeStripe();
const JAN = '2026-01-01T00:00:00Z';
const FEB1 = '2026-02-01T01:00:00Z';

// Prices chosen so percentages and taxes need rounding in every currency.
const CURRENCIES = {
  USD: { price: '100.00', unit: '0.01', commitment: '150.00', off: '7.77', grant: '33.33' },
  JPY: { price: '10000', unit: '1', commitment: '15000', off: '777', grant: '3333' },
  KWD: { price: '30.000', unit: '0.001', commitment: '45.000', off: '2.222', grant: '3.333' },
} as const;
type Cur = keyof typeof CURRENCIES;

/** Each case: the CLI calls that shape the tenant, the plan, and the line kinds it must produce. */
const CASES: Array<{ name: string; plan: 'flat' | 'committed'; setup: (tenant: string, c: (typeof CURRENCIES)[Cur]) => string[][]; kinds: string[] }> = [
  {
    name: 'discount',
    plan: 'flat',
    setup: (t, c) => [['discount', 'add', t, '--percent', '15', '--duration', 'forever', '--start', JAN], ['discount', 'add', t, '--amount', c.off, '--duration', 'forever', '--start', JAN]],
    kinds: ['base_fee', 'overage', 'discount', 'discount'],
  },
  { name: 'extax', plan: 'flat', setup: (t) => [['tax', 'set', t, '--name', 'VAT', '--rate', '19']], kinds: ['base_fee', 'overage', 'tax'] },
  { name: 'intax', plan: 'flat', setup: (t) => [['tax', 'set', t, '--name', 'MWST', '--rate', '7.7', '--inclusive']], kinds: ['base_fee', 'overage', 'tax'] },
  { name: 'commit', plan: 'committed', setup: (t) => [['discount', 'add', t, '--percent', '10', '--duration', 'forever', '--start', JAN], ['tax', 'set', t, '--name', 'VAT', '--rate', '19']], kinds: ['base_fee', 'overage', 'commitment', 'discount', 'tax'] },
  { name: 'credit', plan: 'flat', setup: (t, c) => [['tax', 'set', t, '--name', 'VAT', '--rate', '19'], ['credit', 'grant', t, c.grant]], kinds: ['base_fee', 'overage', 'tax', 'prepaid_credit'] },
];

function catalog() {
  return {
    features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
    plans: Object.entries(CURRENCIES).flatMap(([cur, c]) => [
      { key: `flat-${cur.toLowerCase()}`, name: `Flat ${cur}`, currency: cur, price: c.price, interval: 'month', features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: c.unit } } } },
      {
        key: `committed-${cur.toLowerCase()}`, name: `Committed ${cur}`, currency: cur, price: c.price, interval: 'month', minimumCommitment: c.commitment,
        features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: c.unit } } },
      },
    ]),
  };
}

describeEachDb('stripe items of §13 invoices', (t) => {
  it('sum to our amount due in Stripe units for a discount, exclusive and inclusive tax, a commitment and a prepaid credit (USD, JPY, KWD)', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, catalog());
    const tenants: Array<{ id: string; cur: Cur; kinds: string[] }> = [];
    for (const cur of Object.keys(CURRENCIES) as Cur[]) {
      for (const c of CASES) {
        const id = `${cur.toLowerCase()}-${c.name}`;
        await w.tenant(JAN, id);
        await w.subscribe(JAN, id, `${c.plan}-${cur.toLowerCase()}`, 0);
        for (const args of c.setup(id, CURRENCIES[cur])) {
          const r = await runCli(args, { db: url, now: JAN });
          expect(r.stderr, args.join(' ')).toBe('');
        }
        await w.usage('2026-01-15T00:00:00Z', id, 'API_CALL', '2345');
        tenants.push({ id, cur, kinds: c.kinds });
      }
    }
    await w.generate(FEB1, { finalize: true });
    stripe.fake.setNow(T(FEB1));
    const r = await stripeSync(db, stripe.syncOpts(T(FEB1)));
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);

    const invoices = await invoicesByNumber(db);
    const rows = tenants.map(({ id, cur, kinds }) => {
      const inv = invoices.find((i) => i.tenantId === id)!;
      const si = stripe.fake.invoices().find((s) => s.metadata.billing_invoice_id === inv.id)!;
      const items = stripe.fake.invoiceItems().filter((ii) => ii.invoice === si.id);
      return {
        id,
        // A cash-rounding line may close the invoice (KWD); it is an item like any other.
        kinds: inv.lines.map((l) => l.kind).filter((k) => k !== 'rounding'),
        currency: si.currency,
        itemsSum: items.reduce((s, ii) => s + ii.amount, 0),
        total: si.total,
        amountPaid: si.amount_paid,
        ours: toStripeUnits(inv.amountDue, cur),
        want: { id, kinds, currency: cur.toLowerCase() },
      };
    });
    for (const row of rows) {
      expect({ id: row.id, kinds: row.kinds, currency: row.currency }).toEqual(row.want);
      expect({ id: row.id, items: row.itemsSum, total: row.total, paid: row.amountPaid }).toEqual({ id: row.id, items: row.ours, total: row.ours, paid: row.ours });
    }
    // Something was really taken off or added in each case.
    const inv = (id: string) => invoices.find((i) => i.tenantId === id)!;
    expect(inv('usd-credit').amountDue).not.toBe(inv('usd-credit').total);
    expect(inv('jpy-intax').taxes[0]).toMatchObject({ inclusive: true, amount: expect.not.stringMatching(/^0+$/) });
    expect(inv('kwd-extax').lines.find((l) => l.kind === 'tax')!.description).toBe(`VAT 19% on ${inv('kwd-extax').subtotal}`);
    expect(inv('jpy-intax').lines.find((l) => l.kind === 'tax')!.description).toBe(`MWST 7.7% included in ${inv('jpy-intax').subtotal}`);
    expect((await verifyAgainstStripe(db, stripe.config())).drift).toEqual([]);
  });
});
