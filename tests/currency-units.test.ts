import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FakeStripe } from './support/fake-stripe.js';
import { T, world } from './invoice-world.js';
import { cashRoundingMinor, currencyDigits, isKnownCurrency, roundMoney } from '../src/domain/money.js';
import { stripeDigits, toStripeUnits } from '../src/stripe/currency.js';
import { listInvoices } from '../src/invoice/repository.js';
import { verifyInvoices } from '../src/invoice/verify.js';
import { stripeSync, type SyncOptions } from '../src/stripe/sync.js';
import type { Db } from '../src/storage/db.js';

// Local amounts follow ISO 4217 digits; Stripe amounts follow Stripe's own table; three-decimal
// currencies are collected in multiples of 10 minor units through a rounding line.

describe('ISO 4217 minor units (local rounding)', () => {
  it('takes digits from the ISO table, not from Intl display digits', () => {
    expect(['USD', 'JPY', 'KRW', 'ISK', 'HUF', 'TWD', 'IDR', 'COP', 'PKR', 'CLP', 'UGX', 'VND', 'BHD', 'KWD', 'JOD', 'OMR', 'TND', 'CLF', 'UYW', 'MGA', 'IQD'].map((c) => `${c} ${currencyDigits(c)}`)).toEqual([
      'USD 2', 'JPY 0', 'KRW 0', 'ISK 0', 'HUF 2', 'TWD 2', 'IDR 2', 'COP 2', 'PKR 2', 'CLP 0', 'UGX 0', 'VND 0', 'BHD 3', 'KWD 3', 'JOD 3', 'OMR 3', 'TND 3', 'CLF 4', 'UYW 4', 'MGA 2', 'IQD 3',
    ]);
    expect(roundMoney('499.5', 'ISK')).toEqual({ precise: '499.5', amount: '500', minor: '500' });
    expect(roundMoney('9990', 'HUF')).toMatchObject({ amount: '9990.00', minor: '999000' });
    expect(roundMoney('0.125', 'IDR')).toMatchObject({ amount: '0.13', minor: '13' });
  });

  it('refuses codes outside the table', () => {
    expect(isKnownCurrency('usd')).toBe(true);
    for (const c of ['XYZ', 'XAU', 'HRK', 'XXX', 'US', '']) expect(isKnownCurrency(c), c).toBe(false);
    expect(currencyDigits('XXX')).toBe(2); // "no currency", on unrated zero charges only
    expect(() => currencyDigits('XYZ')).toThrow(/"XYZ" is not an ISO 4217 currency code/);
  });

  it('computes the cash rounding of BHD JOD KWD OMR TND as round_half_away_from_zero(total / 10) × 10 − total', () => {
    const cases: Array<[string, string]> = [['2125', '5'], ['2126', '4'], ['2124', '-4'], ['2120', '0'], ['2115', '5'], ['-2115', '-5'], ['-2114', '4'], ['3', '-3'], ['5', '5']];
    for (const [total, adj] of cases) expect(cashRoundingMinor(total, 'KWD'), total).toBe(adj);
    for (const c of ['BHD', 'JOD', 'OMR', 'TND']) expect(cashRoundingMinor('1001', c)).toBe('-1');
    for (const c of ['USD', 'JPY', 'IQD', 'LYD']) expect(cashRoundingMinor('1001', c)).toBe('0');
  });
});

describe("Stripe's units", () => {
  it('converts the exact major amount with Stripe digits, and refuses what they cannot carry', () => {
    expect(['JPY', 'MGA', 'ISK', 'HUF', 'TWD', 'USD', 'KWD', 'CLF'].map((c) => `${c} ${stripeDigits(c)}`)).toEqual(['JPY 0', 'MGA 0', 'ISK 2', 'HUF 2', 'TWD 2', 'USD 2', 'KWD 3', 'CLF 2']);
    expect(toStripeUnits('9990.00', 'HUF')).toBe(999000);
    expect(toStripeUnits('500', 'ISK')).toBe(50000);
    expect(toStripeUnits('1000', 'JPY')).toBe(1000);
    expect(toStripeUnits('-0.005', 'KWD')).toBe(-5);
    expect(toStripeUnits('10.00', 'MGA')).toBe(10);
    expect(() => toStripeUnits('10.50', 'MGA')).toThrow(/10\.50 MGA cannot be sent to Stripe: Stripe counts MGA in units of 1/);
    expect(() => toStripeUnits('1.2345', 'CLF')).toThrow(/cannot be sent to Stripe/);
  });
});

const START = '2026-01-01T00:00:00Z';
const CLOSE = '2026-02-01T01:00:00Z';
const SYNC_AT = T('2026-02-01T02:00:00Z');

/** One tenant per currency, each on a plan with just a base fee. */
function currencyCatalog(prices: Array<[string, string]>) {
  return {
    features: [{ key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' }],
    plans: prices.map(([currency, price]) => ({ key: `plan-${currency.toLowerCase()}`, name: `Plan ${currency}`, currency, price, interval: 'month', features: {} })),
  };
}

async function invoiceEach(db: Db, prices: Array<[string, string]>): Promise<void> {
  const w = world(db);
  await w.apply(START, currencyCatalog(prices));
  for (const [currency] of prices) {
    const id = `t_${currency.toLowerCase()}`;
    await w.tenant(START, id);
    await w.subscribe(START, id, `plan-${currency.toLowerCase()}`, 0);
  }
  await w.generate(CLOSE, { finalize: true });
}

let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: SYNC_AT });
});
afterEach(async () => {
  await fake.close();
});

function syncOpts(now = SYNC_AT): SyncOptions {
  return {
    now,
    actor: 'test',
    stripe: { secretKey: 'sk_test_fake', apiBase: fake.url, webhookSecret: null, timeoutMs: 2000, concurrency: 4, maxRequestsPerSecond: 0 },
    random: () => 0.5,
    sleep: async () => {},
  };
}

const stripeEnv = () => ({ STRIPE_SECRET_KEY: 'sk_test_fake', STRIPE_API_BASE: fake.url });

function stripeInvoiceOf(tenantId: string) {
  const c = fake.customerByMetadata('tenant_id', tenantId)!;
  return fake.invoices().find((i) => i.customer === c.id)!;
}

describeEachDb('currency units end to end', (t) => {
  it('sends HUF 9990 as 999000, ISK 500 as 50000, JPY 1000 as 1000, KWD 2.124 as 2120 after a -0.004 rounding line and BHD 2.125 as 2130 after +0.005', async () => {
    const { db } = t();
    await invoiceEach(db, [['HUF', '9990'], ['ISK', '500'], ['JPY', '1000'], ['KWD', '2.124'], ['BHD', '2.125']]);
    const local = new Map((await listInvoices(db)).map((i) => [i.currency, i]));
    expect(local.get('HUF')).toMatchObject({ total: '9990.00', totalMinor: '999000' });
    expect(local.get('ISK')).toMatchObject({ total: '500', totalMinor: '500' });
    const kwd = local.get('KWD')!;
    expect(kwd.lines.map((l) => [l.kind, l.amount, l.amountMinor])).toEqual([
      ['base_fee', '2.124', '2124'],
      ['rounding', '-0.004', '-4'],
    ]);
    // Rounding acts on the amount due (DESIGN.md §13 step 5); the total stays exact.
    expect(kwd).toMatchObject({ subtotal: '2.124', total: '2.124', amountDue: '2.120', totalMinor: '2120' });
    // Half a step rounds away from zero.
    const bhd = local.get('BHD')!;
    expect(bhd.lines.map((l) => [l.kind, l.amount, l.amountMinor])).toEqual([
      ['base_fee', '2.125', '2125'],
      ['rounding', '0.005', '5'],
    ]);
    expect(bhd).toMatchObject({ total: '2.125', amountDue: '2.130', totalMinor: '2130' });
    expect((await verifyInvoices(db)).violations).toEqual([]);

    const r = await stripeSync(db, syncOpts());
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    const items = (tenantId: string) => {
      const si = stripeInvoiceOf(tenantId);
      return fake.invoiceItems().filter((ii) => ii.invoice === si.id).map((ii) => [ii.currency, ii.amount]).sort((a, b) => Number(b[1]) - Number(a[1]));
    };
    expect(items('t_huf')).toEqual([['huf', 999000]]);
    expect(items('t_isk')).toEqual([['isk', 50000]]);
    expect(items('t_jpy')).toEqual([['jpy', 1000]]);
    expect(items('t_kwd')).toEqual([['kwd', 2124], ['kwd', -4]]);
    expect(stripeInvoiceOf('t_kwd')).toMatchObject({ total: 2120, amount_due: 2120, status: 'paid' });
    expect(items('t_bhd')).toEqual([['bhd', 2125], ['bhd', 5]]);
    expect(stripeInvoiceOf('t_bhd')).toMatchObject({ total: 2130, amount_due: 2130, status: 'paid' });
    expect(stripeInvoiceOf('t_huf')).toMatchObject({ total: 999000, status: 'paid' });
  });

  it('fails the outbox row of an amount Stripe units cannot carry (10.50 MGA), by invoice and line', async () => {
    const { db } = t();
    await invoiceEach(db, [['MGA', '10.50']]);
    const dry = await stripeSync(db, { ...syncOpts(), dryRun: true });
    expect(dry.errors).toEqual([expect.objectContaining({ kind: 'invoice_item', outcome: 'failed', message: expect.stringContaining('invoice INV-000001 line 1: 10.50 MGA cannot be sent') })]);
    expect(dry.planned.map((c) => c.kind)).not.toContain('invoice_item');
    const r = await stripeSync(db, syncOpts());
    expect(r.errors).toEqual([
      expect.objectContaining({ kind: 'invoice_item', outcome: 'failed', message: 'invoice INV-000001 line 1: 10.50 MGA cannot be sent to Stripe: Stripe counts MGA in units of 1' }),
    ]);
    expect(fake.invoiceItems()).toEqual([]);
    expect(stripeInvoiceOf('t_mga')).toMatchObject({ status: 'draft' }); // never finalized short of a line
    const row = await db.knex('stripe_outbox').where({ tenant_id: 't_mga', kind: 'invoice_item' }).first();
    expect(row).toMatchObject({ status: 'failed', last_error: expect.stringContaining('10.50 MGA cannot be sent') });
  });

  it("warns at finalization when Stripe's amount_due differs from the total", async () => {
    const { db } = t();
    await invoiceEach(db, [['USD', '12.00']]);
    fake.inject({ method: 'POST', path: /\/finalize$/, times: 3, fault: { kind: 'status', status: 500 } });
    const first = await stripeSync(db, syncOpts());
    expect(first.retryLater).toBe(1);
    // A customer balance at Stripe covers part of it.
    fake.tamperInvoice(stripeInvoiceOf('t_usd').id, { fields: { amount_due: 700 } });
    const r = await stripeSync(db, syncOpts(SYNC_AT + 3_600_000));
    expect(r.warnings).toEqual([expect.stringMatching(/: INV-000001 amount_due: ours 1200, Stripe's 700 \(USD, Stripe units of 0\.01\): Stripe moved the difference to the customer balance/)]);
    const audit = await db.knex('audit_log').where({ entity: 'stripe', action: 'invoice.amount_due_mismatch' });
    expect(audit).toHaveLength(1);
  });

  it('billing verify --stripe is clean after a sync and lists each drift (line, total, amount due) with exit 1', async () => {
    const { db, url } = t();
    await invoiceEach(db, [['HUF', '9990'], ['KWD', '2.124']]);
    await stripeSync(db, syncOpts());
    const now = '2026-02-01T03:00:00Z';
    const clean = await runCli(['verify', '--stripe'], { db: url, now, env: stripeEnv() });
    expect(clean.stderr).toBe('');
    expect(clean.stdout).toBe('ok: 2 invoice(s), 3 line(s) checked, no violations; 2 invoice(s) compared with Stripe, no drift\n');
    expect(clean.code).toBe(0);

    const huf = stripeInvoiceOf('t_huf');
    fake.tamperInvoice(huf.id, { fields: { total: 9990, amount_due: 9990 }, lineAmounts: { '1': 9990 } });
    const drift = await runCli(['verify', '--stripe'], { db: url, now, env: stripeEnv() });
    expect(drift.code).toBe(1);
    expect(drift.stdout.split('\n').filter((l) => l.startsWith('drift: '))).toEqual([
      "drift: INV-000001 total: ours 999000, Stripe's 9990 (HUF, Stripe units of 0.01)",
      "drift: INV-000001 amount_due: ours 999000, Stripe's 9990 (HUF, Stripe units of 0.01)",
      "drift: INV-000001 line 1: ours 999000, Stripe's 9990 (HUF, Stripe units of 0.01)",
    ]);
    expect(drift.stdout).toContain('3 difference(s) from Stripe in 2 invoice(s)');

    const json = await runCli(['verify', '--stripe', '--json'], { db: url, now, env: stripeEnv() });
    expect(json.code).toBe(1);
    const report = JSON.parse(json.stdout);
    expect(report.ok).toBe(false);
    expect(report.violations).toEqual([]);
    expect(report.stripe.drift.map((d: any) => [d.invoice, d.field, d.ours, d.stripe])).toEqual([
      ['INV-000001', 'total', '999000', '9990'],
      ['INV-000001', 'amount_due', '999000', '9990'],
      ['INV-000001', 'line 1', '999000', '9990'],
    ]);
    expect(json.stdout).not.toContain('sk_test_fake');

    const noKey = await runCli(['verify', '--stripe'], { db: url, now, env: { STRIPE_SECRET_KEY: '' } });
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toMatch(/STRIPE_SECRET_KEY is not set/);
  });
});

describeEachDb('billing verify: cash rounding', (t) => {
  it('passes a generated KWD invoice and names the invoice when its rounding is corrupted', async () => {
    const { db, url } = t();
    await invoiceEach(db, [['KWD', '2.124'], ['USD', '12.00']]);
    const ok = await runCli(['verify'], { db: url });
    expect(ok.code).toBe(0);
    const inv = await db.knex('invoices').where({ tenant_id: 't_kwd' }).first();
    expect(inv.number).toBe('INV-000001');

    // A rounding line that leaves the amount due uncollectible (and not what the rule gives).
    await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 2 }).update({ amount: '-0.003', amount_precise: '-0.003', amount_minor: -3 });
    await db.knex('invoices').where({ tenant_id: 't_kwd', id: inv.id }).update({ total_minor: 2121, amount_due: '2.121' });
    let r = await runCli(['verify', '--json'], { db: url });
    expect(r.code).toBe(1);
    let violations = JSON.parse(r.stdout).violations.map((v: any) => `${v.check} ${v.invoice} ${v.message}`);
    expect(violations).toEqual([
      'rounding INV-000001 amount due 2.121 KWD is not collectible: KWD is collected in multiples of 10 minor units',
      'rounding INV-000001 rounding of -3 minor units but the other lines total 2124 minor units, which round by -4',
    ]);

    // Rounding too far (a whole step off), though the amount due is a multiple of 10.
    await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 2 }).update({ amount: '0.006', amount_precise: '0.006', amount_minor: 6 });
    await db.knex('invoices').where({ tenant_id: 't_kwd', id: inv.id }).update({ total_minor: 2130, amount_due: '2.130' });
    violations = (await verifyInvoices(db)).violations.map((v) => `${v.check} ${v.invoice} ${v.line ?? '-'} ${v.message}`);
    expect(violations).toEqual([
      'rounding INV-000001 2 rounding of 6 minor units but the other lines total 2124 minor units, which round by -4',
      'rounding INV-000001 2 rounding line of 6 minor units is not a nonzero adjustment of at most half a step (5)',
    ]);

    // Two rounding lines that add up to the rule's amount: still one too many.
    await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 2 }).update({ amount: '-0.003', amount_precise: '-0.003', amount_minor: -3 });
    const line = await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 2 }).first();
    await db.knex('invoice_lines').insert({ ...line, line_no: 3, amount: '-0.001', amount_precise: '-0.001', amount_minor: -1 });
    await db.knex('invoices').where({ tenant_id: 't_kwd', id: inv.id }).update({ total_minor: 2120, amount_due: '2.120' });
    r = await runCli(['verify'], { db: url });
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/rounding\s+t_kwd\s+INV-000001\s+2 rounding lines \(#2, #3\); at most one is allowed/);

    // Back to what was generated: clean again.
    await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 3 }).delete();
    await db.knex('invoice_lines').where({ tenant_id: 't_kwd', invoice_id: inv.id, line_no: 2 }).update({ amount: '-0.004', amount_precise: '-0.004', amount_minor: -4 });
    expect((await runCli(['verify'], { db: url })).code).toBe(0);

    // A rounding line on a currency collected to the minor unit.
    const usd = await db.knex('invoices').where({ tenant_id: 't_usd' }).first();
    await db.knex('invoice_lines').insert({ ...line, tenant_id: 't_usd', invoice_id: usd.id, line_no: 2, amount: '0.00', amount_precise: '0.00', amount_minor: 0 });
    violations = (await verifyInvoices(db)).violations.map((v) => `${v.check} ${v.invoice} ${v.message}`);
    expect(violations).toEqual([`rounding ${usd.number} USD is collected to the minor unit: a rounding line does not belong here`]);
  });
});
