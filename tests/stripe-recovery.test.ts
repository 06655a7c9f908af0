import Stripe from 'stripe';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { HOUR, SCENARIO, T0, mirrorProblems, seedMeteredUsage, seedOpenInvoice, seedScenario, seedTenant } from './support/stripe-scenario.js';
import { useFakeStripe } from './support/use-fake-stripe.js';
import { stripeRetry, stripeSync } from '../src/stripe/sync.js';

// Recovery once Stripe has forgotten an idempotency key: a search result is only taken
// when its metadata says it is ours, whatever the server answers.

const world = useFakeStripe();
const { syncOpts } = world;

function sdk(): Stripe {
  const u = new URL(world.fake.url);
  return new Stripe('sk_test_fake', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
}

const LATER = T0 + 48 * HOUR;

function searchResult(url: string, data: unknown[]) {
  return { object: 'search_result', data, has_more: false, next_page: null, url };
}

describeEachDb('stripe recovery past the idempotency window', (t) => {
  it('five tenants get five customers when the customer search answers with someone else\'s customer', async () => {
    const { db } = t();
    const tenants = ['t1', 't2', 't3', 't4', 't5'];
    for (const id of tenants) await seedTenant(db.knex, id, 'USD', `sub_${id}`);
    // Every create is cut off before Stripe sees it; the rows wait with their first attempt noted.
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 100, fault: { kind: 'reset' } });
    const first = await stripeSync(db, syncOpts(T0));
    world.fake.clearFaults();
    expect(first.retryLater).toBe(5);
    expect(world.fake.customers()).toHaveLength(0);

    world.fake.setNow(LATER);
    const stranger = { id: 'cus_stranger', object: 'customer', metadata: { tenant_id: 'stranger' } };
    world.fake.inject({ method: 'GET', path: '/v1/customers/search', times: 5, fault: { kind: 'canned', body: searchResult('/v1/customers/search', [stranger]) } });
    const r = await stripeSync(db, syncOpts(LATER));
    expect(r.errors).toEqual([]);
    expect(world.fake.requests.filter((q) => q.path === '/v1/customers/search')).toHaveLength(5);
    const customers = world.fake.customers();
    expect(customers.map((c) => c.metadata.tenant_id).sort()).toEqual(tenants);
    for (const row of await db.knex('tenants').orderBy('id')) {
      expect(row.stripe_customer_id).toBe(customers.find((c) => c.metadata.tenant_id === row.id)!.id);
    }
  });

  it('picks the one search result that is ours among others, and fails the row when two are', async () => {
    const { db } = t();
    await seedTenant(db.knex, 'acme', 'USD', 'sub_acme');
    await seedTenant(db.knex, 'tokyo', 'JPY', 'sub_tokyo');
    // acme's customer is created but the answer is lost; tokyo's create never reaches Stripe.
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 100, fault: { kind: 'reset', after: 'process' } });
    await stripeSync(db, syncOpts(T0, { tenantId: 'acme' }));
    world.fake.clearFaults();
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 100, fault: { kind: 'reset' } });
    await stripeSync(db, syncOpts(T0, { tenantId: 'tokyo' }));
    world.fake.clearFaults();
    const acmeCopy = world.fake.customerByMetadata('tenant_id', 'acme')!;
    expect(world.fake.customers()).toHaveLength(1);

    world.fake.setNow(LATER);
    const stranger = { id: 'cus_stranger', object: 'customer', metadata: { tenant_id: 'stranger' } };
    world.fake.inject({ method: 'GET', path: '/v1/customers/search', fault: { kind: 'canned', body: searchResult('/v1/customers/search', [stranger, acmeCopy]) } });
    const acme = await stripeSync(db, syncOpts(LATER, { tenantId: 'acme' }));
    expect(acme.errors).toEqual([]);
    expect((await db.knex('tenants').where({ id: 'acme' }).first()).stripe_customer_id).toBe(acmeCopy.id);
    expect(world.fake.customers()).toHaveLength(1);

    // Someone made two customers for tokyo by hand meanwhile: which one is billing's is unknowable.
    const a = await sdk().customers.create({ metadata: { tenant_id: 'tokyo' } });
    const b = await sdk().customers.create({ metadata: { tenant_id: 'tokyo' } });
    const tokyo = await stripeSync(db, syncOpts(LATER, { tenantId: 'tokyo' }));
    expect(tokyo.errors).toEqual([
      expect.objectContaining({ kind: 'customer', outcome: 'failed', message: expect.stringMatching(/^2 Stripe customers carry metadata \{"tenant_id":"tokyo"\} \(.+\): cannot tell which is ours/) }),
    ]);
    expect(tokyo.errors[0].message).toContain(a.id);
    expect(tokyo.errors[0].message).toContain(b.id);
    expect((await db.knex('tenants').where({ id: 'tokyo' }).first()).stripe_customer_id).toBeNull();
    expect(world.fake.customers()).toHaveLength(3);
  });

  it('creates the invoice anew when the search answers with another tenant\'s invoice of the same local id', async () => {
    const { db } = t();
    const inv = SCENARIO[0];
    await seedTenant(db.knex, inv.tenantId, inv.currency, inv.subscriptionId);
    await seedOpenInvoice(db.knex, inv);
    world.fake.inject({ method: 'POST', path: '/v1/invoices', times: 100, fault: { kind: 'reset' } });
    const first = await stripeSync(db, syncOpts(T0));
    world.fake.clearFaults();
    expect(first.retryLater).toBe(1);

    world.fake.setNow(LATER);
    const foreign = { id: 'in_foreign', object: 'invoice', status: 'draft', metadata: { tenant_id: 'tokyo', billing_invoice_id: inv.id } };
    world.fake.inject({ method: 'GET', path: '/v1/invoices/search', fault: { kind: 'canned', body: searchResult('/v1/invoices/search', [foreign]) } });
    const r = await stripeSync(db, syncOpts(LATER));
    expect(r.errors).toEqual([]);
    expect(world.fake.requests.some((q) => q.path === '/v1/invoices/search')).toBe(true);
    const mapped = await db.knex('stripe_invoices').where({ tenant_id: inv.tenantId, invoice_id: inv.id }).first();
    expect(mapped.stripe_invoice_id).not.toBe('in_foreign');
    expect(await mirrorProblems(world.fake, db.knex, { status: 'paid', invoices: [inv] })).toEqual([]);
  });

  it('re-drives an ambiguous row with `stripe retry` once the duplicate is gone', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    world.fake.inject({ method: 'POST', path: '/v1/customers', times: 100, fault: { kind: 'reset' } });
    await stripeSync(db, syncOpts(T0, { tenantId: 'acme' }));
    world.fake.clearFaults();
    world.fake.setNow(LATER);
    const a = await sdk().customers.create({ metadata: { tenant_id: 'acme' } });
    await sdk().customers.create({ metadata: { tenant_id: 'acme' } });
    const r = await stripeSync(db, syncOpts(LATER, { tenantId: 'acme' }));
    expect(r.failed).toBe(1);
    await sdk().customers.del(a.id);
    const again = await stripeRetry(db, syncOpts(LATER + HOUR, { tenantId: 'acme' }));
    expect(again.errors).toEqual([]);
    expect(again.sent.customer).toBe(1);
    expect(world.fake.customers()).toHaveLength(1);
    expect((await db.knex('tenants').where({ id: 'acme' }).first()).stripe_customer_id).toBe(world.fake.customers()[0].id);
  });

  it('re-sends a meter event Stripe only ever refused, even past 24 h (nothing was recorded)', async () => {
    const { db } = t();
    await seedTenant(db.knex, 'acme', 'USD', 'sub_acme');
    await seedMeteredUsage(db.knex, [{ tenantId: 'acme', eventId: 'ev-1', quantity: '5', occurredAt: T0 - HOUR }]);
    world.fake.inject({ method: 'POST', path: '/v1/billing/meter_events', times: 1000, fault: { kind: 'status', status: 400, type: 'invalid_request_error', message: 'No active meter found' } });
    const first = await stripeSync(db, syncOpts(T0));
    expect(first.errors.map((e) => [e.kind, e.outcome])).toEqual([['meter_event', 'failed']]);
    // Unknown while the call was out, known once Stripe refused it.
    const refused = await db.knex('stripe_outbox').where({ tenant_id: 'acme', kind: 'meter_event' }).first();
    expect(Number(refused.outcome_unknown)).toBe(0);
    world.fake.clearFaults();
    world.fake.setNow(LATER);
    const again = await stripeRetry(db, syncOpts(LATER));
    expect(again.errors).toEqual([]);
    expect(again.sent).toEqual({ meter_event: 1 });
    expect(world.fake.meterEvents()).toHaveLength(1);
    const row = await db.knex('stripe_outbox').where({ tenant_id: 'acme', kind: 'meter_event' }).first();
    expect(Number(row.first_attempt_at)).toBe(LATER); // the key's window restarted with the re-send
  });

  it('stores that a meter event\'s outcome is unknown and decides on that field, not on the error text', async () => {
    const { db } = t();
    await seedTenant(db.knex, 'acme', 'USD', 'sub_acme');
    await seedMeteredUsage(db.knex, [
      { tenantId: 'acme', eventId: 'ev-1', quantity: '5', occurredAt: T0 - HOUR },
      { tenantId: 'acme', eventId: 'ev-2', quantity: '7', occurredAt: T0 - HOUR },
    ]);
    const rows = () => db.knex('stripe_outbox').where({ tenant_id: 'acme', kind: 'meter_event' }).orderBy('local_ref');
    // Stripe records both, every answer is lost.
    world.fake.inject({ method: 'POST', path: '/v1/billing/meter_events', times: 100, fault: { kind: 'reset', after: 'process' } });
    const lost = await stripeSync(db, syncOpts(T0));
    world.fake.clearFaults();
    expect(lost.retryLater).toBe(2);
    const [one, two] = await rows();
    expect(Number(one.outcome_unknown)).toBe(1);
    expect(Number(two.outcome_unknown)).toBe(1);
    // The decision reads the field, not the text: ev-1's error no longer reads like a network
    // error but stays unknown; ev-2's still does but is marked known, so it is re-sent.
    await db.knex('stripe_outbox').where({ tenant_id: one.tenant_id, idempotency_key: one.idempotency_key }).update({ last_error: 'connection went away' });
    await db.knex('stripe_outbox').where({ tenant_id: two.tenant_id, idempotency_key: two.idempotency_key }).update({ outcome_unknown: false });
    const sends = () => world.fake.requests.filter((q) => q.path === '/v1/billing/meter_events').length;
    const before = sends();

    world.fake.setNow(LATER);
    const late = await stripeSync(db, syncOpts(LATER));
    expect(late.errors).toEqual([
      expect.objectContaining({ kind: 'meter_event', outcome: 'dead', message: expect.stringContaining('outcome unknown past Stripe\'s 24 h idempotency window') }),
    ]);
    expect(late.errors[0].message).toContain('last error: connection went away');
    expect(late.sent).toEqual({ meter_event: 1 }); // ev-2: Stripe answers that it has the identifier
    expect(sends()).toBe(before + 1);
    const [deadRow, sentRow] = await rows();
    expect(deadRow).toMatchObject({ status: 'dead' });
    expect(Number(deadRow.outcome_unknown)).toBe(0); // reviving it (`retry --dead`) is the operator's word to re-send
    expect(sentRow).toMatchObject({ status: 'sent' });
    expect(Number(sentRow.outcome_unknown)).toBe(0);
  });
});
