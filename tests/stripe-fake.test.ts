import { existsSync } from 'node:fs';
import path from 'node:path';
import Stripe from 'stripe';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeStripe, defaultSharedDir, stripeSignature } from './support/fake-stripe.js';

// The fake itself, exercised through the real SDK: if it drifts from Stripe's behaviour, the
// sync tests built on it prove nothing.

const SHARED = defaultSharedDir();
const HAS_SHARED = existsSync(path.join(SHARED, 'openapi-subset.json'));

let fake: FakeStripe | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

function sdk(f: FakeStripe, timeout = 2000): Stripe {
  const u = new URL(f.url);
  return new Stripe('sk_test_fake', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0, timeout });
}

async function stripeError(p: Promise<unknown>): Promise<Record<string, any>> {
  try {
    await p;
  } catch (e) {
    return e as Record<string, any>;
  }
  throw new Error('expected the call to fail');
}

describe('fake stripe: idempotency', () => {
  it('replays the first answer for the same key and parameters', async () => {
    fake = await FakeStripe.start();
    const s = sdk(fake);
    const a = await s.customers.create({ name: 'Acme', metadata: { tenant_id: 'acme' } }, { idempotencyKey: 'k1' });
    const b = await s.customers.create({ name: 'Acme', metadata: { tenant_id: 'acme' } }, { idempotencyKey: 'k1' });
    expect(b.id).toBe(a.id);
    expect(b.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(a.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect(fake.customers()).toHaveLength(1);
  });

  it('rejects the same key with different parameters', async () => {
    fake = await FakeStripe.start();
    const s = sdk(fake);
    await s.customers.create({ name: 'Acme' }, { idempotencyKey: 'k2' });
    const err = await stripeError(s.customers.create({ name: 'Other' }, { idempotencyKey: 'k2' }));
    expect(err.statusCode).toBe(400);
    expect(err.type).toBe('StripeIdempotencyError');
    expect(fake.customers()).toHaveLength(1);
  });

  it('answers 409 idempotency_key_in_use while the first request still executes, then replays', async () => {
    fake = await FakeStripe.start();
    let release!: () => void;
    let saved!: () => void;
    const released = new Promise<void>((r) => (release = r));
    const executed = new Promise<void>((r) => (saved = r));
    fake.inject({ path: '/v1/customers', fault: { kind: 'hold', until: released, onSaved: saved } });
    const s = sdk(fake, 200);
    const first = await stripeError(s.customers.create({ name: 'Slow' }, { idempotencyKey: 'k3' }));
    expect(first.type).toBe('StripeConnectionError');
    const busy = await stripeError(s.customers.create({ name: 'Slow' }, { idempotencyKey: 'k3' }));
    expect(busy.statusCode).toBe(409);
    expect(busy.code).toBe('idempotency_key_in_use');
    release();
    await executed;
    const done = await s.customers.create({ name: 'Slow' }, { idempotencyKey: 'k3' });
    expect(done.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(fake.customers()).toHaveLength(1);
  });

  it('forgets keys after 24 hours of fake time', async () => {
    fake = await FakeStripe.start({ now: Date.UTC(2026, 0, 1) });
    const s = sdk(fake);
    await s.customers.create({ name: 'A' }, { idempotencyKey: 'k4' });
    fake.setNow(Date.UTC(2026, 0, 2, 0, 0, 1));
    await s.customers.create({ name: 'A' }, { idempotencyKey: 'k4' });
    expect(fake.customers()).toHaveLength(2);
  });
});

describe('fake stripe: faults', () => {
  it('scripts 500, 429 with Stripe-Should-Retry, then serves normally', async () => {
    fake = await FakeStripe.start();
    fake.inject({ method: 'POST', path: '/v1/customers', fault: { kind: 'status', status: 500 } });
    fake.inject({ method: 'POST', path: '/v1/customers', fault: { kind: 'status', status: 429, shouldRetry: true } });
    const s = sdk(fake);
    const e500 = await stripeError(s.customers.create({ name: 'A' }, { idempotencyKey: 'f1' }));
    expect(e500.statusCode).toBe(500);
    const e429 = await stripeError(s.customers.create({ name: 'A' }, { idempotencyKey: 'f1' }));
    expect(e429.statusCode).toBe(429);
    expect(e429.headers['stripe-should-retry']).toBe('true');
    const ok = await s.customers.create({ name: 'A' }, { idempotencyKey: 'f1' });
    // Faults answered before execution save nothing under the key.
    expect(ok.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect(fake.customers()).toHaveLength(1);
  });

  it('resets a connection after executing; the retry with the same key replays', async () => {
    fake = await FakeStripe.start();
    fake.inject({ path: '/v1/customers', fault: { kind: 'reset', after: 'process' } });
    const s = sdk(fake);
    // The SDK retries a closed connection once by itself, with the same key.
    const c = await s.customers.create({ name: 'A' }, { idempotencyKey: 'f2' });
    expect(c.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(fake.customers()).toHaveLength(1);
    expect(fake.requests.filter((r) => r.path === '/v1/customers').map((r) => r.fault)).toEqual(['reset', null]);
  });

  it('hangs until the client times out', async () => {
    fake = await FakeStripe.start();
    fake.inject({ path: '/v1/customers', fault: { kind: 'hang' } });
    const err = await stripeError(sdk(fake, 100).customers.create({ name: 'A' }, { idempotencyKey: 'f3' }));
    expect(err.type).toBe('StripeConnectionError');
    expect(fake.customers()).toHaveLength(0);
  });

  it('tells the test once a call is accepted, before answering', async () => {
    fake = await FakeStripe.start();
    const seen: string[] = [];
    fake.inject({ path: '/v1/customers', fault: { kind: 'accepted', notify: (info) => void seen.push(`${info.status} ${(info.body as any).id}`) } });
    const c = await sdk(fake).customers.create({ name: 'A' }, { idempotencyKey: 'f4' });
    expect(seen).toEqual([`200 ${c.id}`]);
  });
});

describe('fake stripe: objects', () => {
  it('builds invoices from items, finalizes, declines and pays, and records events', async () => {
    fake = await FakeStripe.start({ now: Date.UTC(2026, 2, 1) });
    const s = sdk(fake);
    const cus = await s.customers.create({ metadata: { tenant_id: 't1' } });
    const inv = await s.invoices.create({ customer: cus.id, currency: 'jpy', auto_advance: false, collection_method: 'charge_automatically' });
    await s.invoiceItems.create({ customer: cus.id, invoice: inv.id, amount: 1500, currency: 'jpy', period: { start: 1, end: 2 }, metadata: { line: '1' } });
    await s.invoiceItems.create({ customer: cus.id, invoice: inv.id, amount: -200, currency: 'jpy' });
    const open = await s.invoices.finalizeInvoice(inv.id, { auto_advance: false });
    expect(open.status).toBe('open');
    expect(open.amount_due).toBe(1300);
    expect(open.lines.data.map((l) => l.amount)).toEqual([1500, -200]);
    fake.setPaymentOutcomes(cus.id, ['decline']);
    const declined = await stripeError(s.invoices.pay(inv.id, {}, { idempotencyKey: 'pay-1' }));
    expect(declined.type).toBe('StripeCardError');
    const paid = await s.invoices.pay(inv.id, {}, { idempotencyKey: 'pay-2' });
    expect(paid.status).toBe('paid');
    expect(fake.events.map((e) => e.type)).toEqual([
      'customer.created', 'invoice.created', 'invoiceitem.created', 'invoiceitem.created', 'invoice.finalized',
      'invoice.payment_failed', 'invoice.paid', 'invoice.payment_succeeded',
    ]);
    const found = await s.customers.search({ query: "metadata['tenant_id']:'t1'" });
    expect(found.data.map((c) => c.id)).toEqual([cus.id]);
  });

  it('pages events newer than a cursor, newest first', async () => {
    fake = await FakeStripe.start();
    for (let i = 0; i < 5; i++) fake.emitEvent('invoice.paid', { id: `in_${i}` });
    const ids = fake.events.map((e) => e.id);
    const page = await sdk(fake).events.list({ ending_before: ids[0], limit: 2 });
    expect(page.data.map((e) => e.id)).toEqual([ids[2], ids[1]]);
    expect(page.has_more).toBe(true);
  });

  it('rejects a meter event identifier seen before and timestamps outside the window', async () => {
    const now = Date.UTC(2026, 5, 1);
    fake = await FakeStripe.start({ now });
    const s = sdk(fake);
    const base = { event_name: 'api_calls', payload: { stripe_customer_id: 'cus_x', value: '3' } };
    await s.billing.meterEvents.create({ ...base, identifier: 'ev-1', timestamp: now / 1000 - 60 });
    const dup = await stripeError(s.billing.meterEvents.create({ ...base, identifier: 'ev-1', timestamp: now / 1000 - 60 }));
    expect(dup.message).toMatch(/already exists with identifier ev-1/);
    const old = await stripeError(s.billing.meterEvents.create({ ...base, identifier: 'ev-2', timestamp: now / 1000 - 36 * 86400 }));
    expect(old.param).toBe('timestamp');
    expect(fake.meterEvents()).toHaveLength(1);
  });

  it('signs webhook payloads the way the SDK verifies them', async () => {
    fake = await FakeStripe.start();
    const event = fake.emitEvent('invoice.paid', { id: 'in_1', object: 'invoice' });
    const { payload, signature } = fake.signedWebhook(event, 'whsec_test');
    const verified = Stripe.webhooks.constructEvent(payload, signature, 'whsec_test');
    expect(verified.id).toBe(event.id);
    expect(() => Stripe.webhooks.constructEvent(payload, stripeSignature(payload, 'whsec_other', Math.floor(Date.now() / 1000)), 'whsec_test')).toThrow();
  });
});

describe('fake stripe: OpenAPI validation', () => {
  it.skipIf(!HAS_SHARED)('rejects unknown, mistyped, out-of-enum and missing parameters, naming the param', async () => {
    fake = await FakeStripe.start();
    expect(fake.validator).not.toBeNull();
    expect(fake.usesFixtures).toBe(true);
    const s = sdk(fake);
    const cus = await s.customers.create({ name: 'A' });
    const cases: Array<[Promise<unknown>, string]> = [
      [s.invoiceItems.create({ customer: cus.id, amount: 100, currency: 'usd', bogus: 'x' } as any), 'bogus'],
      [s.invoiceItems.create({ customer: cus.id, amount: '1.5' as any, currency: 'usd' }), 'amount'],
      [s.invoiceItems.create({ customer: cus.id, amount: 1, currency: 'usd', period: { start: 1 } as any }), 'period[end]'],
      [s.invoices.create({ customer: cus.id, collection_method: 'sometimes' as any }), 'collection_method'],
      [s.billing.meterEvents.create({ payload: { value: '1' } } as any), 'event_name'],
      [s.invoices.create({ customer: cus.id, auto_advance: 'maybe' as any }), 'auto_advance'],
    ];
    for (const [call, param] of cases) {
      const err = await stripeError(call);
      expect(err.statusCode, param).toBe(400);
      expect(err.type).toBe('StripeInvalidRequestError');
      expect(err.param).toBe(param);
    }
    expect(fake.invoiceItems()).toHaveLength(0);
    expect(fake.invoices()).toHaveLength(0);
  });

  it('skips validation (and uses built-in shapes) when the reference folder is absent', async () => {
    fake = await FakeStripe.start({ sharedDir: null });
    expect(fake.validator).toBeNull();
    expect(fake.usesFixtures).toBe(false);
    const s = sdk(fake);
    const cus = await s.customers.create({ name: 'A', bogus: 'x' } as any);
    expect(cus.object).toBe('customer');
    expect(fake.customers()).toHaveLength(1);
  });
});

describe('fake stripe: credit notes', () => {
  // /v1/credit_notes is not in the OpenAPI subset: the fake checks Stripe's rules itself.
  async function openInvoice(s: Stripe, amount: number) {
    const c = await s.customers.create({ name: 'Acme' });
    const inv = await s.invoices.create({ customer: c.id, currency: 'usd', auto_advance: false });
    await s.invoiceItems.create({ customer: c.id, invoice: inv.id, amount, currency: 'usd' });
    return s.invoices.finalizeInvoice(inv.id);
  }

  it('lowers an open invoice amount_due, settles it at zero, and refuses more than remains', async () => {
    fake = await FakeStripe.start();
    const s = sdk(fake);
    const inv = await openInvoice(s, 1000);
    const cn = await s.creditNotes.create({ invoice: inv.id, amount: 300, reason: 'duplicate', memo: 'm' });
    expect(cn).toMatchObject({ amount: 300, type: 'pre_payment', invoice: inv.id });
    expect(await s.invoices.retrieve(inv.id)).toMatchObject({ status: 'open', amount_due: 700, amount_remaining: 700, pre_payment_credit_notes_amount: 300 });
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 701 }))).param).toBe('amount');
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 10, refund_amount: 10 }))).param).toBe('refund_amount');
    await s.creditNotes.create({ invoice: inv.id, amount: 700 });
    expect(await s.invoices.retrieve(inv.id)).toMatchObject({ status: 'paid', amount_due: 0 });
    expect((await s.creditNotes.list({ invoice: inv.id })).data).toHaveLength(2);
  });

  it('on a paid invoice needs refund + credit + out of band to add up to the amount, within what was paid', async () => {
    fake = await FakeStripe.start();
    const s = sdk(fake);
    const inv = await openInvoice(s, 1000);
    await s.invoices.pay(inv.id);
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 300, refund_amount: 200 }))).param).toBe('amount');
    await s.creditNotes.create({ invoice: inv.id, amount: 600, out_of_band_amount: 600 });
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 500, refund_amount: 500 }))).param).toBe('amount');
    expect(await s.invoices.retrieve(inv.id)).toMatchObject({ status: 'paid', amount_due: 1000, post_payment_credit_notes_amount: 600 });
  });

  it('refuses unknown parameters and reasons outside Stripe enum', async () => {
    fake = await FakeStripe.start();
    const s = sdk(fake);
    const inv = await openInvoice(s, 1000);
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 1, reason: 'outage' as never }))).param).toBe('reason');
    expect((await stripeError(s.creditNotes.create({ invoice: inv.id, amount: 1, colour: 'red' } as never))).param).toBe('colour');
  });
});
