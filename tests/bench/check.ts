/**
 * `npm run bench -- check`: whole-process latency of `billing check TENANT FEATURE` (spawn,
 * load, open the database, answer, exit) against `node -e 0` in the same run, alternating the
 * two so that machine load hits both alike. The tenant has 10,000 events in its current
 * period. Options: --runs N (default 30), --sqlite-only.
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
  } finally {
    await pg.knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
    await pg.close();
  }
}
