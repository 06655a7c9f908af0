import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseInstant, type Instant } from '../domain/period.js';
import { BillingError } from '../domain/errors.js';
import type { Db } from '../storage/db.js';
import { applyCatalog } from '../catalog/apply.js';
import { setQuota } from '../subscriptions/quota.js';
import { createTenant } from '../subscriptions/tenants.js';
import { subscribe } from '../subscriptions/lifecycle.js';
import { ingest, type IngestSummary } from '../ingest/ingest.js';
import { fileInput } from '../ingest/source.js';
import { runAggregate } from '../aggregate/aggregate.js';
import { runOverage } from '../rate/overage.js';
import { generateInvoices } from '../invoice/generate.js';
import { listInvoices } from '../invoice/repository.js';
import { invoiceTotalsLines, type Invoice } from '../invoice/types.js';
import { buildReport, type TenantReport } from '../report/report.js';
import { checkEntitlement, type CheckResult } from '../entitlements/check.js';
import { addDiscount } from '../subscriptions/discounts.js';
import { setTenantTax } from '../subscriptions/taxes.js';
import { creditBalance, grantCredit } from '../subscriptions/credits.js';
import { createCreditNote, type CreditNote } from '../invoice/credit-notes.js';
import type { Discount } from '../domain/discount.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { addAlertRule, describeRule, type AlertFiring } from '../alerts/rules.js';
import { evaluateAlerts } from '../alerts/evaluate.js';
import { addEndpoint } from '../webhooks/endpoints.js';
import { deliverWebhooks } from '../webhooks/deliver.js';
import { verifyWebhook } from '../webhooks/signature.js';

const ROOT = new URL('../../../', import.meta.url);
// Works from src/ (tests) and dist/src/ (installed): seeds/ and fixtures/ sit at the package root.
function packagePath(rel: string): string {
  const fromDist = fileURLToPath(new URL(rel, ROOT));
  try {
    readFileSync(fromDist, { flag: 'r' });
    return fromDist;
  } catch {
    return fileURLToPath(new URL(`../../${rel}`, import.meta.url));
  }
}

interface DemoTenant {
  id: string;
  name: string;
  plan: string;
  start: string;
  trialDays?: number;
  quotas?: Array<{ feature: string; included?: string; unitPrice?: string }>;
  /** DESIGN.md §13 terms, set when the tenant subscribes. */
  discounts?: Array<{ id: string; percent: string; duration: 'once' | 'repeating' | 'forever'; periods?: number }>;
  taxes?: Array<{ name: string; rate: string }>;
  credits?: Array<{ id: string; amount: string; name: string }>;
  /** DESIGN.md §15 alert rules on the tenant. */
  alerts?: Array<{ feature: string; usagePercent: string }>;
}

export interface DemoSeeds {
  now: string;
  tenants: DemoTenant[];
  /** Issued after invoicing, on the tenant's latest invoice. */
  creditNote: { tenant: string; amount: string; reason: string };
  /** The outgoing webhook endpoint the demo registers: a receiver it starts itself, taking these event types. */
  webhook: { url: string; events: string };
}

export function loadDemoSeeds(): DemoSeeds {
  return JSON.parse(readFileSync(packagePath('seeds/tenants.json'), 'utf8')) as DemoSeeds;
}

/** The clock the demo runs at unless --now says otherwise: the fixtures' "today". */
export function demoNow(seeds: DemoSeeds): Instant {
  const t = parseInstant(seeds.now);
  if (t === null) throw new BillingError('internal', `seeds/tenants.json: bad "now" ${seeds.now}`);
  return t;
}

export interface DemoChecks {
  tenantId: string;
  featureKey: string;
  quantity: string;
  result: CheckResult;
}

export interface DemoCommercial {
  discounts: Discount[];
  taxes: Array<{ tenantId: string; name: string; rate: string }>;
  grants: Array<{ id: string; tenantId: string; amount: string; currency: string }>;
  creditNote: CreditNote;
  /** Prepaid balances left at the demo's clock. */
  balances: Array<{ tenantId: string; currency: string; balance: string }>;
}

/** What the demo's own webhook receiver got: each event's type, id and whether its signature verified. */
export interface DemoWebhooks {
  fired: AlertFiring[];
  received: Array<{ type: string; verified: boolean; data: unknown }>;
}

export interface DemoResult {
  catalogChanges: number;
  tenants: DemoTenant[];
  ingest: IngestSummary;
  aggregated: { groups: number; events: number };
  rated: number;
  invoices: Invoice[];
  report: TenantReport[];
  checks: DemoChecks[];
  commercial: DemoCommercial;
  webhooks: DemoWebhooks;
}

export type DemoStep = (title: string, detail: string[]) => void;

/**
 * `billing demo`: the whole pipeline on the seeded catalog and fixture usage, in the order an
 * operator would run it. The database must be empty (the CLI gives it a fresh SQLite file).
 */
export async function runDemo(db: Db, opts: { now: Instant; actor: string; onStep?: DemoStep }): Promise<DemoResult> {
  const step = opts.onStep ?? (() => {});
  const seeds = loadDemoSeeds();
  const { now, actor } = opts;

  if ((await db.knex('tenants').count({ n: '*' }).first())?.n != 0) {
    throw new BillingError('usage', `database ${db.display} already has tenants; the demo needs an empty database`);
  }

  const catalog = JSON.parse(readFileSync(packagePath('seeds/catalog.json'), 'utf8'));
  const applied = await applyCatalog(db, catalog, { now, actor });
  step('catalog apply seeds/catalog.json', applied.changes.map((c) => `${c.action} ${c.kind} ${c.key}${c.version ? ` v${c.version}` : ''}`));

  const tenantLines: string[] = [];
  for (const t of seeds.tenants) {
    const start = parseInstant(t.start)!;
    await createTenant(db, { id: t.id, name: t.name }, { now: start, actor });
    await subscribe(db, { tenantId: t.id, planKey: t.plan, start, trialDays: t.trialDays }, { now: start, actor });
    for (const q of t.quotas ?? []) {
      await setQuota(db, { tenantId: t.id, featureKey: q.feature, included: q.included, unitPrice: q.unitPrice }, { now: start, actor });
    }
    const quota = (t.quotas ?? []).map((q) => `, quota ${q.feature}: ${q.included} included at ${q.unitPrice}`).join('');
    tenantLines.push(`${t.id.padEnd(13)} ${t.plan.padEnd(18)} since ${t.start}${quota}`);
  }
  step('tenant create + subscribe', tenantLines);

  // Set when each tenant subscribes, so they apply from its first invoice.
  const discounts: DemoCommercial['discounts'] = [];
  const taxes: DemoCommercial['taxes'] = [];
  const grants: DemoCommercial['grants'] = [];
  for (const t of seeds.tenants) {
    const at = { now: parseInstant(t.start)!, actor };
    for (const d of t.discounts ?? []) {
      const added = await addDiscount(db, { tenantId: t.id, id: d.id, percent: d.percent, duration: d.duration, periods: d.periods }, at);
      discounts.push(added);
      const span = d.duration === 'repeating' ? `its next ${d.periods} invoices` : d.duration === 'once' ? 'its next invoice' : 'every invoice';
      step(
        `discount add ${t.id} --percent ${d.percent} --duration ${d.duration}${d.periods ? ` --periods ${d.periods}` : ''}`,
        [`${added.id}: ${d.percent}% off ${span}`],
      );
    }
    for (const x of t.taxes ?? []) {
      await setTenantTax(db, t.id, { name: x.name, rate: x.rate, inclusive: false }, at);
      taxes.push({ tenantId: t.id, name: x.name, rate: x.rate });
      step(`tax set ${t.id} --name ${x.name} --rate ${x.rate}`, [`${t.id}: ${x.name} ${x.rate}%, added on top of the discounted amount`]);
    }
    for (const c of t.credits ?? []) {
      const g = await grantCredit(db, { tenantId: t.id, id: c.id, amount: c.amount, name: c.name }, at);
      grants.push({ id: g.id, tenantId: t.id, amount: g.amount, currency: g.currency });
      step(`credit grant ${t.id} ${c.amount} --name "${c.name}"`, [`${g.id}: ${g.amount} ${g.currency} of prepaid credit, taken off its invoices after tax`]);
    }
  }

  // Alerts and outgoing webhooks (DESIGN.md §15): a local receiver the demo starts and stops itself.
  const receiver = await startReceiver();
  try {
    const endpoint = await addEndpoint(db, { url: receiver.url, secret: DEMO_WEBHOOK_SECRET, events: seeds.webhook.events }, { now, actor });
    step(`webhook add http://127.0.0.1:PORT/billing-events --secret *** --events ${seeds.webhook.events}`, [`${endpoint.id}: a receiver the demo runs itself`]);
    for (const t of seeds.tenants) {
      for (const a of t.alerts ?? []) {
        const rule = await addAlertRule(db, { tenantId: t.id, featureKey: a.feature, kind: 'usage_percent', threshold: a.usagePercent }, { now, actor, id: `al_demo_${t.id.replace(/^tnt_/, '')}` });
        step(`alert add ${t.id} ${a.feature} --usage-percent ${a.usagePercent}`, [`${rule.id}: ${describeRule(rule)}`]);
      }
    }
    return await pipeline(db, seeds, opts, { discounts, taxes, grants }, receiver, applied.changes.length);
  } finally {
    await receiver.close();
  }
}

const DEMO_WEBHOOK_SECRET = 'whsec_demo_receiver_key';

interface Receiver {
  url: string;
  received: Array<{ body: string; signature: string | undefined }>;
  close(): Promise<void>;
}

/** A webhook receiver on a free local port, keeping what it is sent. */
async function startReceiver(): Promise<Receiver> {
  const received: Receiver['received'] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      received.push({ body: Buffer.concat(chunks).toString('utf8'), signature: req.headers['billing-signature'] as string | undefined });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/billing-events`, received, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

async function pipeline(
  db: Db,
  seeds: DemoSeeds,
  opts: { now: Instant; actor: string; onStep?: DemoStep },
  terms: Pick<DemoCommercial, 'discounts' | 'taxes' | 'grants'>,
  receiver: Receiver,
  catalogChanges: number,
): Promise<DemoResult> {
  const step = opts.onStep ?? (() => {});
  const { now, actor } = opts;
  const { discounts, taxes, grants } = terms;
  const started = Date.now();
  const inputs = ['fixtures/demo/usage.csv', 'fixtures/demo/photo-service.ndjson', 'fixtures/demo/ai-gateway.ndjson'].map((f) => {
    const input = fileInput(packagePath(f));
    return { ...input, label: f };
  });
  const summary = await ingest(db, inputs, { now, elapsedMs: () => Date.now() - started });
  step('ingest fixtures/demo/usage.csv fixtures/demo/photo-service.ndjson fixtures/demo/ai-gateway.ndjson', [
    `read ${summary.read}, inserted ${summary.inserted}, duplicates ${summary.duplicates}, rejected ${summary.rejected}`,
    ...summary.messages.map((m) => `rejected: ${m}`),
  ]);

  const agg = await runAggregate(db, { now });
  const fired = await evaluateAlerts(db, { now });
  step('aggregate', [`${agg.groups} usage summaries from ${agg.events} events`, ...fired.map((f) => `alert ${f.ruleId} fired for ${f.tenantId}: ${f.description} (now ${f.value}%)`)]);

  const rated = await runOverage(db, { now });
  step('overage', [`${rated.rated} charges rated`]);

  const generated = await generateInvoices(db, { now, actor, finalize: true });
  const issued = await listInvoices(db, {});
  step(
    'invoice generate --finalize',
    issued.map(
      (i) =>
        `${i.number}  ${i.tenantId.padEnd(13)} ${new Date(i.period.start).toISOString().slice(0, 10)} → ${new Date(i.period.end).toISOString().slice(0, 10)}  ${i.currency} total ${i.total.padStart(7)}  due ${i.amountDue.padStart(7)}  (${i.lines.length} lines${i.billingReason === 'threshold' ? ', threshold invoice: usage so far' : ''})`,
    ).concat(generated.created.length === issued.length ? [] : [`(${generated.created.length} created this run)`]),
  );

  const cn = seeds.creditNote;
  const target = issued.filter((i) => i.tenantId === cn.tenant).at(-1);
  if (!target) throw new BillingError('internal', `seeds/tenants.json: creditNote: ${cn.tenant} has no invoice`);
  const note = await createCreditNote(db, { invoice: target.number, amount: cn.amount, reason: cn.reason }, { now, actor });
  step(`credit-note create ${target.number} --amount ${cn.amount} --reason "${cn.reason}"`, [
    `${note.number}  ${note.invoiceNumber}  ${note.amount} ${note.currency}  amount due −${note.dueReduction} (of which tax ${note.taxAmount})`,
  ]);
  const invoices = await listInvoices(db, {});
  // One invoice per kind of §13 row: the discounted, taxed and credited one, and one paid with prepaid credit.
  const shown = [target.number, ...grants.map((g) => invoices.filter((i) => i.tenantId === g.tenantId).at(-1)?.number)];
  for (const inv of invoices.filter((i) => shown.includes(i.number))) {
    step(`invoice show ${inv.number}`, [`${inv.number}  ${inv.status}  ${inv.total} ${inv.currency}  (${inv.tenantId}; its ${inv.lines.length} lines left out here)`, ...invoiceTotalsLines(inv)]);
  }
  const balances: DemoCommercial['balances'] = [];
  for (const tenantId of new Set(grants.map((g) => g.tenantId))) {
    const left = await creditBalance(db, tenantId, now);
    balances.push(...left.map((b) => ({ tenantId, currency: b.currency, balance: b.balance })));
    step(`credit balance ${tenantId}`, left.map((b) => `${tenantId}: ${b.balance} ${b.currency} left`));
  }

  const delivered = await deliverWebhooks(db, { now });
  // Deliveries run concurrently: shown in type order so every run prints the same.
  const received = receiver.received
    .map((r) => {
      const body = JSON.parse(r.body) as { type: string; data: unknown };
      return { type: body.type, verified: verifyWebhook(r.body, r.signature, DEMO_WEBHOOK_SECRET, { now }), data: body.data };
    })
    .sort((a, b) => a.type.localeCompare(b.type));
  step(
    'webhook deliver',
    [`${delivered.delivered} delivered, ${delivered.retryLater} to retry`, ...received.map((r) => `receiver got ${r.type}, signature ${r.verified ? 'verified' : 'INVALID'}`)],
  );

  const report = await buildReport(db, { now, period: 'current' });

  const checks: DemoChecks[] = [];
  for (const [tenantId, featureKey, quantity] of [
    ['tnt_acme', 'OCR_SCAN', '1'],
    ['tnt_acme', 'API_CALL', '20000'],
    ['tnt_acme', 'PREMIUM_VOICE', '1'],
    ['tnt_globex', 'PREMIUM_VOICE', '1'],
    ['tnt_wayne', 'API_CALL', '100'],
  ] as const) {
    checks.push({ tenantId, featureKey, quantity, result: await checkEntitlement(db, { tenantId, featureKey, quantity }, { now }) });
  }

  return {
    catalogChanges,
    tenants: seeds.tenants,
    ingest: summary,
    aggregated: { groups: agg.groups, events: agg.events },
    rated: rated.rated,
    invoices,
    report,
    checks,
    commercial: { discounts, taxes, grants, creditNote: note, balances },
    webhooks: { fired, received },
  };
}
