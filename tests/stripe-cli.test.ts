import Stripe from 'stripe';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { FakeStripe } from './support/fake-stripe.js';
import { DAY, HOUR, T0, mirrorProblems, seedMeteredUsage, seedScenario, seedTenant, spawnBilling, type Spawned } from './support/stripe-scenario.js';

// The real bin/billing against the fake: crash safety (SIGKILL mid-sync), dry run, meter
// events and the status listing, on both databases.

let fake: FakeStripe;
beforeEach(async () => {
  fake = await FakeStripe.start({ now: T0 });
});
afterEach(async () => {
  await fake.close();
});

const FAST = ['--rate', '1000', '--timeout', '2000'];

describeEachDb('stripe CLI', (t) => {
  it('a sync SIGKILLed right after Stripe accepted a call is finished exactly by the next run', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    // Every other call goes through the same path (call, then record in one transaction).
    const killPoints = [
      { method: 'POST', path: '/v1/customers' },
      { method: 'POST', path: '/v1/invoiceitems' },
      { method: 'POST', path: /\/pay$/ },
    ];
    for (const point of killPoints) {
      let run: Spawned | undefined;
      fake.inject({
        ...point,
        fault: {
          kind: 'accepted',
          notify: async () => {
            run!.child.kill('SIGKILL');
            await run!.done;
          },
        },
      });
      run = spawnBilling(['stripe', 'sync', ...FAST], { db: url, now: T0, fake });
      const r = await run.done;
      expect(r.signal, `killed after ${String(point.path)}`).toBe('SIGKILL');
    }
    const final = await spawnBilling(['stripe', 'sync', '--json', ...FAST], { db: url, now: T0, fake }).done;
    expect(final.stderr).toBe('');
    expect(final.code).toBe(0);
    expect(await mirrorProblems(fake, db.knex, { status: 'paid' })).toEqual([]);
    // Every kill left Stripe's answer unrecorded; the reruns replayed it under the same key.
    expect(fake.requests.filter((q) => q.replayed).length).toBeGreaterThanOrEqual(killPoints.length);
    const status = JSON.parse((await spawnBilling(['stripe', 'status', '--json'], { db: url, now: T0, fake }).done).stdout);
    expect(status.counts).toMatchObject({ pending: 0, failed: 0, dead: 0 });
  });

  it('--dry-run prints every call with its amounts, needs no key and changes nothing', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    const human = await spawnBilling(['stripe', 'sync', '--dry-run'], { db: url, now: T0, fake, env: { STRIPE_SECRET_KEY: '' } }).done;
    expect(human.code).toBe(0);
    expect(human.stdout).toMatch(/^dry run: 19 call\(s\) would be made/);
    expect(human.stdout).toContain('POST /v1/invoiceitems  Idempotency-Key: billing/tokyo/invoice/in_tokyo_2026_02/line/2');
    expect(human.stdout).toContain('"amount":12345,"currency":"kwd"');
    const json = JSON.parse((await spawnBilling(['stripe', 'sync', '--dry-run', '--json', '--tenant', 'acme'], { db: url, now: T0, fake }).done).stdout);
    expect(json.planned.map((c: any) => c.path)).toEqual([
      '/v1/customers', '/v1/invoices', '/v1/invoiceitems', '/v1/invoiceitems', '/v1/invoiceitems',
      '/v1/invoices/<Stripe invoice for in_acme_2026_02>/finalize', '/v1/invoices/<Stripe invoice for in_acme_2026_02>/pay',
    ]);
    expect(json.planned[4].params).toMatchObject({ amount: -50, currency: 'usd', description: 'Late usage revised down' });
    expect(fake.requests).toHaveLength(0);
    expect(Number((await db.knex('stripe_outbox').count({ n: '*' }))[0].n)).toBe(0);
    expect(Number((await db.knex('audit_log').where({ entity: 'stripe' }).count({ n: '*' }))[0].n)).toBe(0);
  });

  it('sends metered usage as meter events; usage Stripe cannot take is reported by name, not dropped', async () => {
    const { db, url } = t();
    await seedTenant(db.knex, 'acme', 'USD', 'sub_acme');
    const u = new URL(fake.url);
    const sdk = new Stripe('sk_test_fake', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
    await sdk.billing.meters.create({ display_name: 'API calls', event_name: 'api_calls', default_aggregation: { formula: 'sum' } });
    await seedMeteredUsage(db.knex, [
      { tenantId: 'acme', eventId: 'ev-ok', quantity: '3', occurredAt: T0 - DAY },
      { tenantId: 'acme', eventId: 'ev-half', quantity: '1.5', occurredAt: T0 - 2 * HOUR },
      { tenantId: 'acme', eventId: 'ev-old', quantity: '7', occurredAt: T0 - 40 * DAY },
      { tenantId: 'acme', eventId: 'ev-ahead', quantity: '2', occurredAt: T0 + HOUR },
    ]);
    const first = await spawnBilling(['stripe', 'sync', '--json', ...FAST], { db: url, now: T0, fake }).done;
    expect(first.code).toBe(3);
    const r = JSON.parse(first.stdout);
    expect(r.warnings).toEqual([]);
    expect(r.sent).toEqual({ customer: 1, meter_event: 1 });
    const customer = fake.customers()[0].id;
    expect(r.errors.map((e: any) => e.message).sort()).toEqual([
      expect.stringMatching(/event_id ev-half\) of tenant acme: quantity 1\.5 is not a whole number/),
      expect.stringMatching(/event_id ev-old\) of tenant acme occurred at 2026-01-20T00:30:00\.000Z, more than 35 days before now/),
    ]);
    expect(r.postponed).toBe(1);
    const events = fake.meterEvents().sort((a, b) => a.timestamp - b.timestamp);
    expect(events.map((e) => [e.event_name, e.payload.value, e.payload.stripe_customer_id, e.timestamp])).toEqual([
      ['api_calls', '3', customer, (T0 - DAY) / 1000],
    ]);
    expect(events[0].identifier).toMatch(/^acme:\d+$/);

    const status = JSON.parse((await spawnBilling(['stripe', 'status', '--json'], { db: url, now: T0, fake }).done).stdout);
    expect(status.counts).toMatchObject({ sent: 2, pending: 1, dead: 2 });
    expect(status.rows.filter((x: any) => x.status === 'dead').map((x: any) => x.kind)).toEqual(['meter_event', 'meter_event']);

    // Two hours later the future event is inside the window; a rerun sends only it.
    fake.setNow(T0 + 2 * HOUR);
    const later = JSON.parse((await spawnBilling(['stripe', 'sync', '--json', ...FAST], { db: url, now: T0 + 2 * HOUR, fake }).done).stdout);
    expect(later.sent).toEqual({ meter_event: 1 });
    expect(later.errors).toEqual([]);
    expect(fake.meterEvents().map((e) => e.payload.value).sort()).toEqual(['2', '3']);
  });

  it('does not re-send a meter event whose outcome is unknown past Stripe\'s 24 h window: it goes to the dead letters', async () => {
    const { db, url } = t();
    await seedTenant(db.knex, 'acme', 'USD', 'sub_acme');
    await seedMeteredUsage(db.knex, [{ tenantId: 'acme', eventId: 'ev-1', quantity: '5', occurredAt: T0 - HOUR }]);
    // First run: Stripe records the event, every answer is lost.
    fake.inject({ method: 'POST', path: '/v1/billing/meter_events', times: 100, fault: { kind: 'hang', after: 'process' } });
    const lost = JSON.parse((await spawnBilling(['stripe', 'sync', '--json', '--rate', '1000', '--timeout', '150'], { db: url, now: T0, fake }).done).stdout);
    fake.clearFaults();
    expect(lost.retryLater).toBe(1);
    const sends = () => fake.requests.filter((q) => q.path === '/v1/billing/meter_events').length;
    const before = sends();

    fake.setNow(T0 + 25 * HOUR);
    const late = await spawnBilling(['stripe', 'sync', '--json', ...FAST], { db: url, now: T0 + 25 * HOUR, fake }).done;
    expect(late.code).toBe(3);
    expect(JSON.parse(late.stdout).errors).toEqual([
      expect.objectContaining({ kind: 'meter_event', outcome: 'dead', message: expect.stringMatching(/event_id ev-1\) of tenant acme: outcome unknown past Stripe's 24 h idempotency window \(first sent 2026-03-01T00:30:00\.000Z; last error: network: /) }),
    ]);
    expect(sends()).toBe(before);
    const status = JSON.parse((await spawnBilling(['stripe', 'status', '--json'], { db: url, now: T0 + 25 * HOUR, fake }).done).stdout);
    expect(status.counts).toMatchObject({ dead: 1, pending: 0 });

    // The operator revives it: Stripe answers that it has the identifier, which counts as delivered.
    const revived = await spawnBilling(['stripe', 'retry', '--dead', '--json', ...FAST], { db: url, now: T0 + 26 * HOUR, fake }).done;
    expect(revived.code).toBe(0);
    expect(JSON.parse(revived.stdout).sent).toEqual({ meter_event: 1 });
    expect(fake.meterEvents()).toHaveLength(1);
    const last = fake.requests.filter((q) => q.path === '/v1/billing/meter_events').pop()!;
    expect(last.status).toBe(400);
    expect(last.replayed).toBe(false);
  });
});
