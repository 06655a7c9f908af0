/**
 * `npm run bench -- aggregate`: the aggregate stage on a database of N usage events (default
 * 1,000,000: 200 tenants, 6 features covering sum/count/max/last/unique, six months), on
 * SQLite and PostgreSQL, against the bare `SELECT tenant_id, feature_key, SUM(quantity) ...
 * GROUP BY` over the same table in the same run. Then K new events (default 10,000) land in
 * the current period and the incremental run is timed against the full rebuild.
 * Options: --events N, --new K, --rounds R (incremental rounds after the first, default 3), --sqlite-only, --pg-only, --trace (print each statement of one full and one incremental run).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { randomBytes } from 'node:crypto';

const TENANTS = 200;
const FROM = Date.parse('2026-01-01T00:00:00Z');
const TO = Date.parse('2026-07-01T00:00:00Z');
const CURRENT = Date.parse('2026-06-01T00:00:00Z');
const NOW = Date.parse('2026-06-30T00:00:00Z');
const FEATURES = [
  { key: 'F_SUM', name: 'sum', aggregation: 'sum' },
  { key: 'F_COUNT', name: 'count', aggregation: 'count' },
  { key: 'F_MAX', name: 'max', aggregation: 'max' },
  { key: 'F_LAST', name: 'last', aggregation: 'last' },
  { key: 'F_USERS', name: 'unique', aggregation: 'unique', uniqueBy: 'user_id' },
  { key: 'F_SUM2', name: 'sum 2', aggregation: 'sum' },
];

function arg(args: string[], name: string, fallback: number): number {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? Number(args[i + 1]) : fallback;
}

type Db = import('../../src/storage/db.js').Db;

async function seed(db: Db, events: number): Promise<void> {
  const { applyCatalog } = await import('../../src/catalog/apply.js');
  const { createTenant } = await import('../../src/subscriptions/tenants.js');
  const { subscribe } = await import('../../src/subscriptions/lifecycle.js');
  const opts = { now: Date.parse('2025-12-01T00:00:00Z'), actor: 'bench' };
  const included = Object.fromEntries(FEATURES.map((f) => [f.key, { included: 100 }]));
  await applyCatalog(db, { features: FEATURES, plans: [{ key: 'bench', name: 'Bench', currency: 'USD', price: '10.00', interval: 'month', features: included }] }, opts);
  for (let i = 0; i < TENANTS; i++) {
    const id = `t${String(i).padStart(4, '0')}`;
    await createTenant(db, { id }, opts);
    // Four in five subscribe, anchored on every day of the month; the rest use calendar months.
    if (i % 5 !== 0) await subscribe(db, { tenantId: id, planKey: 'bench', start: Date.UTC(2025, 11, 1 + (i % 31), i % 24), trialDays: 0 }, opts);
  }
  await insertEvents(db, 0, events, FROM, TO);
}

/** Events first+1 .. first+n, spread evenly over [from, to), generated inside the database. */
async function insertEvents(db: Db, first: number, n: number, from: number, to: number): Promise<void> {
  const f = FEATURES.map((x) => x.key);
  const cols = 'tenant_id, idempotency_key, feature_key, quantity, occurred_at, ingested_at, user_id';
  if (db.dialect === 'pg') {
    await db.knex.raw(
      `INSERT INTO usage_events (${cols}) SELECT 't' || lpad((i % ${TENANTS})::text, 4, '0'), 'k' || i, ` +
        `(ARRAY[${f.map((k) => `'${k}'`).join(',')}])[1 + (i * 7 % ${f.length})], (i % 1000) * 1000000 + i % 7, ` +
        `${from}::bigint + ((i - ${first})::bigint * ${to - from}) / ${n}, ${from}, 'u' || (i % 97) FROM generate_series(${first + 1}, ${first + n}) i`,
    );
    await db.knex.raw('ANALYZE usage_events');
    return;
  }
  await db.knex.raw(
    `WITH RECURSIVE c(i) AS (SELECT ${first + 1} UNION ALL SELECT i + 1 FROM c WHERE i < ${first + n}) ` +
      `INSERT INTO usage_events (${cols}) SELECT 't' || substr('0000' || (i % ${TENANTS}), -4), 'k' || i, ` +
      `CASE i * 7 % ${f.length} ${f.map((k, j) => `WHEN ${j} THEN '${k}'`).join(' ')} END, (i % 1000) * 1000000 + i % 7, ` +
      `${from} + ((i - ${first}) * ${to - from}) / ${n}, ${from}, 'u' || (i % 97) FROM c`,
  );
  await db.knex.raw('ANALYZE');
}

async function timed<T>(fn: () => Promise<T>): Promise<{ ms: number; value: T }> {
  const t0 = performance.now();
  const value = await fn();
  return { ms: performance.now() - t0, value };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function fingerprint(db: Db): Promise<string> {
  const [r] = await db.knex('usage_summaries').select(
    db.knex.raw('COUNT(*) AS n'),
    db.knex.raw('CAST(SUM(quantity) AS TEXT) AS q'),
    db.knex.raw('CAST(SUM(event_count) AS TEXT) AS e'),
  );
  return `${r.n}/${r.q}/${r.e}`;
}

/** Runs fn, then prints each statement it sent with its duration, slowest first. */
async function traced(db: Db, fn: () => Promise<unknown>): Promise<void> {
  const started = new Map<string, number>();
  const done: Array<{ ms: number; sql: string }> = [];
  const onQuery = (q: { __knexQueryUid: string }) => started.set(q.__knexQueryUid, performance.now());
  const onResponse = (_: unknown, q: { __knexQueryUid: string; sql: string }) =>
    done.push({ ms: performance.now() - (started.get(q.__knexQueryUid) ?? performance.now()), sql: q.sql });
  db.knex.on('query', onQuery).on('query-response', onResponse);
  const t = await timed(fn);
  db.knex.off('query', onQuery).off('query-response', onResponse);
  const inSql = done.reduce((n, d) => n + d.ms, 0);
  console.log(`    ${Math.round(t.ms)} ms in all, ${done.length} statements taking ${Math.round(inSql)} ms`);
  for (const d of done.sort((a, b) => b.ms - a.ms).slice(0, 12)) console.log(`    ${d.ms.toFixed(1).padStart(8)} ms  ${d.sql.replace(/\s+/g, ' ').slice(0, 150)}`);
}

async function benchOne(label: string, db: Db, events: number, fresh: number, rounds: number, trace = false): Promise<void> {
  const { runAggregate } = await import('../../src/aggregate/aggregate.js');
  const t0 = performance.now();
  await seed(db, events);
  console.log(`${label}: seeded ${events.toLocaleString('en')} events in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  const bare: number[] = [];
  const full: number[] = [];
  for (let i = 0; i < 3; i++) {
    bare.push((await timed(() => db.knex.raw('SELECT tenant_id, feature_key, SUM(quantity) FROM usage_events GROUP BY tenant_id, feature_key'))).ms);
    full.push((await timed(() => runAggregate(db, { now: NOW, full: true }))).ms);
  }
  // PostgreSQL's floor: the bare query's SUM, but per billing period, through the window join
  // the rebuild uses (aggregate_windows still holds every window of the last rebuild).
  const joined: number[] = [];
  if (db.dialect === 'pg') {
    const { EVENTS_TO_WINDOWS } = await import('../../src/aggregate/usage-sql.js');
    const { REBUILD_PLANNER_SETTINGS } = await import('../../src/aggregate/full-scan-pg.js');
    const sql = `SELECT w.window_id, e.feature_key, SUM(e.quantity) FROM ${EVENTS_TO_WINDOWS} GROUP BY 1, 2`;
    for (let i = 0; i < 3; i++) {
      await db.knex.transaction(async (trx) => {
        // The rebuild's planner settings, without which the join is walked per window.
        for (const [k, v] of REBUILD_PLANNER_SETTINGS) await trx.raw("SELECT set_config(?, ?, true)", [k, v]);
        joined.push((await timed(() => trx.raw(sql))).ms);
      });
    }
  }
  // The first run after a rebuild is timed apart: on PostgreSQL it also fills the value sets
  // of the unique groups it touches (the rebuild writes none, see full-scan-pg.ts).
  const incremental: number[] = [];
  let total = events;
  for (let i = 0; i <= rounds; i++) {
    await insertEvents(db, total, fresh, CURRENT, TO);
    total += fresh;
    incremental.push((await timed(() => runAggregate(db, { now: NOW }))).ms);
  }
  const [afterRebuild, ...steady] = incremental;
  if (trace) {
    console.log(`  trace of one full rebuild:`);
    await traced(db, () => runAggregate(db, { now: NOW, full: true }));
    for (const label of ['the first incremental run after it', 'the next incremental run']) {
      await insertEvents(db, total, fresh, CURRENT, TO);
      total += fresh;
      console.log(`  trace of ${label}:`);
      await traced(db, () => runAggregate(db, { now: NOW }));
    }
  }
  const afterIncremental = await fingerprint(db);
  await runAggregate(db, { now: NOW, full: true });
  const same = afterIncremental === (await fingerprint(db));

  const ms = (x: number) => `${Math.round(x).toLocaleString('en')} ms`;
  console.log(`  bare GROUP BY (median of 3)        ${ms(median(bare))}`);
  console.log(`  full rebuild (median of 3)         ${ms(median(full))}  = ${(median(full) / median(bare)).toFixed(2)}× the bare query (target ≤ 2×)`);
  if (joined.length) {
    console.log(`  floor: the bare SUM per period, through the window join  ${ms(median(joined))}  = ${(median(joined) / median(bare)).toFixed(2)}× the bare query`);
  }
  console.log(
    `  incremental, +${fresh.toLocaleString('en')} events (median of ${rounds})  ${ms(median(steady))}  = ` +
      `${(median(full) / median(steady)).toFixed(1)}× faster than full (target ≥ 20×)`,
  );
  console.log(
    `  the first incremental run after a rebuild  ${ms(afterRebuild)}  = ${(median(full) / afterRebuild).toFixed(1)}× faster than full`,
  );
  console.log(`  incremental result equals a full rebuild: ${same ? 'yes' : 'NO'}`);
}

export async function run(args: string[]): Promise<void> {
  const { openDb } = await import('../../src/storage/db.js');
  const events = arg(args, '--events', 1_000_000);
  const fresh = arg(args, '--new', 10_000);
  const rounds = arg(args, '--rounds', 3);

  if (!args.includes('--pg-only')) {
    const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-aggregate-'));
    const sqlite = await openDb(`sqlite:${path.join(dir, 'bench.db')}`);
    try {
      await benchOne('sqlite', sqlite, events, fresh, rounds, args.includes('--trace'));
    } finally {
      await sqlite.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  if (args.includes('--sqlite-only')) return;

  const base = process.env.BILLING_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `bench_agg_${randomBytes(4).toString('hex')}`;
  let pg: Db;
  try {
    pg = await openDb(`${base}${base.includes('?') ? '&' : '?'}schema=${schema}`, 'none');
  } catch (e) {
    console.log(`postgres: skipped (${(e as Error).message})`);
    return;
  }
  try {
    await pg.knex.migrate.latest();
    await benchOne('postgres', pg, events, fresh, rounds, args.includes('--trace'));
  } finally {
    await pg.knex.raw('DROP SCHEMA IF EXISTS ?? CASCADE', [schema]);
    await pg.close();
  }
}
