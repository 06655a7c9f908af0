import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import type { FaultRule } from './support/fake-stripe.js';
import { HOUR, T0, mirrorProblems, seedScenario } from './support/stripe-scenario.js';
import { useFakeStripe } from './support/use-fake-stripe.js';
import type { Db } from '../src/storage/db.js';
import type { StripeConfig } from '../src/stripe/config.js';
import { stripeRetry, stripeStatus, stripeSync } from '../src/stripe/sync.js';
import { backoffMs } from '../src/stripe/outbox.js';
import { runDunning } from '../src/stripe/dunning.js';
import { voidInvoice } from '../src/invoice/lifecycle.js';

const world = useFakeStripe();
const { config, syncOpts } = world;

/** Stripe holds exactly one customer per tenant and exactly each invoice's items, once. */
async function expectMirrored(db: Db, opts: { paid: boolean }) {
  expect(await mirrorProblems(world.fake, db.knex, { status: opts.paid ? 'paid' : 'open' })).toEqual([]);
}

/** Sync (and retry refused rows) with the clock moving on, until nothing is left to send. */
async function syncUntilDone(db: Db, start: number, client: Partial<StripeConfig> = {}, maxRuns = 12): Promise<number> {
  let now = start;
  for (let run = 0; run < maxRuns; run++) {
    await stripeSync(db, syncOpts(now, { stripe: config(client) }));
    await stripeRetry(db, syncOpts(now, { stripe: config(client) }));
    const s = await stripeStatus(db, { now });
    if (s.counts.pending + s.counts.failed + s.counts.dead === 0) return run + 1;
    now += 7 * HOUR; // beyond the capped backoff
  }
  throw new Error('the outbox never drained');
}

describeEachDb('stripe sync', (t) => {
  it('pushes a customer per tenant and each open invoice with exact minor-unit amounts (USD, JPY, KWD), then collects it', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    const r = await stripeSync(db, syncOpts(T0));
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([]);
    expect(r.queued).toEqual({ customers: 3, invoices: 3, voids: 0, creditNotes: 0, meterEvents: 0, rows: 3 + 3 * 3 + 7 });
    expect(r.sent).toEqual({ customer: 3, invoice: 3, invoice_item: 7, invoice_finalize: 3, invoice_pay: 3 });
    expect(r.paid).toBe(3);
    await expectMirrored(db, { paid: true });

    const created = world.fake.requests.filter((q) => q.method === 'POST' && q.path === '/v1/invoices');
    for (const q of created) expect(q.params).toMatchObject({ auto_advance: 'false', collection_method: 'charge_automatically', pending_invoice_items_behavior: 'exclude' });
    const local = await db.knex('invoices').where({ id: 'in_tokyo_2026_02' }).first();
    expect(local.payment_ref).toMatch(/^in_/);

    // A rerun finds nothing to do and sends nothing.
    const before = world.fake.requests.length;
    const again = await stripeSync(db, syncOpts(T0 + HOUR));
    expect(again.queued.rows).toBe(0);
    expect(again.sent).toEqual({});
    expect(world.fake.requests.length).toBe(before);
    const audit = await db.knex('audit_log').where({ entity: 'stripe', action: 'invoice.finalized' });
    expect(audit).toHaveLength(3);
  });

  // The client's own timeout is the one real timer left: kept short.
  const faults: Array<[string, FaultRule[], Partial<StripeConfig>?]> = [
    ['500 on every first item call', [{ method: 'POST', path: '/v1/invoiceitems', times: 3, fault: { kind: 'status', status: 500 } }]],
    ['500 beyond the in-run retries (backoff, next run)', [{ method: 'POST', path: '/v1/customers', times: 9, fault: { kind: 'status', status: 503 } }]],
    ['429 with Stripe-Should-Retry: true', [{ method: 'POST', path: '/v1/invoices', times: 4, fault: { kind: 'status', status: 429, shouldRetry: true } }]],
    ['429 with Stripe-Should-Retry: false (failed, then retry)', [{ method: 'POST', path: '/v1/invoiceitems', times: 2, fault: { kind: 'status', status: 429, shouldRetry: false } }]],
    ['connection reset after Stripe executed', [{ method: 'POST', path: '/v1/invoiceitems', times: 4, fault: { kind: 'reset', after: 'process' } }]],
    ['connection reset before Stripe executed', [{ method: 'POST', path: /\/finalize$/, times: 4, fault: { kind: 'reset' } }]],
    ['timeout after Stripe executed', [{ method: 'POST', path: '/v1/customers', times: 2, fault: { kind: 'hang', after: 'process' } }], { timeoutMs: 100 }],
    ['500 on pay', [{ method: 'POST', path: /\/pay$/, times: 5, fault: { kind: 'status', status: 500 } }]],
  ];
  for (const [name, rules, client] of faults) {
    it(`converges to exactly one copy under: ${name}`, async () => {
      const { db } = t();
      await seedScenario(db.knex);
      for (const rule of rules) world.fake.inject(rule);
      await syncUntilDone(db, T0, client);
      await expectMirrored(db, { paid: true });
    });
  }

  it('converges to exactly one copy under: 409 idempotency_key_in_use from a slow first call', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    let release!: () => void;
    let held!: () => void;
    const isHeld = new Promise<void>((r) => (held = r));
    world.fake.inject({ method: 'POST', path: '/v1/invoices', fault: { kind: 'hold', until: new Promise<void>((r) => (release = r)), onHeld: held } });
    const first = stripeSync(db, syncOpts(T0));
    try {
      await isHeld;
      // A second sync makes the same call under the same key while Stripe still runs the first.
      const second = await stripeSync(db, syncOpts(T0));
      expect(second.retryLater).toBe(1);
    } finally {
      release();
    }
    expect((await first).errors).toEqual([]);
    const creates = world.fake.requests.filter((q) => q.method === 'POST' && q.path === '/v1/invoices');
    expect(creates.filter((q) => q.status === 409).length).toBeGreaterThan(0);
    await syncUntilDone(db, T0);
    await expectMirrored(db, { paid: true });
  });

  it('two syncs at once still leave one copy and apply each answer once', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    await Promise.all([stripeSync(db, syncOpts(T0)), stripeSync(db, syncOpts(T0))]);
    await expectMirrored(db, { paid: true });
    expect(await db.knex('audit_log').where({ entity: 'stripe', action: 'invoice.finalized' })).toHaveLength(3);
    expect(await db.knex('audit_log').where({ entity: 'invoice', action: 'paid' })).toHaveLength(3);
  });

  it('stops at a rejected API key without failing the rows', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    await expect(stripeSync(db, syncOpts(T0, { stripe: config({ secretKey: 'rk_wrong' }) }))).rejects.toThrow(/Stripe rejected STRIPE_SECRET_KEY \(401: Invalid API Key provided\.\)/);
    const rows = await db.knex('stripe_outbox').select('status', 'attempts');
    expect(rows.length).toBe(19);
    expect(rows.every((r) => r.status === 'pending' && Number(r.attempts) === 0)).toBe(true);
    await stripeSync(db, syncOpts(T0));
    await expectMirrored(db, { paid: true });
  });

  it('records backoff with jitter, gives up after --max-attempts, and revives dead rows on request', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 1000, fault: { kind: 'status', status: 500 } });
    const r = await stripeSync(db, syncOpts(T0, { maxAttempts: 4, tenantId: 'acme' }));
    // One attempt per run: the call plus two quick in-run retries, then the recorded backoff.
    expect(r.retryLater).toBe(1);
    expect(world.fake.requests.filter((q) => q.path === '/v1/customers')).toHaveLength(3);
    const row = await db.knex('stripe_outbox').where({ tenant_id: 'acme', kind: 'customer' }).first();
    expect(Number(row.attempts)).toBe(1);
    expect(Number(row.next_attempt_at)).toBe(T0 + backoffMs(1, () => 0.5));
    expect(backoffMs(1, () => 0.5)).toBe(60_000);
    expect(backoffMs(3, () => 0)).toBe(180_000);
    expect(backoffMs(20, () => 1)).toBe(1.25 * 6 * HOUR);
    expect(row.last_error).toMatch(/^500/);
    // Not due yet: nothing is sent.
    const early = await stripeSync(db, syncOpts(T0 + 30_000, { maxAttempts: 4, tenantId: 'acme' }));
    expect(early.errors).toEqual([]);
    expect(world.fake.requests.filter((q) => q.path === '/v1/customers')).toHaveLength(3);
    for (const h of [1, 2]) {
      const mid = await stripeSync(db, syncOpts(T0 + h * HOUR, { maxAttempts: 4, tenantId: 'acme' }));
      expect(mid.retryLater).toBe(1);
    }
    const last = await stripeSync(db, syncOpts(T0 + 3 * HOUR, { maxAttempts: 4, tenantId: 'acme' }));
    expect(last.dead).toBe(1);
    const status = await stripeStatus(db, { now: T0 + 3 * HOUR, tenantId: 'acme' });
    expect(status.counts.dead).toBe(1);
    expect(status.rows.find((x) => x.kind === 'customer')).toMatchObject({ status: 'dead', attempts: 4 });

    world.fake.clearFaults();
    const plain = await stripeRetry(db, syncOpts(T0 + 4 * HOUR, { tenantId: 'acme' }));
    expect(plain.requeued).toBe(0); // dead rows stay dead unless asked
    const revived = await stripeRetry(db, syncOpts(T0 + 4 * HOUR, { tenantId: 'acme', includeDead: true }));
    expect(revived.requeued).toBe(1);
    expect(revived.sent.customer).toBe(1);
    expect(revived.sent.invoice_pay).toBe(1);
    expect(world.fake.customers()).toHaveLength(1);
  });

  it('marks a refused call failed with Stripe\'s message and does not send what depends on it', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    world.fake.inject({ method: 'POST', path: '/v1/invoices', times: 1, fault: { kind: 'status', status: 400, type: 'invalid_request_error', message: 'Invalid currency: xyz' } });
    const r = await stripeSync(db, syncOpts(T0));
    expect(r.failed).toBe(1);
    expect(r.errors[0]).toMatchObject({ kind: 'invoice', outcome: 'failed', message: '400: Invalid currency: xyz' });
    expect(r.blocked).toBeGreaterThan(0);
    const failedInvoice = r.errors[0].ref;
    expect(world.fake.invoiceItems().filter((ii) => ii.metadata.billing_invoice_id === failedInvoice)).toHaveLength(0);
    const again = await stripeRetry(db, syncOpts(T0 + HOUR));
    expect(again.requeued).toBe(1);
    await expectMirrored(db, { paid: true });
  });

  it('voids the Stripe copy of an invoice voided here (and deletes a draft that never got finalized)', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    world.fake.defaultPaymentOutcome = 'decline';
    // tokyo's items are refused, so its Stripe invoice stays a draft.
    world.fake.inject({ method: 'POST', path: '/v1/invoiceitems', times: 100, fault: { kind: 'status', status: 400, type: 'invalid_request_error', message: 'Amount too small' } });
    await stripeSync(db, syncOpts(T0, { tenantId: 'tokyo' }));
    world.fake.clearFaults();
    await stripeSync(db, syncOpts(T0, { tenantId: 'acme' }));
    expect(world.fake.invoices().map((i) => [i.metadata.tenant_id, i.status]).sort()).toEqual([['acme', 'open'], ['tokyo', 'draft']]);
    for (const id of ['in_acme_2026_02', 'in_tokyo_2026_02']) {
      await voidInvoice(db, id, { now: T0 + HOUR, actor: 'test', reason: 'reissued with corrected usage' });
    }
    const dry = await stripeSync(db, syncOpts(T0 + HOUR, { dryRun: true }));
    expect(dry.planned.filter((c) => c.kind === 'invoice_void').map((c) => [c.method, c.path.replace(/in_\w+/, 'ID')])).toEqual([
      ['POST', '/v1/invoices/ID/void'],
      ['DELETE', '/v1/invoices/ID'],
    ]);
    const r = await stripeSync(db, syncOpts(T0 + HOUR));
    expect(r.sent.invoice_void).toBe(2);
    expect(world.fake.invoices().filter((i) => ['acme', 'tokyo'].includes(i.metadata.tenant_id)).map((i) => i.status)).toEqual(['void']);
    expect(world.fake.invoiceItems().filter((ii) => ii.metadata.tenant_id === 'tokyo')).toEqual([]);
    const tokyoRows = await db.knex('stripe_outbox').where({ tenant_id: 'tokyo' }).whereNot('kind', 'customer').orderBy('kind');
    expect(tokyoRows.map((x) => [x.kind, x.status])).toEqual([
      ['invoice', 'sent'], ['invoice_finalize', 'dead'], ['invoice_item', 'failed'], ['invoice_item', 'failed'], ['invoice_pay', 'sent'], ['invoice_void', 'sent'],
    ]);
    expect(tokyoRows.find((x) => x.kind === 'invoice_pay').last_error).toBe('local invoice is void; no payment attempt');
    // Dunning stops for the voided invoice instead of charging it again.
    const d = await runDunning(db, { now: T0 + HOUR, actor: 'test', stripe: config() });
    expect(d).toMatchObject({ attempted: 1, declined: 1, closed: 1 }); // kuwait, first synced at T0 + 1 h, is retried
    const again = await stripeSync(db, syncOpts(T0 + 2 * HOUR));
    expect(again.queued.voids).toBe(0);
  });

  it('dry run lists every call with its exact parameters and changes nothing', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    const r = await stripeSync(db, { now: T0, actor: 'test', dryRun: true, stripe: { ...config(), secretKey: null } });
    expect(world.fake.requests).toHaveLength(0);
    expect(Number((await db.knex('stripe_outbox').count({ n: '*' }).first())!.n)).toBe(0);
    expect(r.planned.map((c) => c.kind)).toEqual([
      'customer', 'customer', 'customer', 'invoice', 'invoice', 'invoice',
      ...Array(7).fill('invoice_item'), 'invoice_finalize', 'invoice_finalize', 'invoice_finalize', 'invoice_pay', 'invoice_pay', 'invoice_pay',
    ]);
    const kw = r.planned.filter((c) => c.kind === 'invoice_item' && c.tenantId === 'kuwait').map((c) => c.params);
    expect(kw).toEqual([
      expect.objectContaining({ amount: 12345, currency: 'kwd', customer: '<Stripe customer of tenant kuwait>', invoice: '<Stripe invoice for in_kuwait_2026_02>' }),
      expect.objectContaining({ amount: 5, currency: 'kwd' }),
    ]);
    const jp = r.planned.find((c) => c.kind === 'invoice' && c.tenantId === 'tokyo')!;
    expect(jp.params).toMatchObject({ currency: 'jpy', auto_advance: false, metadata: { billing_invoice_number: 'INV-000002' } });
    expect(r.planned.find((c) => c.kind === 'invoice_pay')!.path).toMatch(/^\/v1\/invoices\/<Stripe invoice for .*>\/pay$/);
  });

  it('heals a crash after Stripe accepted, even once Stripe has forgotten the idempotency key', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    // The customer for acme is created, but the answer never arrives (crash-like).
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 100, fault: { kind: 'reset', after: 'process' } });
    const r = await stripeSync(db, syncOpts(T0, { tenantId: 'acme' }));
    world.fake.clearFaults();
    expect(r.retryLater).toBe(1);
    expect(world.fake.customers()).toHaveLength(1);
    // Two days later the key is gone at Stripe: the customer is found by metadata, not created again.
    world.fake.setNow(T0 + 48 * HOUR);
    const later = await stripeSync(db, syncOpts(T0 + 48 * HOUR, { tenantId: 'acme' }));
    expect(later.errors).toEqual([]);
    expect(world.fake.customers()).toHaveLength(1);
    expect(world.fake.requests.some((q) => q.path === '/v1/customers/search')).toBe(true);
    const tenant = await db.knex('tenants').where({ id: 'acme' }).first();
    expect(tenant.stripe_customer_id).toBe(world.fake.customers()[0].id);
  });
});
