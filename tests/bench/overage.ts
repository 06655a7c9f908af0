import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyCatalog } from '../../src/catalog/apply.js';
import { chunk, seedSubscribedTenants } from './seed.js';
import { addMonthsClamped } from '../../src/domain/period.js';
import { openDb, type Db } from '../../src/storage/db.js';
import { asText } from '../../src/storage/sql.js';
import { runOverage } from '../../src/rate/overage.js';

/**
 * The overage stage over tenants × months × features summaries, against a baseline of just
 * reading those summaries: a full rating, then an hourly rerun where only the open month moves.
 * `npm run bench -- overage [--tenants N] [--months M]`; BILLING_BENCH_PG_URL adds PostgreSQL.
 */
const START = Date.UTC(2025, 0, 1);
const FEATURES = ['OCR_SCAN', 'STORAGE_GB', 'API_CALL'];
const CATALOG = {
  features: FEATURES.map((key) => ({ key, name: key, unit: 'unit' })),
  plans: [
    {
      key: 'bench', name: 'Bench', currency: 'USD', price: '10.00', interval: 'month',
      features: {
        OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
        STORAGE_GB: { included: 5, overage: { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '0.02' }, { upTo: null, unitPrice: '0.01', flatPrice: '1.00' }] } },
        API_CALL: { included: 1000, overage: { model: 'package', size: 1000, packagePrice: '1.50', minimum: '2.00' } },
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
  const rows = [];
  for (const [n, id] of ids.entries()) {
    for (let m = 0; m < months; m++) {
      for (const [f, feature] of FEATURES.entries()) {
        rows.push({
          tenant_id: id, feature_key: feature, period_start: addMonthsClamped(START, m), period_end: addMonthsClamped(START, m + 1),
          subscription_id: `sub_${id}`, quantity: String(((n * 7 + m * 13 + f * 31) % 5000) * 1_000_000 + 250_000), event_count: 1, computed_at: START,
        });
      }
    }
  }
  for (const part of chunk(rows, 500)) await db.knex('usage_summaries').insert(part);
  return rows.length;
}

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t0 = performance.now();
  const r = await fn();
  return [r, performance.now() - t0];
}

async function benchOne(label: string, db: Db, tenants: number, months: number): Promise<void> {
  const summaries = await seed(db, tenants, months);
  const now = addMonthsClamped(START, months - 1) + 3_600_000; // an hour into the last month
  const [, readMs] = await time(() =>
    db.knex('usage_summaries').select('tenant_id', 'feature_key', 'period_start', asText(db, 'quantity').wrap('(', ') AS q')),
  );
  const [full, fullMs] = await time(() => runOverage(db, { now }));
  const [again, againMs] = await time(() => runOverage(db, { now: now + 3_600_000 }));
  const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;
  console.log(`${label}: ${tenants} tenants × ${months} months × ${FEATURES.length} features = ${summaries} summaries`);
  console.log(`  baseline: read all summaries              ${fmt(readMs)}`);
  console.log(`  full rating: ${full.rated} charges             ${fmt(fullMs)}  (${(fullMs / readMs).toFixed(1)}× baseline, ${Math.round(full.rated / (fullMs / 1000))} charges/s)`);
  console.log(`  hourly rerun: ${again.rated} charges re-rated   ${fmt(againMs)}  (${(againMs / fullMs * 100).toFixed(1)}% of the full rating)`);
}

export async function run(args: string[]): Promise<void> {
  const tenants = arg(args, '--tenants', 2000);
  const months = arg(args, '--months', 12);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-overage-'));
  const sqlite = await openDb(`sqlite:${path.join(dir, 'bench.db')}`);
  try {
    await benchOne('sqlite', sqlite, tenants, months);
  } finally {
    await sqlite.close();
    rmSync(dir, { recursive: true, force: true });
  }
  const pgUrl = process.env.BILLING_BENCH_PG_URL;
  if (!pgUrl) return;
  const schema = `bench_overage_${Date.now()}`;
  const pg = await openDb(`${pgUrl}${pgUrl.includes('?') ? '&' : '?'}schema=${schema}`, 'none');
  try {
    await pg.knex.migrate.latest();
    await benchOne('postgresql', pg, tenants, months);
  } finally {
    await pg.knex.raw('drop schema if exists ?? cascade', [schema]);
    await pg.close();
  }
}
