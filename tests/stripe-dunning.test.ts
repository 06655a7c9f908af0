import Stripe from 'stripe';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { FakeStripe } from './support/fake-stripe.js';
import { HOUR, SCENARIO, T0, seedScenario, spawnBilling } from './support/stripe-scenario.js';

// Dunning by the clock: a declined payment is retried at +0 h, +72 h and +144 h exactly as
// `--now` says; the last failure makes the invoice uncollectible and the subscription past
// due, and a later payment brings the subscription back.

let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: T0 });
});
afterEach(async () => {
  await fake.close();
});

const [acme, tokyo, kuwait] = SCENARIO;
const FAST = ['--rate', '1000'];

describeEachDb('stripe dunning', (t) => {
  it('retries at +0 h, +72 h, +144 h after the failure, then gives up: uncollectible and past due', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    fake.defaultPaymentOutcome = 'decline';
    const run = async (args: string[], now: number) => {
      fake.setNow(now);
      const r = await spawnBilling([...args, '--json', ...FAST], { db: url, now, fake }).done;
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout);
    };
    const sync = await run(['stripe', 'sync'], T0);
    expect(sync.paymentFailures).toBe(3);
    const schedule = await db.knex('stripe_dunning').orderBy('tenant_id');
    expect(schedule.map((d) => [d.tenant_id, d.status, Number(d.next_attempt_at)])).toEqual([
      ['acme', 'active', T0], ['kuwait', 'active', T0], ['tokyo', 'active', T0],
    ]);

    expect(await run(['stripe', 'dunning'], T0)).toMatchObject({ attempted: 3, declined: 3 });
    expect(await run(['stripe', 'dunning'], T0 + 72 * HOUR - 60_000)).toMatchObject({ attempted: 0 });

    // acme's card works again by the second retry.
    const acmeCustomer = (await db.knex('tenants').where({ id: 'acme' }).first()).stripe_customer_id;
    fake.setPaymentOutcomes(acmeCustomer, ['succeed']);
    expect(await run(['stripe', 'dunning'], T0 + 72 * HOUR)).toMatchObject({ attempted: 3, recovered: 1, declined: 2 });
    expect((await db.knex('invoices').where({ id: acme.id }).first()).status).toBe('paid');
    expect(Number((await db.knex('stripe_dunning').where({ tenant_id: 'tokyo' }).first()).next_attempt_at)).toBe(T0 + 144 * HOUR);

    expect(await run(['stripe', 'dunning'], T0 + 144 * HOUR - 1)).toMatchObject({ attempted: 0 });
    expect(await run(['stripe', 'dunning'], T0 + 144 * HOUR)).toMatchObject({ attempted: 2, exhausted: 2, errors: [] });
    for (const inv of [tokyo, kuwait]) {
      expect((await db.knex('invoices').where({ id: inv.id }).first()).status).toBe('uncollectible');
      expect((await db.knex('subscriptions').where({ tenant_id: inv.tenantId }).first()).status).toBe('past_due');
      expect(fake.invoices().find((i) => i.metadata.billing_invoice_id === inv.id)!.status).toBe('uncollectible');
    }
    expect((await db.knex('subscriptions').where({ tenant_id: 'acme' }).first()).status).toBe('active');
    // Each invoice was tried four times in all: the first payment and three retries.
    const payCalls = fake.requests.filter((q) => /\/pay$/.test(q.path) && !q.replayed);
    expect(payCalls.filter((q) => q.idempotencyKey!.includes(tokyo.id))).toHaveLength(4);
    expect(await run(['stripe', 'dunning'], T0 + 300 * HOUR)).toMatchObject({ attempted: 0 });

    // tokyo pays later on the hosted page: the webhook brings the subscription back.
    const u = new URL(fake.url);
    const sdk = new Stripe('sk_test_fake', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
    const jp = fake.invoices().find((i) => i.metadata.billing_invoice_id === tokyo.id)!;
    await sdk.invoices.pay(jp.id, { paid_out_of_band: true });
    const event = fake.events.filter((e) => e.type === 'invoice.paid').pop()!;
    const { payload, signature } = fake.signedWebhook(event, 'whsec_test_secret');
    const r = await spawnBilling(['stripe', 'webhook', '--signature', signature], { db: url, now: T0 + 300 * HOUR, fake, input: payload }).done;
    expect(r.code).toBe(0);
    expect((await db.knex('invoices').where({ id: tokyo.id }).first()).status).toBe('paid');
    expect((await db.knex('subscriptions').where({ tenant_id: 'tokyo' }).first()).status).toBe('active');
    expect((await db.knex('subscriptions').where({ tenant_id: 'kuwait' }).first()).status).toBe('past_due');
    const actions = (await db.knex('audit_log').where({ tenant_id: 'tokyo' }).orderBy('id')).map((a) => `${a.entity}:${a.action}`);
    expect(actions.filter((a) => /dunning|past_due|reactivate|uncollectible/.test(a))).toEqual([
      'stripe:dunning.started', 'stripe:dunning.retry_failed', 'stripe:dunning.retry_failed',
      'invoice:uncollectible', 'subscription:past_due', 'stripe:dunning.exhausted', 'stripe:invoice.marked_uncollectible',
      'stripe:dunning.recovered', 'subscription:reactivate',
    ]);
  });
});
