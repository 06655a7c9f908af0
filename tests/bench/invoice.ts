import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyCatalog } from '../../src/catalog/apply.js';
import { chunk, seedSubscribedTenants } from './seed.js';
import { addMonthsClamped } from '../../src/domain/period.js';
import { runAggregate } from '../../src/aggregate/aggregate.js';
import { generateInvoices } from '../../src/invoice/generate.js';
import { verifyInvoices } from '../../src/invoice/verify.js';
import { openDb, type Db } from '../../src/storage/db.js';
import { withTx } from '../../src/storage/sql.js';

/**
 * Invoice generation over tenants × closed months, against a baseline measured in the same
 * run: one bare write transaction per invoice (bump a counter, append one row), the floor for
 * "one invoice per transaction". Also the aggregate stage over the same events, the idempotent
 * rerun and `verify`.
 * `npm run bench -- invoice [--tenants N] [--months M]`; BILLING_BENCH_PG_URL adds PostgreSQL.
 */
const START = Date.UTC(2025, 0, 1);
const CATALOG = {
  features: [
    { key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan' },
    { key: 'API_CALL', name: 'API calls', unit: 'call' },
  ],
  plans: [
    {
      key: 'bench', name: 'Bench', currency: 'USD', price: '10.00', interval: 'month',
      features: {
        OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
        API_CALL: { included: 1000, overage: { model: 'graduated', tiers: [{ upTo: 5000, unitPrice: '0.001' }, { upTo: null, unitPrice: '0.0005' }] } },
      },
    },
  ],
};

function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

async function seed(db: Db, tenants: number, months: number): Promise<number> {
  await applyCatalog(db, CATALOG, { now: START - 1, actor: 'bench' });
  const ids = await seedSubscribedTenants(db, tenants, START, 'bench');
  const events = [];
  for (const [n, id] of ids.entries()) {
    for (let m = 0; m < months; m++) {
      for (const [f, feature] of ['OCR_SCAN', 'API_CALL'].entries()) {
        const at = addMonthsClamped(START, m) + 86_400_000 * (1 + ((n + f) % 27));
        events.push({
          tenant_id: id, idempotency_key: `${feature}-${m}`, feature_key: feature,
          quantity: String(((n * 7 + m * 13 + f * 31) % 3000) * 1_000_000 + 500_000), occurred_at: at, ingested_at: at,
        });
      }
    }
  }
  for (const part of chunk(events, 500)) await db.knex('usage_events').insert(part);
  return events.length;
}

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

/** The floor: as many write transactions as invoices, each bumping a counter and appending a row. */
async function bareTransactions(db: Db, n: number): Promise<void> {
  await db.knex('invoice_counters').insert({ issuer: 'bench-baseline', last_number: 0 });
  for (let i = 0; i < n; i++) {
    await withTx(db, async (trx) => {
      await trx('invoice_counters').where('issuer', 'bench-baseline').increment('last_number', 1);
      await trx('job_state').insert({ key: `bench-baseline-${i}`, value: String(i), updated_at: 0 });
    });
  }
  await db.knex('job_state').where('key', 'like', 'bench-baseline-%').del();
  await db.knex('invoice_counters').where('issuer', 'bench-baseline').del();
}

async function benchOne(label: string, db: Db, tenants: number, months: number): Promise<void> {
  const events = await seed(db, tenants, months);
  const now = addMonthsClamped(START, months) + 15 * 60_000; // 00:15 after the last month closed
  const [, baseMs] = await time(() => bareTransactions(db, tenants * months));
  const [, aggMs] = await time(() => runAggregate(db, { now }));
  const [gen, genMs] = await time(() => generateInvoices(db, { now, actor: 'bench' }));
  const [again, againMs] = await time(() => generateInvoices(db, { now: now + 3_600_000, actor: 'bench' }));
  const [ver, verMs] = await time(() => verifyInvoices(db));
  const row = (what: string, ms: number, extra = '') =>
    console.log(`  ${what.padEnd(44)} ${(ms / 1000).toFixed(2).padStart(7)} s  ${extra}`.trimEnd());
  const ratio = (ms: number) => `${(ms / baseMs).toFixed(2)}× baseline`;
  console.log(`${label}: ${tenants} tenants × ${months} months, ${events} events`);
  row(`baseline: ${tenants * months} bare write transactions`, baseMs);
  row('aggregate stage (not in the ratios)', aggMs);
  row(`generate: ${gen.created.length} invoices`, genMs, `${ratio(genMs)}, ${(gen.created.length / (genMs / 1000)).toFixed(0)} invoices/s`);
  row(`rerun: ${again.created.length} created`, againMs, ratio(againMs));
  row(`verify: ${ver.invoices} invoices, ${ver.lines} lines`, verMs, `${ratio(verMs)}, ok=${ver.ok}`);
}

export async function run(args: string[]): Promise<void> {
  const tenants = arg(args, '--tenants', 500);
  const months = arg(args, '--months', 3);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-invoice-'));
  try {
    const db = await openDb(`sqlite:${path.join(dir, 'bench.db')}`);
    try {
      await benchOne('sqlite', db, tenants, months);
    } finally {
      await db.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const pgUrl = process.env.BILLING_BENCH_PG_URL;
  if (!pgUrl) return;
  const schema = `bench_invoice_${process.pid}`;
  const db = await openDb(`${pgUrl}${pgUrl.includes('?') ? '&' : '?'}schema=${schema}`, 'none');
  try {
    await db.knex.migrate.latest();
    await benchOne('postgres', db, tenants, months);
  } finally {
    await db.knex.raw('drop schema if exists ?? cascade', [schema]);
    await db.close();
  }
}
