import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import type { Knex } from 'knex';
import { FakeStripe } from './fake-stripe.js';

/**
 * Builders for Stripe sync scenarios: tenants with subscriptions and open invoices written
 * straight into the invoices tables (their migration is the contract), metered usage, and a
 * way to run the real CLI while keeping its pid (to SIGKILL it mid-sync).
 */

export const T0 = Date.UTC(2026, 2, 1, 0, 30); // the sync runs half an hour into 1 March
export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;


export interface SeedLine {
  lineNo: number;
  kind: string;
  description: string;
  amount: string; // major units, as the invoice stores it
  amountMinor: string;
}

export interface SeedInvoice {
  tenantId: string;
  id: string;
  number: string;
  subscriptionId: string;
  currency: string;
  total: string;
  totalMinor: string;
  lines: SeedLine[];
}

const PERIOD = { start: Date.UTC(2026, 1, 1), end: Date.UTC(2026, 2, 1) };

/** USD (2 digits, with a credit), JPY (0 digits), KWD (3 digits): one open invoice each. */
export const SCENARIO: SeedInvoice[] = [
  {
    tenantId: 'acme',
    id: 'in_acme_2026_02',
    number: 'INV-000001',
    subscriptionId: 'sub_acme',
    currency: 'USD',
    total: '29.75',
    totalMinor: '2975',
    lines: [
      { lineNo: 1, kind: 'base_fee', description: 'Starter plan, February 2026', amount: '29.00', amountMinor: '2900' },
      { lineNo: 2, kind: 'overage', description: 'OCR scans beyond 50 included (25 × 0.05)', amount: '1.25', amountMinor: '125' },
      { lineNo: 3, kind: 'credit', description: 'Late usage revised down', amount: '-0.50', amountMinor: '-50' },
    ],
  },
  {
    tenantId: 'tokyo',
    id: 'in_tokyo_2026_02',
    number: 'INV-000002',
    subscriptionId: 'sub_tokyo',
    currency: 'JPY',
    total: '1537',
    totalMinor: '1537',
    lines: [
      { lineNo: 1, kind: 'base_fee', description: 'Starter JP, February 2026', amount: '1500', amountMinor: '1500' },
      { lineNo: 2, kind: 'overage', description: 'API calls beyond included', amount: '37', amountMinor: '37' },
    ],
  },
  {
    tenantId: 'kuwait',
    id: 'in_kuwait_2026_02',
    number: 'INV-000003',
    subscriptionId: 'sub_kuwait',
    currency: 'KWD',
    total: '12.350',
    totalMinor: '12350',
    lines: [
      { lineNo: 1, kind: 'base_fee', description: 'Starter KW, February 2026', amount: '12.345', amountMinor: '12345' },
      { lineNo: 2, kind: 'overage', description: 'Storage beyond included', amount: '0.005', amountMinor: '5' },
    ],
  },
];

export async function seedTenant(q: Knex, tenantId: string, currency: string, subscriptionId: string): Promise<void> {
  await q('tenants').insert({ id: tenantId, name: `${tenantId} Ltd`, currency, stripe_customer_id: null, created_at: PERIOD.start });
  await q('subscriptions').insert({
    tenant_id: tenantId,
    id: subscriptionId,
    status: 'active',
    anchor_at: PERIOD.start,
    interval: 'month',
    currency,
    started_at: PERIOD.start,
    trial_ends_at: null,
    cancel_at: null,
    canceled_at: null,
    created_at: PERIOD.start,
    updated_at: PERIOD.start,
  });
}

export async function seedOpenInvoice(q: Knex, inv: SeedInvoice, issuedAt = PERIOD.end): Promise<void> {
  const zero = inv.total.replace(/^-?\d+/, '0').replace(/(?<=\.)\d+/, (d) => '0'.repeat(d.length));
  await q('invoices').insert({
    tenant_id: inv.tenantId,
    id: inv.id,
    number: inv.number,
    subscription_id: inv.subscriptionId,
    period_start: PERIOD.start,
    period_end: PERIOD.end,
    status: 'open',
    currency: inv.currency,
    subtotal: inv.total,
    discount_total: zero,
    tax_total: zero,
    total: inv.total,
    total_minor: inv.totalMinor,
    credits_applied: zero,
    amount_due: inv.total,
    issued_at: issuedAt,
    due_at: issuedAt + 7 * DAY,
    finalized_at: issuedAt,
    created_at: issuedAt,
    updated_at: issuedAt,
  });
  await q('invoice_lines').insert(
    inv.lines.map((l) => ({
      tenant_id: inv.tenantId,
      invoice_id: inv.id,
      line_no: l.lineNo,
      kind: l.kind,
      feature_key: null,
      description: l.description,
      quantity: '1',
      unit_price: l.amount,
      amount_precise: l.amount,
      amount: l.amount,
      amount_minor: l.amountMinor,
      period_start: PERIOD.start,
      period_end: PERIOD.end,
    })),
  );
}

/** The three tenants of SCENARIO, each with its open invoice. */
export async function seedScenario(q: Knex): Promise<void> {
  for (const inv of SCENARIO) {
    await seedTenant(q, inv.tenantId, inv.currency, inv.subscriptionId);
    await seedOpenInvoice(q, inv);
  }
}

/** A metered feature and usage events (quantities in whole units, instants in ms). */
export async function seedMeteredUsage(
  q: Knex,
  events: Array<{ tenantId: string; eventId: string; quantity: string; occurredAt: number }>,
  feature = { key: 'API_CALL', meter: 'api_calls' },
): Promise<void> {
  if (!(await q('features').where({ key: feature.key }).first())) {
    await q('features').insert({ key: feature.key, name: 'API calls', unit: 'call', type: 'metered', aggregation: 'sum', unique_by: null, stripe_meter: feature.meter, created_at: PERIOD.start, updated_at: PERIOD.start });
  }
  for (const e of events) {
    const [whole, frac = ''] = e.quantity.split('.');
    const micro = (BigInt(whole) * 1_000_000n + BigInt((frac + '000000').slice(0, 6))).toString();
    await q('usage_events').insert({
      tenant_id: e.tenantId,
      idempotency_key: e.eventId,
      feature_key: feature.key,
      quantity: micro,
      occurred_at: e.occurredAt,
      ingested_at: e.occurredAt,
      event_id: e.eventId,
    });
  }
}

/** What Stripe holds for one local invoice, for comparing with the seed. */
export function stripeCopy(fake: FakeStripe, inv: SeedInvoice) {
  const invoices = fake.invoices().filter((i) => i.metadata?.billing_invoice_id === inv.id);
  const items = fake.invoiceItems().filter((ii) => ii.metadata?.billing_invoice_id === inv.id);
  return {
    invoices: invoices.map((i) => ({ status: i.status as string, currency: i.currency as string, total: i.total as number, customer: i.customer as string })),
    items: items
      .map((ii) => ({ line: ii.metadata.billing_line_no as string, amount: ii.amount as number, currency: ii.currency as string, invoice: ii.invoice as string }))
      .sort((a, b) => Number(a.line) - Number(b.line)),
  };
}

/** The copy Stripe should hold for a seeded invoice. */
export function expectedCopy(inv: SeedInvoice) {
  return {
    currency: inv.currency.toLowerCase(),
    total: Number(inv.totalMinor),
    items: inv.lines.map((l) => ({ line: String(l.lineNo), amount: Number(l.amountMinor), currency: inv.currency.toLowerCase() })),
  };
}

/**
 * Everything wrong with Stripe's copy of the scenario: a tenant without exactly one customer
 * (or not mapped to it), an invoice not there exactly once, items missing, doubled or with
 * the wrong amount or currency, a status other than expected. Empty means mirrored.
 */
export async function mirrorProblems(fake: FakeStripe, q: Knex, opts: { status: 'open' | 'paid'; invoices?: SeedInvoice[] }): Promise<string[]> {
  const problems: string[] = [];
  const tenants = await q('tenants').orderBy('id');
  const customers = fake.customers();
  if (customers.length !== tenants.length) problems.push(`${customers.length} customers for ${tenants.length} tenants`);
  for (const t of tenants) {
    const mine = customers.filter((c) => c.metadata?.tenant_id === t.id);
    if (mine.length !== 1) problems.push(`tenant ${t.id} has ${mine.length} customers`);
    else if (t.stripe_customer_id !== mine[0].id) problems.push(`tenant ${t.id} maps to ${t.stripe_customer_id}, Stripe has ${mine[0].id}`);
  }
  const invoices = opts.invoices ?? SCENARIO;
  for (const inv of invoices) {
    const copy = stripeCopy(fake, inv);
    const want = expectedCopy(inv);
    if (copy.invoices.length !== 1) {
      problems.push(`${inv.number} is at Stripe ${copy.invoices.length} times`);
      continue;
    }
    const si = copy.invoices[0];
    if (si.currency !== want.currency || si.total !== want.total) problems.push(`${inv.number}: Stripe total ${si.total} ${si.currency}, want ${want.total} ${want.currency}`);
    if (si.status !== opts.status) problems.push(`${inv.number}: Stripe status ${si.status}, want ${opts.status}`);
    const got = JSON.stringify(copy.items.map(({ line, amount, currency }) => ({ line, amount, currency })));
    if (got !== JSON.stringify(want.items)) problems.push(`${inv.number}: items ${got}, want ${JSON.stringify(want.items)}`);
    const local = await q('invoices').where({ tenant_id: inv.tenantId, id: inv.id }).first();
    if (local?.status !== opts.status) problems.push(`${inv.number}: local status ${local?.status}, want ${opts.status}`);
  }
  const lines = invoices.reduce((n, i) => n + i.lines.length, 0);
  if (fake.invoiceItems().length !== lines) problems.push(`${fake.invoiceItems().length} invoice items at Stripe for ${lines} lines`);
  return problems;
}

const BIN = fileURLToPath(new URL('../../bin/billing', import.meta.url));
export const REPO_ROOT = path.dirname(path.dirname(BIN));

export interface Spawned {
  child: ChildProcess;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

/** Run bin/billing against a database and the fake (keeps the child so a test can kill it). */
export function spawnBilling(args: string[], opts: { db: string; now: number; fake: FakeStripe; env?: NodeJS.ProcessEnv; input?: string }): Spawned {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NO_COLOR: '1',
    STRIPE_SECRET_KEY: 'sk_test_fake',
    STRIPE_API_BASE: opts.fake.url,
    STRIPE_WEBHOOK_SECRET: 'whsec_test_secret',
    ...opts.env,
  };
  delete env.BILLING_DATABASE_URL;
  delete env.DATABASE_URL;
  delete env.BILLING_NOW;
  const child = spawn(process.execPath, [BIN, ...args, '--db', opts.db, '--now', new Date(opts.now).toISOString()], { env, stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  if (opts.input !== undefined) child.stdin!.end(opts.input);
  else child.stdin!.end();
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
  return { child, done };
}
