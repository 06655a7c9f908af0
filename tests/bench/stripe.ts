import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { benchPgSchema } from './seed.js';
import { openDb, type Db } from '../../src/storage/db.js';
import { stripeSync } from '../../src/stripe/sync.js';
import { createLimiter } from '../../src/stripe/pool.js';
import { FakeStripe } from '../support/fake-stripe.js';
import { T0, seedMeteredUsage, seedOpenInvoice, seedTenant, type SeedInvoice } from '../support/stripe-scenario.js';

/**
 * `billing stripe sync` through the outbox against the fake Stripe (real SDK over loopback
 * HTTP), versus a baseline of the same calls made straight with the SDK at the same
 * concurrency and no database: the ratio is what the outbox bookkeeping costs per call.
 * `npm run bench -- stripe [--tenants N] [--events M]`; BILLING_BENCH_PG_URL adds PostgreSQL.
 */

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

function invoiceFor(i: number): SeedInvoice {
  const tenantId = `t${String(i).padStart(5, '0')}`;
  const lines = [1, 2, 3, 4].map((n) => ({ lineNo: n, kind: 'overage', description: `line ${n}`, amount: `${n}.25`, amountMinor: String(n * 100 + 25) }));
  return { tenantId, id: `in_${tenantId}`, number: `INV-${String(i + 1).padStart(6, '0')}`, subscriptionId: `sub_${tenantId}`, currency: 'USD', total: '11.00', totalMinor: '1100', lines };
}

async function baseline(fake: FakeStripe, tenants: SeedInvoice[], events: number): Promise<{ ms: number; calls: number }> {
  const u = new URL(fake.url);
  const sdk = new Stripe('sk_test_bench', { host: u.hostname, port: Number(u.port), protocol: 'http', maxNetworkRetries: 0 });
  const limit = createLimiter({ concurrency: 4, perSecond: 0 });
  const run = randomBytes(4).toString('hex');
  const t = performance.now();
  const customers = await Promise.all(tenants.map((inv) => limit(() => sdk.customers.create({ metadata: { tenant_id: inv.tenantId } }, { idempotencyKey: `${run}/c/${inv.tenantId}` }))));
  await Promise.all(tenants.map(async (inv, i) => {
    const si = await limit(() => sdk.invoices.create({ customer: customers[i].id, currency: 'usd', auto_advance: false }, { idempotencyKey: `${run}/i/${inv.id}` }));
    await Promise.all(inv.lines.map((l) => limit(() => sdk.invoiceItems.create({ customer: customers[i].id, invoice: si.id, amount: Number(l.amountMinor), currency: 'usd' }, { idempotencyKey: `${run}/l/${inv.id}/${l.lineNo}` }))));
    await limit(() => sdk.invoices.finalizeInvoice(si.id, { auto_advance: false }, { idempotencyKey: `${run}/f/${inv.id}` }));
    await limit(() => sdk.invoices.pay(si.id, {}, { idempotencyKey: `${run}/p/${inv.id}` }));
  }));
  await Promise.all(Array.from({ length: events }, (_, e) => limit(() => sdk.billing.meterEvents.create(
    { event_name: 'api_calls', identifier: `${run}-${e}`, timestamp: Math.floor((T0 - 60_000) / 1000), payload: { stripe_customer_id: customers[e % customers.length].id, value: '1' } },
    { idempotencyKey: `${run}/m/${e}` },
  ))));
  return { ms: performance.now() - t, calls: tenants.length * 8 + events };
}

async function seed(db: Db, tenants: SeedInvoice[], events: number): Promise<void> {
  for (const inv of tenants) {
    await seedTenant(db.knex, inv.tenantId, 'USD', inv.subscriptionId);
    await seedOpenInvoice(db.knex, inv);
  }
  await seedMeteredUsage(db.knex, Array.from({ length: events }, (_, e) => ({ tenantId: tenants[e % tenants.length].tenantId, eventId: `ev${e}`, quantity: '1', occurredAt: T0 - 60_000 })));
}

async function measure(label: string, url: string, cleanup: () => Promise<void>, tenants: SeedInvoice[], events: number): Promise<void> {
  const fake = await FakeStripe.start({ now: T0, sharedDir: null });
  try {
    const base = await baseline(fake, tenants, events);
    const db = await openDb(url);
    try {
      await seed(db, tenants, events);
      const config = { secretKey: 'sk_test_bench', apiBase: fake.url, webhookSecret: null, timeoutMs: 30_000, concurrency: 4, maxRequestsPerSecond: 0 };
      const t = performance.now();
      const r = await stripeSync(db, { now: T0, actor: 'bench', stripe: config });
      const ms = performance.now() - t;
      const sent = Object.values(r.sent).reduce((a, b) => a + (b ?? 0), 0);
      if (r.errors.length) throw new Error(`bench sync reported errors: ${r.errors[0].message}`);
      console.log(`${label}: baseline SDK ${base.calls} calls in ${base.ms.toFixed(0)} ms (${(base.calls / base.ms * 1000).toFixed(0)}/s); ` +
        `sync ${sent} calls in ${ms.toFixed(0)} ms (${(sent / ms * 1000).toFixed(0)}/s); sync/baseline time ×${(ms / base.ms * (base.calls / sent)).toFixed(2)} per call`);
    } finally {
      await db.close();
    }
  } finally {
    await fake.close();
    await cleanup();
  }
}

export async function run(args: string[]): Promise<void> {
  const tenants = Array.from({ length: arg(args, '--tenants', 200) }, (_, i) => invoiceFor(i));
  const events = arg(args, '--events', 2000);
  console.log(`${tenants.length} tenants × 1 invoice of 4 lines, ${events} meter events, concurrency 4, no rate cap`);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-stripe-'));
  await measure('sqlite', `sqlite:${path.join(dir, 'bench.db')}`, async () => rmSync(dir, { recursive: true, force: true }), tenants, events);
  const pg = await benchPgSchema('bench_stripe');
  if (pg) await measure('pg', pg.url, pg.drop, tenants, events);
}
