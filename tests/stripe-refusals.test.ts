import { afterEach, beforeEach, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';
import { NOW, seedWorld } from './jobs-support.js';
import { FakeStripe } from './support/fake-stripe.js';
import { HOUR, T0, seedScenario } from './support/stripe-scenario.js';
import type { StripeConfig } from '../src/stripe/config.js';
import { stripeRetry, stripeSync, type SyncOptions } from '../src/stripe/sync.js';
import { runDunning } from '../src/stripe/dunning.js';
import { backlog } from '../src/jobs/backlog.js';

// What Stripe refuses must not wait unseen: a draft is never paid, dunning never closes on a
// draft, and refused calls make `stripe sync`, `billing run` and `status --strict` say so.

let fake: FakeStripe;
afterEach(async () => {
  await fake.close();
});

function config(): StripeConfig {
  return { secretKey: 'sk_test_fake', apiBase: fake.url, webhookSecret: null, timeoutMs: 2000, concurrency: 4, maxRequestsPerSecond: 0 };
}

function syncOpts(now: number, extra: Partial<SyncOptions> = {}): SyncOptions {
  return { now, actor: 'test', stripe: config(), random: () => 0.5, sleep: async () => {}, ...extra };
}

const refuse = (message: string) => ({ kind: 'status' as const, status: 400, type: 'invalid_request_error', message });

describeEachDb('stripe refusals', (t) => {
  beforeEach(async () => {
    fake = await FakeStripe.start({ now: T0 });
  });

  it('a payment behind a Stripe draft whose finalize was refused fails with the reason; `stripe retry` re-drives both', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    fake.inject({ method: 'POST', path: /\/finalize$/, times: 1000, fault: refuse('This invoice cannot be finalized') });
    const r = await stripeSync(db, syncOpts(T0, { tenantId: 'tokyo' }));
    const sid = (await db.knex('stripe_invoices').where({ tenant_id: 'tokyo' }).first()).stripe_invoice_id;
    expect(r.errors.map((e) => [e.kind, e.outcome, e.message])).toEqual([
      ['invoice_finalize', 'failed', '400: This invoice cannot be finalized'],
      ['invoice_pay', 'failed', `Stripe invoice ${sid} is still a draft and its finalize call is failed (400: This invoice cannot be finalized): no payment attempt; fix the cause, then run \`billing stripe retry\``],
    ]);
    expect(r.blocked).toBe(0);
    expect(r.outstanding).toEqual({ failed: 2, dead: 0, stalledDrafts: 1 });
    expect(fake.requests.filter((q) => /\/pay$/.test(q.path))).toHaveLength(0);

    fake.clearFaults();
    const again = await stripeRetry(db, syncOpts(T0 + HOUR, { tenantId: 'tokyo' }));
    expect(again.requeued).toBe(2);
    expect(again.sent).toMatchObject({ invoice_finalize: 1, invoice_pay: 1 });
    expect(again.paid).toBe(1);
    expect(again.outstanding).toEqual({ failed: 0, dead: 0, stalledDrafts: 0 });
    expect((await db.knex('invoices').where({ id: 'in_tokyo_2026_02' }).first()).status).toBe('paid');
  });

  it('a payment whose invoice is known as a Stripe draft after its finalize was sent looks first and never pays a draft', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    fake.inject({ method: 'POST', path: /\/pay$/, times: 1000, fault: { kind: 'status', status: 500 } });
    await stripeSync(db, syncOpts(T0, { tenantId: 'tokyo' }));
    fake.clearFaults();
    const mapping = db.knex('stripe_invoices').where({ tenant_id: 'tokyo', invoice_id: 'in_tokyo_2026_02' });
    const sid = (await mapping.clone().first()).stripe_invoice_id;
    // Seen as a draft since (e.g. by dunning), while Stripe still answers so.
    await mapping.clone().update({ stripe_status: 'draft' });
    fake.inject({ method: 'GET', path: `/v1/invoices/${sid}`, times: 1000, fault: { kind: 'canned', body: { id: sid, object: 'invoice', status: 'draft', metadata: {} } } });
    const pays = () => fake.requests.filter((q) => /\/pay$/.test(q.path)).length;
    const before = pays();
    const r = await stripeSync(db, syncOpts(T0 + HOUR, { tenantId: 'tokyo' }));
    expect(r.errors.map((e) => [e.kind, e.outcome, e.message])).toEqual([
      ['invoice_pay', 'failed', `Stripe invoice ${sid} is still a draft although its finalize call was sent: no payment attempt; finalize it at Stripe, then run \`billing stripe retry\``],
    ]);
    expect(pays()).toBe(before);
    expect(r.outstanding).toEqual({ failed: 1, dead: 0, stalledDrafts: 1 });

    // Stripe has it open after all: the retry reads that, pays, and records what Stripe holds.
    fake.clearFaults();
    const again = await stripeRetry(db, syncOpts(T0 + 2 * HOUR, { tenantId: 'tokyo' }));
    expect(again).toMatchObject({ paid: 1, errors: [], outstanding: { failed: 0, dead: 0, stalledDrafts: 0 } });
    expect((await mapping.clone().first()).stripe_status).toBe('paid');
  });

  it('a dunning retry that finds the Stripe invoice a draft keeps dunning open and never pays the draft', async () => {
    const { db } = t();
    await seedScenario(db.knex);
    fake.defaultPaymentOutcome = 'decline';
    expect((await stripeSync(db, syncOpts(T0, { tenantId: 'tokyo' }))).paymentFailures).toBe(1);
    const sid = (await db.knex('stripe_invoices').where({ tenant_id: 'tokyo' }).first()).stripe_invoice_id;
    // Stripe answers that the invoice is a draft.
    fake.inject({ method: 'POST', path: `/v1/invoices/${sid}/pay`, times: 1000, fault: refuse('This invoice is a draft') });
    fake.inject({ method: 'GET', path: `/v1/invoices/${sid}`, times: 1000, fault: { kind: 'canned', body: { id: sid, object: 'invoice', status: 'draft', metadata: {} } } });
    const d = await runDunning(db, { now: T0, actor: 'test', stripe: config() });
    expect(d).toMatchObject({ attempted: 1, closed: 0, recovered: 0, declined: 0 });
    expect(d.errors).toEqual([
      { tenantId: 'tokyo', invoiceId: 'in_tokyo_2026_02', message: `Stripe invoice ${sid} is a draft: it must be finalized before its payment can be retried; dunning stays open` },
    ]);
    const dunning = await db.knex('stripe_dunning').where({ tenant_id: 'tokyo' }).first();
    expect(dunning).toMatchObject({ status: 'active' });
    expect(Number(dunning.retries_done)).toBe(0);
    expect((await db.knex('invoices').where({ id: 'in_tokyo_2026_02' }).first()).status).toBe('open');
    expect((await backlog(db, T0)).stripeOutbox).toMatchObject({ stalledDrafts: 1 });

    // Known to be a draft: the next run looks first and does not ask Stripe to charge it.
    const pays = () => fake.requests.filter((q) => q.path === `/v1/invoices/${sid}/pay`).length;
    const before = pays();
    await runDunning(db, { now: T0 + HOUR, actor: 'test', stripe: config() });
    expect(pays()).toBe(before);

    // Finalized at Stripe (the canned draft is gone): the retry charges it and dunning ends.
    fake.clearFaults();
    fake.defaultPaymentOutcome = 'succeed';
    const ok = await runDunning(db, { now: T0 + 2 * HOUR, actor: 'test', stripe: config() });
    expect(ok).toMatchObject({ recovered: 1, errors: [] });
    expect((await db.knex('invoices').where({ id: 'in_tokyo_2026_02' }).first()).status).toBe('paid');
    expect((await backlog(db, T0)).stripeOutbox).toMatchObject({ stalledDrafts: 0 });
  });

  it('`stripe sync` exits 3 while refused calls remain and `status --strict` is red until they are delivered', async () => {
    const { db, url } = t();
    await seedScenario(db.knex);
    const env = { STRIPE_SECRET_KEY: 'sk_test_fake', STRIPE_API_BASE: fake.url };
    const cwd = tempDir('billing-stripe-');
    const cli = (args: string[], now = T0) => runCli(args, { db: url, now: new Date(now).toISOString(), env, cwd });
    fake.inject({ method: 'POST', path: '/v1/invoiceitems', times: 1000, fault: refuse('Amount too small') });
    const first = await cli(['stripe', 'sync', '--json', '--rate', '1000']);
    expect(first.code).toBe(3);
    expect(JSON.parse(first.stdout).outstanding).toEqual({ failed: 7, dead: 0, stalledDrafts: 0 });
    // Nothing is due on the rerun, yet the refusals are still there.
    const rerun = await cli(['stripe', 'sync', '--rate', '1000'], T0 + HOUR);
    expect(rerun.code).toBe(3);
    expect(rerun.stderr.trim()).toBe('billing: Stripe: 7 call(s) refused (failed); see `billing stripe status`');
    const red = await cli(['status', '--strict', '--json'], T0 + HOUR);
    expect(red.code).toBe(3);
    expect(JSON.parse(red.stdout).backlog.stripeOutbox).toMatchObject({ failed: 7, dead: 0 });

    fake.clearFaults();
    const fixed = await cli(['stripe', 'retry', '--rate', '1000'], T0 + 2 * HOUR);
    expect(fixed.stderr).toBe('');
    expect(fixed.code).toBe(0);
    expect((await cli(['status', '--strict'], T0 + 2 * HOUR)).code).toBe(0);
  });
});

describeEachDb('billing run with Stripe refusing calls', (t) => {
  beforeEach(async () => {
    fake = await FakeStripe.start({ now: NOW });
  });

  it('exits 3 and names the refusals, on every run until they are delivered', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const env = { STRIPE_SECRET_KEY: 'sk_test_fake', STRIPE_API_BASE: fake.url };
    const now = new Date(NOW).toISOString();
    fake.inject({ method: 'POST', path: '/v1/invoiceitems', times: 1000, fault: refuse('Amount too small') });
    for (let run = 0; run < 2; run++) {
      const r = await runCli(['run', '--json'], { db: url, now, env });
      expect(r.code, `run ${run}`).toBe(3);
      const out = JSON.parse(r.stdout);
      expect(out.stages.map((s: any) => s.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded', 'succeeded']);
      const sync = out.stages.find((s: any) => s.job === 'stripe-sync');
      expect(sync.attention).toMatch(/^Stripe: \d+ call\(s\) refused \(failed\); see `billing stripe status`$/);
      expect(r.stderr.trim()).toBe(`billing: stripe-sync: ${sync.attention}`);
    }
    fake.clearFaults();
    expect((await runCli(['stripe', 'retry'], { db: url, now, env })).code).toBe(0);
    const clean = await runCli(['run'], { db: url, now, env });
    expect(clean.stderr).toBe('');
    expect(clean.code).toBe(0);
  });
});
