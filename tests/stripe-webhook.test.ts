import Stripe from 'stripe';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { FakeStripe, stripeSignature } from './support/fake-stripe.js';
import { HOUR, SCENARIO, T0, seedScenario, spawnBilling } from './support/stripe-scenario.js';
import { stripeSync } from '../src/stripe/sync.js';
import { applyStripeEvent } from '../src/stripe/webhooks.js';
import type { StripeConfig } from '../src/stripe/config.js';
import type { Db } from '../src/storage/db.js';

// Stripe → billing: signed webhook deliveries through the CLI, applied once per event id;
// the events pull with its cursor.

const SECRET = 'whsec_test_secret';
let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: T0 });
});
afterEach(async () => {
  await fake.close();
});

function config(): StripeConfig {
  return { secretKey: 'sk_test_fake', apiBase: fake.url, webhookSecret: SECRET, timeoutMs: 2000, concurrency: 4, maxRequestsPerSecond: 0 };
}

function sdk(): Stripe {
  const u = new URL(fake.url);
  return new Stripe('sk_test_fake', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
}

/** Sync the scenario with every card declining: three open invoices in dunning. */
async function syncDeclined(db: Db): Promise<void> {
  fake.defaultPaymentOutcome = 'decline';
  const r = await stripeSync(db, { now: T0, actor: 'test', stripe: config(), random: () => 0.5, sleep: async () => {} });
  expect(r.paymentFailures).toBe(3);
}

const acme = SCENARIO[0];

describeEachDb('stripe webhooks', (t) => {
  it('applies a signed invoice.paid once; a duplicate delivery changes nothing', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    await syncDeclined(db);
    const stripeInvoice = fake.invoices().find((i) => i.metadata.billing_invoice_id === acme.id)!;
    // The customer pays on the hosted page: Stripe emits invoice.paid.
    fake.setNow(T0 + HOUR);
    await sdk().invoices.pay(stripeInvoice.id, { paid_out_of_band: true });
    const event = fake.events.filter((e) => e.type === 'invoice.paid').pop()!;
    const { payload, signature } = fake.signedWebhook(event, SECRET);

    const first = await spawnBilling(['stripe', 'webhook', '-', '--signature', signature, '--json'], { db: url, now: T0 + HOUR, fake, input: payload }).done;
    expect(first.stderr).toBe('');
    expect(JSON.parse(first.stdout)).toMatchObject({ eventId: event.id, type: 'invoice.paid', outcome: 'applied' });
    const inv = await db.knex('invoices').where({ tenant_id: 'acme', id: acme.id }).first();
    expect(inv.status).toBe('paid');
    expect(inv.payment_ref).toBe(stripeInvoice.id);
    const dunning = await db.knex('stripe_dunning').where({ tenant_id: 'acme' }).first();
    expect(dunning.status).toBe('recovered');

    const again = await spawnBilling(['stripe', 'webhook', '--signature', signature, '--json'], { db: url, now: T0 + HOUR, fake, input: payload }).done;
    expect(JSON.parse(again.stdout)).toMatchObject({ outcome: 'duplicate' });
    expect(await db.knex('audit_log').where({ entity: 'invoice', entity_id: acme.id, action: 'paid' })).toHaveLength(1);
    expect(await db.knex('stripe_events')).toHaveLength(1);
  });

  it('rejects a bad signature with exit 2 and applies nothing', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    await syncDeclined(db);
    const stripeInvoice = fake.invoices().find((i) => i.metadata.billing_invoice_id === acme.id)!;
    await sdk().invoices.pay(stripeInvoice.id, { paid_out_of_band: true });
    const event = fake.events.filter((e) => e.type === 'invoice.paid').pop()!;
    const { payload, signature } = fake.signedWebhook(event, SECRET);
    const cases = [
      { name: 'wrong secret', payload, signature: stripeSignature(payload, 'whsec_other', T0 / 1000) },
      { name: 'tampered body', payload: payload.replace('"paid"', '"open"'), signature },
      { name: 'stale timestamp', payload, signature: stripeSignature(payload, SECRET, T0 / 1000 - 3600) },
      { name: 'timestamp a year ahead', payload, signature: stripeSignature(payload, SECRET, T0 / 1000 + 365 * 24 * 3600) },
      { name: 'timestamp an hour ahead', payload, signature: stripeSignature(payload, SECRET, T0 / 1000 + 3600) },
    ];
    for (const c of cases) {
      const r = await spawnBilling(['stripe', 'webhook', '--signature', c.signature], { db: url, now: T0, fake, input: c.payload }).done;
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(/webhook signature check failed .*nothing was applied/);
    }
    expect(await db.knex('stripe_events')).toHaveLength(0);
    expect((await db.knex('invoices').where({ id: acme.id }).first()).status).toBe('open');
    const noSecret = await spawnBilling(['stripe', 'webhook', '--signature', signature], { db: url, now: T0, fake, input: payload, env: { STRIPE_WEBHOOK_SECRET: '' } }).done;
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr).toMatch(/STRIPE_WEBHOOK_SECRET is not set/);
  });

  it('refuses a signed invoice.paid whose paid_at or created is not a sane time (exit 2), and applies nothing', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    await syncDeclined(db);
    const stripeInvoice = fake.invoices().find((i) => i.metadata.billing_invoice_id === acme.id)!;
    await sdk().invoices.pay(stripeInvoice.id, { paid_out_of_band: true });
    const event = fake.events.filter((e) => e.type === 'invoice.paid').pop()! as any;
    const cases: Array<[string, any]> = [
      ['paid_at 1e20', { ...event, data: { object: { ...event.data.object, status_transitions: { paid_at: 1e20 } } } }],
      ['paid_at negative', { ...event, data: { object: { ...event.data.object, status_transitions: { paid_at: -5 } } } }],
      ['paid_at a fraction', { ...event, data: { object: { ...event.data.object, status_transitions: { paid_at: T0 / 1000 + 0.5 } } } }],
      ['paid_at text', { ...event, data: { object: { ...event.data.object, status_transitions: { paid_at: 'yesterday' } } } }],
      ['created 1e20', { ...event, created: 1e20 }],
    ];
    for (const [name, ev] of cases) {
      const { payload, signature } = fake.signedWebhook(ev, SECRET);
      const r = await spawnBilling(['stripe', 'webhook', '--signature', signature], { db: url, now: T0, fake, input: payload }).done;
      expect(r.code, `${name}: ${r.stderr}`).toBe(2);
      expect(r.stderr.trimEnd().split('\n'), name).toHaveLength(1);
      expect(r.stderr, name).toMatch(/^billing: Stripe event evt_\w+: (data\.object\.status_transitions\.paid_at|created) .* is not a time in epoch seconds .*nothing was applied/);
    }
    expect(await db.knex('stripe_events')).toHaveLength(0);
    expect((await db.knex('invoices').where({ id: acme.id }).first()).status).toBe('open');
  });

  it('invoice show prints a stored out-of-range time instead of crashing', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    const inv = await db.knex('invoices').where({ id: acme.id }).first();
    // 9e18 ms fits a bigint but is far past what a Date can hold (8.64e15).
    await db.knex('invoices').where({ id: acme.id }).update({ status: 'paid', paid_at: 9e18 });
    const shown = await spawnBilling(['invoice', 'show', inv.number], { db: url, now: T0, fake }).done;
    expect(shown.stderr).toBe('');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toMatch(/paid invalid time \(9000000000000000000\)/);
    const json = await spawnBilling(['invoice', 'show', inv.number, '--json'], { db: url, now: T0, fake }).done;
    expect(json.code).toBe(0);
    expect(JSON.parse(json.stdout).paidAt).toBe('invalid time (9000000000000000000)');
  });

  it('customer.deleted clears the mapping; the next sync creates a fresh customer', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    await stripeSync(db, { now: T0, actor: 'test', stripe: config(), sleep: async () => {} });
    const old = (await db.knex('tenants').where({ id: 'tokyo' }).first()).stripe_customer_id;
    fake.deleteCustomer(old);
    const deleted = fake.events.filter((e) => e.type === 'customer.deleted').pop()!;
    const r = await applyStripeEvent(db, deleted as any, { now: T0 + HOUR, actor: 'webhook' });
    expect(r).toMatchObject({ outcome: 'applied' });
    expect((await db.knex('tenants').where({ id: 'tokyo' }).first()).stripe_customer_id).toBeNull();
    expect(await db.knex('audit_log').where({ entity: 'stripe', action: 'customer.deleted', tenant_id: 'tokyo' })).toHaveLength(1);
    const again = await stripeSync(db, { now: T0 + 2 * HOUR, actor: 'test', stripe: config(), sleep: async () => {} });
    expect(again.sent).toEqual({ customer: 1 });
    const fresh = (await db.knex('tenants').where({ id: 'tokyo' }).first()).stripe_customer_id;
    expect(fresh).not.toBe(old);
    expect(fake.customers().filter((c) => c.metadata.tenant_id === 'tokyo').map((c) => c.id)).toEqual([fresh]);
  });

  it('pulls events since the stored cursor and applies each once', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    await syncDeclined(db);
    const first = JSON.parse((await spawnBilling(['stripe', 'events', '--json', '--rate', '1000'], { db: url, now: T0 + HOUR, fake }).done).stdout);
    expect(first.fetched).toBe(fake.events.length);
    // The failures started dunning already (from the sync): the events change nothing more.
    expect(first.events.filter((e: any) => e.type === 'invoice.payment_failed').map((e: any) => e.outcome)).toEqual(['ignored', 'ignored', 'ignored']);
    expect(first.cursor).toBe(fake.events[fake.events.length - 1].id);
    const none = JSON.parse((await spawnBilling(['stripe', 'events', '--json', '--rate', '1000'], { db: url, now: T0 + HOUR, fake }).done).stdout);
    expect(none.fetched).toBe(0);

    const jp = fake.invoices().find((i) => i.metadata.billing_invoice_id === SCENARIO[1].id)!;
    await sdk().invoices.pay(jp.id, { paid_out_of_band: true });
    const next = JSON.parse((await spawnBilling(['stripe', 'events', '--json', '--rate', '1000'], { db: url, now: T0 + 2 * HOUR, fake }).done).stdout);
    expect(next.events.map((e: any) => [e.type, e.outcome])).toEqual([
      ['invoice.paid', 'applied'],
      ['invoice.payment_succeeded', 'ignored'],
    ]);
    expect((await db.knex('invoices').where({ id: SCENARIO[1].id }).first()).status).toBe('paid');
  });
});
