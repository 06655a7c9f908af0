// Discounts (DESIGN.md §13 step 2) through the real pipeline on both databases: the worked
// examples, ordering and the floor at zero, once / repeating uses and a void giving one back,
// Stripe's amount_due equal to ours, and `billing verify` on corrupted discount rows.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FakeStripe } from './support/fake-stripe.js';
import { T, expectVerified, invoicesByNumber, world } from './invoice-world.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { stripeSync } from '../src/stripe/sync.js';
import { verifyAgainstStripe } from '../src/stripe/reconcile.js';
import { toStripeUnits } from '../src/stripe/currency.js';
import type { Invoice } from '../src/invoice/types.js';

const JAN = '2026-01-01T00:00:00Z';
const lines = (inv: Invoice) => inv.lines.map((l) => `${l.kind} ${l.amount}`);
const totals = (inv: Invoice) => ({ subtotal: inv.subtotal, discountTotal: inv.discountTotal, total: inv.total, amountDue: inv.amountDue });

let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: T('2026-04-01T02:00:00Z') });
});
afterEach(async () => {
  await fake.close();
});

function currencyCatalog(prices: Array<[string, string]>) {
  return {
    features: [{ key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' }],
    plans: prices.map(([currency, price]) => ({ key: `plan-${currency.toLowerCase()}`, name: `Plan ${currency}`, currency, price, interval: 'month', features: {} })),
  };
}

describeEachDb('discounts', (t) => {
  it('a fixed 25.00 once discount on a 10.00 plan: January 0.00, February 10.00; a void gives the use back to the reissue', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'basic', 0);
    const add = await runCli(['discount', 'add', 'acme', '--amount', '25.00', '--duration', 'once', '--start', JAN], { db: url, now: JAN });
    expect(add.code).toBe(0);
    const id = add.stdout.trim();
    expect(id).toMatch(/^dsc_[0-9a-f]{16}$/);

    expect((await runCli(['invoice', 'generate', '--finalize'], { db: url, now: '2026-03-01T01:00:00Z' })).code).toBe(0);
    let [jan, feb] = await invoicesByNumber(db);
    expect(lines(jan)).toEqual(['base_fee 10.00', 'discount -10.00']);
    expect(totals(jan)).toEqual({ subtotal: '10.00', discountTotal: '10.00', total: '0.00', amountDue: '0.00' });
    expect(jan.discounts).toEqual([{ id, description: expect.stringContaining(id), amount: '10.00' }]);
    expect(lines(feb)).toEqual(['base_fee 10.00']);
    expect(totals(feb)).toEqual({ subtotal: '10.00', discountTotal: '0.00', total: '10.00', amountDue: '10.00' });
    const shown = JSON.parse((await runCli(['invoice', 'show', jan.number, '--json'], { db: url })).stdout);
    expect(shown).toMatchObject({ subtotal: '10.00', discounts: [{ id, amount: '10.00' }], discountTotal: '10.00', taxes: [], taxTotal: '0.00', total: '0.00', creditsApplied: '0.00', creditNotes: [], amountDue: '0.00' });
    expect((await runCli(['invoice', 'show', jan.number], { db: url })).stdout).toMatch(/\n\nSubtotal +10\.00 USD\nDiscount 25\.00 USD \(once, dsc_\w+\) +-10\.00 USD\nTotal +0\.00 USD\nAmount due +0\.00 USD\n$/);
    expect(JSON.parse((await runCli(['discount', 'list', 'acme', '--json'], { db: url })).stdout)).toEqual([
      expect.objectContaining({ id, amount: '25.00', percent: null, duration: 'once', uses: 1, removedAt: null }),
    ]);
    await expectVerified(db);

    // Voided, January is reissued with the discount again; February keeps its own invoice.
    expect((await runCli(['invoice', 'void', jan.number, '--reason', 'wrong address'], { db: url, now: '2026-03-02T00:00:00Z' })).code).toBe(0);
    expect(JSON.parse((await runCli(['discount', 'list', 'acme', '--json'], { db: url })).stdout)[0].uses).toBe(0);
    await w.generate('2026-03-02T01:00:00Z');
    const reissued = (await invoicesByNumber(db)).find((i) => i.supersedes === jan.id)!;
    expect([lines(reissued), reissued.total]).toEqual([['base_fee 10.00', 'discount -10.00'], '0.00']);
    expect(JSON.parse((await runCli(['discount', 'list', 'acme', '--json'], { db: url })).stdout)[0].uses).toBe(1);

    // Removed: listed as such, applies to nothing more.
    expect((await runCli(['discount', 'remove', 'acme', id], { db: url, now: '2026-03-03T00:00:00Z' })).stdout).toMatch(`removed ${id} from acme`);
    const again = await runCli(['discount', 'remove', 'acme', id], { db: url });
    expect([again.code, again.stderr]).toEqual([2, expect.stringMatching(/^billing: tenant "acme" has no discount "dsc_\w+" \(already removed\)/)]);
    expect((await runCli(['discount', 'list', 'acme'], { db: url })).stdout).toMatch(/removed 2026-03-03/);
    await expectVerified(db);
  });

  it('percentages first (of the subtotal or of named features), then fixed amounts in creation order, never below zero; repeating counts invoices', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'basic', 0);
    const add = async (...args: string[]) => {
      const r = await runCli(['discount', 'add', 'acme', ...args, '--start', JAN], { db: url, now: JAN });
      expect(r.stderr).toBe('');
      return r.stdout.trim();
    };
    const fixed = await add('--amount', '5.00', '--duration', 'forever');
    const ocr = await add('--percent', '10', '--feature', 'OCR_SCAN', '--duration', 'forever');
    const half = await add('--percent', '50', '--duration', 'forever');
    const big = await add('--amount', '100', '--duration', 'repeating', '--periods', '2');
    // January: 10.00 base + 200 OCR over 100 included × 0.05 = 10.00 → 20.00.
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '300');
    await w.generate('2026-02-01T01:00:00Z');
    // February: just the base fee; March: the repeating discount is spent.
    await w.generate('2026-04-01T01:00:00Z');
    const [jan, feb, mar] = await invoicesByNumber(db);
    const offs = (inv: Invoice) => inv.discounts.map((d) => `${d.id === fixed ? 'fixed' : d.id === ocr ? 'ocr' : d.id === half ? 'half' : d.id === big ? 'big' : '?'} ${d.amount}`);
    expect(offs(jan)).toEqual(['ocr 1.00', 'half 10.00', 'fixed 5.00', 'big 4.00']);
    expect(totals(jan)).toEqual({ subtotal: '20.00', discountTotal: '20.00', total: '0.00', amountDue: '0.00' });
    // February 10.00: nothing of OCR, half 5.00, fixed 5.00, nothing left for `big` (still a use).
    expect(offs(feb)).toEqual(['half 5.00', 'fixed 5.00']);
    expect(feb.total).toBe('0.00');
    expect(offs(mar)).toEqual(['half 5.00', 'fixed 5.00']);
    expect(JSON.parse((await runCli(['discount', 'list', 'acme', '--json'], { db: url })).stdout).map((d: { uses: number }) => d.uses)).toEqual([0, 0, 0, 2]);
    await expectVerified(db);

    // Bad input: one line each, exit 2 for usage.
    for (const [args, message] of [
      [['--percent', '10', '--amount', '1'], /give exactly one of --percent P and --amount X/],
      [['--percent', '10', '--duration', 'repeating'], /--duration repeating needs --periods N/],
      [['--percent', '101'], /percent "101" must be a decimal above 0 and at most 100/],
      [['--amount', '1', '--duration', 'weekly'], /--duration "weekly" is not one of once, repeating, forever/],
      [['--percent', '5', '--feature', 'NOPE'], /unknown feature "NOPE"/],
    ] as const) {
      const r = await runCli(['discount', 'add', 'acme', ...args], { db: url, now: JAN });
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(message)]);
      expect(r.stdout).toBe('');
    }
    const unknown = await runCli(['discount', 'list', 'nobody'], { db: url });
    expect([unknown.code, unknown.stderr]).toEqual([2, 'billing: unknown tenant "nobody"\n']);
  });

  it('JPY 1,000 with 15 % off: discount 150, Stripe amount_due 850; KWD keeps its rounding line last', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, currencyCatalog([['JPY', '1000'], ['KWD', '2.124']]));
    for (const c of ['jpy', 'kwd']) {
      await w.tenant(JAN, `t_${c}`);
      await w.subscribe(JAN, `t_${c}`, `plan-${c}`, 0);
      expect((await runCli(['discount', 'add', `t_${c}`, '--percent', c === 'jpy' ? '15' : '10', '--duration', 'forever', '--start', JAN], { db: url, now: JAN })).code).toBe(0);
    }
    await w.generate('2026-02-01T01:00:00Z', { finalize: true });
    const [jpy, kwd] = (await invoicesByNumber(db)).sort((a, b) => a.currency.localeCompare(b.currency));
    expect([lines(jpy), totals(jpy)]).toEqual([['base_fee 1000', 'discount -150'], { subtotal: '1000', discountTotal: '150', total: '850', amountDue: '850' }]);
    // 2.124 − 0.212 = 1.912, collected as 1.910.
    expect(kwd.lines.map((l) => `${l.kind} ${l.amount}`)).toEqual(['base_fee 2.124', 'discount -0.212', 'rounding -0.002']);
    expect(kwd).toMatchObject({ discountTotal: '0.212', total: '1.912', amountDue: '1.910', totalMinor: '1910' });
    await expectVerified(db);

    const config = { secretKey: 'sk_test_fake', apiBase: fake.url, webhookSecret: null, timeoutMs: 2000, concurrency: 4, maxRequestsPerSecond: 0 };
    const r = await stripeSync(db, { now: T('2026-02-01T02:00:00Z'), actor: 'test', stripe: config, random: () => 0.5, sleep: async () => {} });
    expect(r.errors).toEqual([]);
    for (const inv of [jpy, kwd]) {
      const c = fake.customerByMetadata('tenant_id', inv.tenantId)!;
      const si = fake.invoices().find((x) => x.customer === c.id)!;
      // Stripe's total is the sum of the items sent, the rounding item included: our amount due.
      expect([si.amount_due, si.total]).toEqual([toStripeUnits(inv.amountDue, inv.currency), toStripeUnits(inv.amountDue, inv.currency)]);
    }
    expect((await verifyAgainstStripe(db, config)).drift).toEqual([]);
  });

  it('billing verify: a discount line that is positive, does not recompute, or totals that disagree with the lines', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'basic', 0);
    expect((await runCli(['discount', 'add', 'acme', '--percent', '20', '--start', JAN], { db: url, now: JAN })).code).toBe(0);
    await w.generate('2026-02-01T01:00:00Z');
    const [inv] = await invoicesByNumber(db);
    expect(lines(inv)).toEqual(['base_fee 10.00', 'discount -2.00']);
    await expectVerified(db);
    const line = { tenant_id: 'acme', invoice_id: inv.id, line_no: 2 };
    const checks = async () => (await verifyInvoices(db)).violations.map((v) => `${v.check} ${v.line ?? '-'} ${v.message}`);

    // A discount line turned into a charge, with the totals following it.
    await db.knex('invoice_lines').where(line).update({ amount: '2.00', amount_precise: '2.00', amount_minor: 200 });
    await db.knex('invoices').where({ tenant_id: 'acme', id: inv.id }).update({ subtotal: '10.00', discount_total: '-2.00', total: '12.00', total_minor: 1200, amount_due: '12.00' });
    expect(await checks()).toEqual([
      'sign 2 discount line has amount 2.00',
      'recompute 2 discount dsc_' + (inv.discounts[0].id.slice(4)) + ' 2.00 but 20% of 10.00 with 10.00 left gives -2.00',
    ]);

    // Back, then only the stored discount total is wrong.
    await db.knex('invoice_lines').where(line).update({ amount: '-2.00', amount_precise: '-2.00', amount_minor: -200 });
    await db.knex('invoices').where({ tenant_id: 'acme', id: inv.id }).update({ discount_total: '0.00', total: '8.00', total_minor: 800, amount_due: '8.00' });
    expect(await checks()).toEqual(['total - discount_total 0.00 but the discount lines take off 2.00']);
    const cli = await runCli(['verify'], { db: url });
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/discount_total 0\.00 but the discount lines take off 2\.00/);

    // A discount larger than what it discounts.
    await db.knex('invoices').where({ tenant_id: 'acme', id: inv.id }).update({ discount_total: '2.00' });
    await db.knex('invoice_lines').where({ tenant_id: 'acme', invoice_id: inv.id, line_no: 1 }).update({ amount: '1.00', amount_precise: '1.00', amount_minor: 100 });
    expect((await checks()).some((c) => c.startsWith('discount 2 discounts take 2 off lines that charge 1: below zero'))).toBe(true);
  });
});
