// Credit notes reach Stripe as credit notes, through the CLI on both databases: on an open
// invoice they lower Stripe's amount_due to ours; on a paid one they are a refund (--refund) or
// out of band (the local prepaid grant reaches Stripe as a negative item on the next invoice,
// so Stripe's customer balance must not carry it too); a rerun sends nothing twice.
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FakeStripe } from './support/fake-stripe.js';
import { spawnBilling } from './support/stripe-scenario.js';
import { T, invoicesByNumber, world } from './invoice-world.js';
import { toStripeUnits } from '../src/stripe/currency.js';

const JAN = '2026-01-01T00:00:00Z';
const FEB1 = '2026-02-01T01:00:00Z';
const FAST = ['--rate', '1000', '--timeout', '2000'];

let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: T(FEB1) });
});
afterEach(async () => {
  await fake.close();
});

function catalog(currency: string, price: string) {
  return {
    features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
    plans: [{ key: 'p', name: 'P', currency, price, interval: 'month', features: {} }],
  };
}

describeEachDb('stripe credit notes', (t) => {
  async function setup(currency = 'USD', price = '100.00', grant?: string) {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, catalog(currency, price));
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'p', 0);
    const cli = async (args: string[], now = FEB1) => {
      const r = await runCli(args, { db: url, now });
      expect(r.stderr, args.join(' ')).toBe('');
      return r;
    };
    expect((await cli(['tax', 'set', 'acme', '--name', 'VAT', '--rate', '19'])).code).toBe(0);
    if (grant) expect((await cli(['credit', 'grant', 'acme', grant], JAN)).code).toBe(0);
    expect((await cli(['invoice', 'generate', '--finalize'])).code).toBe(0);
    const sync = async (now = FEB1) => {
      fake.setNow(T(now));
      const r = await spawnBilling(['stripe', 'sync', '--json', ...FAST], { db: url, now: T(now), fake }).done;
      expect(r.stderr).toBe('');
      return { code: r.code, report: JSON.parse(r.stdout) };
    };
    const verifyStripe = async () => {
      const r = await spawnBilling(['verify', '--stripe', '--json'], { db: url, now: T(FEB1), fake }).done;
      return { code: r.code, drift: JSON.parse(r.stdout).stripe?.drift };
    };
    const [inv] = await invoicesByNumber(db);
    return { db, cli, sync, verifyStripe, number: inv.number, url: () => url };
  }

  it('a note on an open invoice lowers Stripe amount_due to ours, before and after the invoice reached Stripe', async () => {
    const { db, cli, sync, verifyStripe, number, url } = await setup();
    // Declined: the invoice stays open at Stripe.
    fake.defaultPaymentOutcome = 'decline';
    await sync();
    expect(fake.invoices()[0]).toMatchObject({ status: 'open', amount_due: 11900 });

    expect((await cli(['credit-note', 'create', number, '--amount', '20.00', '--reason', 'duplicate'])).code).toBe(0);
    const [inv] = await invoicesByNumber(db);
    expect(inv.amountDue).toBe('99.00');
    const r = await sync();
    expect(r.report.queued.creditNotes).toBe(1);
    expect(r.report.sent.credit_note).toBe(1);
    const [si] = fake.invoices();
    expect(si.amount_due).toBe(toStripeUnits(inv.amountDue, 'USD'));
    expect(si.pre_payment_credit_notes_amount).toBe(2000);
    const [cn] = fake.creditNotes();
    expect(cn).toMatchObject({ amount: 2000, invoice: si.id, reason: 'duplicate', type: 'pre_payment', memo: `Credit note CN-000001 on ${number}: duplicate` });
    expect(cn.metadata).toMatchObject({ tenant_id: 'acme', billing_credit_note_number: 'CN-000001' });
    expect(await verifyStripe()).toEqual({ code: 0, drift: [] });

    // A rerun sends nothing.
    const before = fake.requests.length;
    const again = await sync();
    expect(again.report.queued.rows).toBe(0);
    expect(again.report.sent).toEqual({});
    expect(fake.requests.length).toBe(before);

    // A note for the rest, then the dunning retry: the note goes first and settles the invoice; nothing is charged.
    expect((await cli(['credit-note', 'create', number, '--amount', '99.00', '--reason', 'goodwill'], '2026-02-02T00:00:00Z')).code).toBe(0);
    const DUN = '2026-02-05T00:00:00Z';
    fake.setNow(T(DUN));
    const dun = await spawnBilling(['stripe', 'dunning', '--json', ...FAST], { db: url(), now: T(DUN), fake }).done;
    expect(dun.stderr).toBe('');
    expect(fake.requests.filter((q) => q.path.endsWith('/pay')).length).toBe(1);
    expect(fake.invoices()[0]).toMatchObject({ status: 'paid', amount_due: 0, amount_paid: 0, pre_payment_credit_notes_amount: 11900 });
    const [paid] = await invoicesByNumber(db);
    expect([paid.status, paid.amountDue]).toEqual(['paid', '0.00']);
    expect((await db.knex('stripe_dunning').first()).status).toBe('recovered');
    expect(await verifyStripe()).toEqual({ code: 0, drift: [] });
  });

  it('a note made before the invoice reached Stripe waits for it and goes before the payment attempt (JPY)', async () => {
    const { db, cli, sync, verifyStripe, number } = await setup('JPY', '1000');
    // Free text reasons travel in the memo; Stripe's enum only takes its own words.
    expect((await cli(['credit-note', 'create', number, '--amount', '190', '--reason', 'launch outage'])).code).toBe(0);
    const r = await sync();
    expect(r.code).toBe(0);
    // Finalizing compares amount_due net of notes not yet delivered: no false drift.
    expect(r.report.warnings).toEqual([]);
    expect(r.report.sent).toMatchObject({ invoice: 1, credit_note: 1, invoice_pay: 1 });
    const posts = fake.requests.filter((q) => q.method === 'POST').map((q) => q.path.replace(/in_\w+/, 'ID'));
    expect(posts.indexOf('/v1/credit_notes')).toBeLessThan(posts.indexOf('/v1/invoices/ID/pay'));
    expect(posts.indexOf('/v1/credit_notes')).toBeGreaterThan(posts.indexOf('/v1/invoices/ID/finalize'));
    const [inv] = await invoicesByNumber(db);
    expect([inv.total, inv.amountDue, inv.status]).toEqual(['1190', '1000', 'paid']);
    const [si] = fake.invoices();
    expect(si).toMatchObject({ status: 'paid', amount_due: 1000, amount_paid: 1000 });
    expect(fake.creditNotes()[0]).toMatchObject({ amount: 190, reason: null });
    expect(await verifyStripe()).toEqual({ code: 0, drift: [] });
  });

  it('a note on an invoice prepaid credit paid in full sends Stripe nothing: Stripe collected nothing to credit, the note is a local grant', async () => {
    const { db, cli, sync, verifyStripe, number } = await setup('USD', '100.00', '200.00');
    expect((await cli(['credit-note', 'create', number, '--amount', '50.00', '--reason', 'outage'])).code).toBe(0);
    const r = await sync();
    expect([r.code, r.report.errors]).toEqual([0, []]);
    const [inv] = await invoicesByNumber(db);
    expect([inv.total, inv.creditsApplied, inv.amountDue, inv.status]).toEqual(['119.00', '119.00', '0.00', 'paid']);
    expect(fake.invoices()[0]).toMatchObject({ status: 'paid', total: 0, amount_paid: 0 });
    expect(fake.creditNotes()).toEqual([]);
    // 81.00 left of the grant, and the note's 50.00 as a grant of its own.
    expect(JSON.parse((await cli(['credit', 'balance', 'acme', '--json'])).stdout).balances).toEqual([{ currency: 'USD', balance: '131.00', grants: 2 }]);
    expect(await verifyStripe()).toEqual({ code: 0, drift: [] });
  });

  it('dry run shows the credit note call; an unknown outcome past the 24 h key window is found by listing, never sent twice', async () => {
    const { db, cli, sync, verifyStripe, number, url } = await setup();
    fake.defaultPaymentOutcome = 'decline';
    await sync();
    expect((await cli(['credit-note', 'create', number, '--amount', '20.00', '--reason', 'outage'])).code).toBe(0);
    const dry = JSON.parse((await spawnBilling(['stripe', 'sync', '--dry-run', '--json'], { db: url(), now: T(FEB1), fake }).done).stdout);
    expect(dry.planned.map((c: any) => [c.path, c.params.amount])).toEqual([['/v1/credit_notes', 2000]]);
    expect(dry.planned[0].params.invoice).toBe(fake.invoices()[0].id);

    // Stripe executes, the answer never arrives (in-run retries replay the same lost answer).
    fake.inject({ method: 'POST', path: '/v1/credit_notes', times: 100, fault: { kind: 'reset', after: 'process' } });
    const lost = await sync();
    expect(lost.report.sent.credit_note).toBeUndefined();
    fake.clearFaults();
    expect(fake.creditNotes()).toHaveLength(1);
    const later = new Date(T(FEB1) + 25 * 3_600_000).toISOString();
    const healed = await sync(later);
    expect(healed.report.sent.credit_note).toBe(1);
    expect(fake.creditNotes()).toHaveLength(1);
    expect(fake.requests.filter((q) => q.method === 'GET' && q.path === '/v1/credit_notes')).toHaveLength(1);
    const [inv] = await invoicesByNumber(db);
    expect(fake.invoices()[0].amount_due).toBe(toStripeUnits(inv.amountDue, 'USD'));
    expect(await verifyStripe()).toEqual({ code: 0, drift: [] });
  });

  for (const refund of [false, true]) {
    it(`a note on a paid invoice is ${refund ? 'refund_amount (--refund)' : 'out_of_band_amount, the grant going out as the next invoice\'s item'} (KWD)`, async () => {
      const { db, cli, sync, verifyStripe, number } = await setup('KWD', '10.000');
      await sync();
      expect(fake.invoices()[0]).toMatchObject({ status: 'paid', amount_paid: 11900 });
      const args = ['credit-note', 'create', number, '--amount', '2.500', '--reason', 'order change', ...(refund ? ['--refund'] : [])];
      expect((await cli(args, '2026-02-10T00:00:00Z')).code).toBe(0);
      const r = await sync('2026-02-10T00:00:00Z');
      expect(r.report.sent.credit_note).toBe(1);
      const [si] = fake.invoices();
      expect(si).toMatchObject({ amount_due: 11900, post_payment_credit_notes_amount: 2500 });
      const [cn] = fake.creditNotes();
      expect(cn).toMatchObject({ amount: 2500, type: 'post_payment', reason: 'order_change' });
      const posted = fake.requests.find((q) => q.path === '/v1/credit_notes')!.params;
      if (refund) expect(posted).toMatchObject({ refund_amount: '2500' });
      else expect(posted).toMatchObject({ out_of_band_amount: '2500' });
      expect(posted.credit_amount).toBeUndefined();
      expect(await verifyStripe()).toEqual({ code: 0, drift: [] });

      // February: the grant (no refund) is a negative item, so Stripe collects what we do.
      expect((await cli(['invoice', 'generate', '--finalize'], '2026-03-01T01:00:00Z')).code).toBe(0);
      await sync('2026-03-01T01:00:00Z');
      const feb = (await invoicesByNumber(db))[1];
      expect(feb.lines.some((l) => l.kind === 'prepaid_credit')).toBe(!refund);
      expect(feb.amountDue).toBe(refund ? '11.900' : '9.400');
      const stripeFeb = fake.invoices().find((i) => i.metadata.billing_invoice_id === feb.id)!;
      expect(stripeFeb).toMatchObject({ status: 'paid', amount_paid: toStripeUnits(feb.amountDue, 'KWD') });

      const before = fake.requests.length;
      expect((await sync('2026-03-01T02:00:00Z')).report.sent).toEqual({});
      expect(fake.requests.length).toBe(before);
    });
  }
});
