/**
 * `npm run bench -- check`: whole-process latency of `billing check TENANT FEATURE` (spawn,
 * load, open the database, answer, exit) against `node -e 0` in the same run, alternating the
 * two so that machine load hits both alike. The tenant has 10,000 events in its current
 * period. Options: --runs N (default 30), --sqlite-only, --volume N (default 300,000).
 *
 * Then, in-process, `checkEntitlement()` on a tenant with N events this period: read from every
 * event (before any aggregate run, as every check did until the summaries were used) against
 * the period's summary plus 1,000 events not aggregated yet, and against a tenant with 100.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';

const BIN = fileURLToPath(new URL('../../../bin/billing', import.meta.url));
const NOW = '2026-03-20T12:00:00Z';

type Db = import('../../src/storage/db.js').Db;

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? Number(args[i + 1]) : fallback;
}

async function seed(db: Db): Promise<void> {
  const { applyCatalog } = await import('../../src/catalog/apply.js');
  const { createTenant } = await import('../../src/subscriptions/tenants.js');
  const { subscribe } = await import('../../src/subscriptions/lifecycle.js');
  const opts = { now: Date.parse('2026-01-01T00:00:00Z'), actor: 'bench' };
  await applyCatalog(db, {
    features: [{ key: 'OCR_SCAN', name: 'OCR scans', aggregation: 'sum' }],
    plans: [{ key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month',
      features: { OCR_SCAN: { included: 100000, hardStop: true } } }],
  }, opts);
  await createTenant(db, { id: 'acme' }, opts);
  await subscribe(db, { tenantId: 'acme', planKey: 'starter', start: opts.now, trialDays: 0 }, opts);
  const start = Date.parse('2026-03-01T00:00:00Z');
  const rows = Array.from({ length: 10_000 }, (_, i) => ({
    tenant_id: 'acme', idempotency_key: `k${i}`, feature_key: 'OCR_SCAN', quantity: '1000000',
    occurred_at: start + i * 60_000, ingested_at: start + i * 60_000,
  }));
  for (let i = 0; i < rows.length; i += 500) await db.knex('usage_events').insert(rows.slice(i, i + 500));
}

function time(cmd: string[]): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, cmd, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } });
  const ms = performance.now() - t0;
  if (r.status !== 0 && r.status !== 3) throw new Error(`${cmd.join(' ')} failed: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function measure(label: string, url: string, runs: number): void {
  const check = [BIN, 'check', 'acme', 'OCR_SCAN', '--db', url, '--now', NOW];
  time(check); // warm the file cache
  const bare: number[] = [];
  const billing: number[] = [];
  for (let i = 0; i < runs; i++) {
    bare.push(time(['-e', '0']));
    billing.push(time(check));
  }
  const b = median(bare);
  const c = median(billing);
  console.log(`${label}: node -e 0 ${b.toFixed(0)} ms, billing check ${c.toFixed(0)} ms (median of ${runs}) = ${(c / b).toFixed(2)}× (target ≤ 3×)`);
}

/** N events for a new tenant in the current period, generated inside the database. */
async function seedVolume(db: Db, tenantId: string, n: number, first: number): Promise<void> {
  const { createTenant } = await import('../../src/subscriptions/tenants.js');
  const { subscribe } = await import('../../src/subscriptions/lifecycle.js');
  const opts = { now: Date.parse('2026-01-01T00:00:00Z'), actor: 'bench' };
  await createTenant(db, { id: tenantId }, opts);
  await subscribe(db, { tenantId, planKey: 'starter', start: opts.now, trialDays: 0 }, opts);
  await insertGenerated(db, tenantId, first, n);
}

async function insertGenerated(db: Db, tenantId: string, first: number, n: number): Promise<void> {
  const start = Date.parse('2026-03-01T00:00:00Z');
  const cols = 'tenant_id, idempotency_key, feature_key, quantity, occurred_at, ingested_at';
  const row = `'${tenantId}', 'v' || i, 'OCR_SCAN', 1000000, ${start} + i, ${start}`;
  await db.knex.raw(
    db.dialect === 'pg'
      ? `INSERT INTO usage_events (${cols}) SELECT ${row} FROM generate_series(${first}, ${first + n - 1}) i`
      : `WITH RECURSIVE c(i) AS (SELECT ${first} UNION ALL SELECT i + 1 FROM c WHERE i < ${first + n - 1}) INSERT INTO usage_events (${cols}) SELECT ${row} FROM c`,
  );
  await db.knex.raw('ANALYZE');
}

async function volume(label: string, db: Db, n: number): Promise<void> {
  const { checkEntitlement } = await import('../../src/entitlements/check.js');
  const { runAggregate } = await import('../../src/aggregate/aggregate.js');
  await seedVolume(db, 'big', n, 1);
  await seedVolume(db, 'small', 100, 1);
  const now = Date.parse(NOW);
  const perCheck = async (tenantId: string, times: number) => {
    await checkEntitlement(db, { tenantId, featureKey: 'OCR_SCAN' }, { now });
    const t0 = performance.now();
    for (let i = 0; i < times; i++) await checkEntitlement(db, { tenantId, featureKey: 'OCR_SCAN' }, { now });
    return ((performance.now() - t0) / times) * 1000;
  };
  const us = (x: number) => `${Math.round(x).toLocaleString('en')} µs`;
  const everyEvent = await perCheck('big', 20);
  const smallEveryEvent = await perCheck('small', 300);
  await runAggregate(db, { now });
  await insertGenerated(db, 'big', n + 1, 1000);
  const summaryPlusNew = await perCheck('big', 300);
  const small = await perCheck('small', 300);
  console.log(
    `${label}: checkEntitlement(), ${n.toLocaleString('en')} events this period — every event read ${us(everyEvent)}; ` +
      `summary + 1,000 new ${us(summaryPlusNew)} (${(everyEvent / summaryPlusNew).toFixed(0)}× faster); a tenant with 100 events ${us(small)} ` +
      `(${us(smallEveryEvent)} from every event; the big tenant costs ${(summaryPlusNew / small).toFixed(1)}× it)`,
  );
}

export async function run(args: string[]): Promise<void> {
  const { openDb } = await import('../../src/storage/db.js');
  const runs = arg(args, '--runs', 30);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-check-'));
  const url = `sqlite:${path.join(dir, 'bench.db')}`;
  try {
    const db = await openDb(url);
    await seed(db);
    await db.close();
    measure('sqlite', url, runs);
    const again = await openDb(url);
    await volume('sqlite', again, arg(args, '--volume', 300_000)).finally(() => again.close());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (args.includes('--sqlite-only')) return;

  const base = process.env.BILLING_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `bench_check_${randomBytes(4).toString('hex')}`;
  const pgUrl = `${base}${base.includes('?') ? '&' : '?'}schema=${schema}`;
  let pg: Db;
  try {
    pg = await openDb(pgUrl, 'none');
  } catch (e) {
    console.log(`postgres: skipped (${(e as Error).message})`);
    return;
  }
  try {
    await pg.knex.migrate.latest();
    await seed(pg);
    measure('postgres', pgUrl, runs);
    await volume('postgres', pg, arg(args, '--volume', 300_000));
  } finally {
    await pg.knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
    await pg.close();
  }
}
