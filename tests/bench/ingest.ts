/**
 * `npm run bench -- ingest`: `billing ingest` throughput on SQLite and PostgreSQL against
 * baselines measured in the same run on the same file — bare csv-parse + one better-sqlite3
 * prepared INSERT in one transaction (SQLite), bare csv-parse + COPY FROM STDIN
 * (PostgreSQL) — and the ingest process's peak RSS for N vs 3N rows.
 *
 * Options: --rows N (default 1,000,000; env BENCH_INGEST_ROWS), --rss-rows N (default 3 × rows;
 * 0 skips the RSS comparison), --repeat N (run each measurement N times, alternating, and keep
 * the fastest: on a shared machine the slowest runs measure the neighbours), --pg URL (default
 * BILLING_TEST_PG_URL or the test database).
 * Targets: SQLite >= 80% of its baseline, PostgreSQL >= 50% of bare COPY, RSS < 200 MB and flat.
 */
import { createReadStream, createWriteStream, existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parse } from 'csv-parse';
import type BetterSqlite3 from 'better-sqlite3';
import type pg from 'pg';
import { openDb, type Db } from '../../src/storage/db.js';
import { copyFrom, copyText } from '../../src/storage/pg-copy.js';
import { SQLITE_BULK_CACHE_KIB } from '../../src/storage/bulk-insert.js';

const TENANTS = 1000;
const FEATURES = 10;
const START = Date.parse('2026-08-01T00:00:00Z');
const SPAN = 90 * 86_400_000; // three months
const NOW = '2026-11-01T00:00:00Z';

function arg(args: string[], name: string, fallback: string): string {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] ? args[i + 1] : fallback;
}

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) dir = path.dirname(dir);
  return dir;
}

const tenantId = (i: number) => `tenant-${String(i).padStart(4, '0')}`;
const featureKey = (i: number) => `FEATURE_${i}`;

/**
 * Events as services export them: tenant, feature, quantity (some fractional), ISO time,
 * source service + entity (the idempotency key), user, and metadata on one row in twenty.
 */
async function generateCsv(file: string, rows: number): Promise<void> {
  const out = createWriteStream(file);
  out.write('tenant_id,usage_type,quantity,occurred_at,source_service,source_entity_id,user_id,metadata\n');
  let buf = '';
  for (let i = 0; i < rows; i++) {
    const t = new Date(START + Math.floor((i * SPAN) / rows)).toISOString();
    const qty = i % 7 === 0 ? `${i % 100}.25` : String(1 + (i % 13));
    const meta = i % 20 === 0 ? `"{""region"":""eu-${i % 3}""}"` : '';
    buf += `${tenantId((i * 7919) % TENANTS)},${featureKey(i % FEATURES)},${qty},${t},svc-${i % 5},ent-${i},user-${i % 5000},${meta}\n`;
    if (buf.length > 1 << 16) {
      if (!out.write(buf)) await once(out, 'drain');
      buf = '';
    }
  }
  out.end(buf);
  await once(out, 'close');
}

async function seed(db: Db): Promise<void> {
  await db.knex.batchInsert(
    'tenants',
    Array.from({ length: TENANTS }, (_, i) => ({ id: tenantId(i), created_at: START })),
    500,
  );
  await db.knex('features').insert(
    Array.from({ length: FEATURES }, (_, i) => ({
      key: featureKey(i),
      name: featureKey(i),
      type: 'metered',
      aggregation: 'sum',
      created_at: START,
      updated_at: START,
    })),
  );
}

/** The bare minimum per row: array fields in, the same columns out, no validation. */
function bareRow(r: string[]): unknown[] {
  return [r[0], `s:${r[4]}:${r[5]}:${r[1]}`, r[1], String(Math.round(Number(r[2]) * 1e6)), Date.parse(r[3]), 0, null, r[4], r[5], r[6], r[7] || null, null];
}

const COLUMNS = 'tenant_id, idempotency_key, feature_key, quantity, occurred_at, ingested_at, event_id, source_service, source_entity_id, user_id, metadata, ingest_run_id';

async function baselineSqlite(file: string, dbUrl: string): Promise<number> {
  const db = await openDb(dbUrl);
  await seed(db);
  const conn = (await (db.knex.client as { acquireConnection(): Promise<unknown> }).acquireConnection()) as BetterSqlite3.Database;
  conn.pragma(`cache_size = -${SQLITE_BULK_CACHE_KIB}`); // the same connection settings as ingest's
  const t0 = performance.now();
  const stmt = conn.prepare(`INSERT INTO usage_events (${COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`);
  conn.exec('BEGIN');
  let header = true;
  for await (const r of createReadStream(file).pipe(parse())) {
    if (header) header = false;
    else stmt.run(bareRow(r as string[]));
  }
  conn.exec('COMMIT');
  const seconds = (performance.now() - t0) / 1000;
  await (db.knex.client as { releaseConnection(c: unknown): Promise<void> }).releaseConnection(conn);
  await db.close();
  return seconds;
}

async function baselinePg(file: string, dbUrl: string): Promise<number> {
  const db = await openDb(dbUrl, 'none');
  await db.knex.migrate.latest();
  await seed(db);
  const t0 = performance.now();
  await db.knex.transaction(async (trx) => {
    const client = (await (trx as unknown as { client: { acquireConnection(): Promise<unknown> } }).client.acquireConnection()) as pg.ClientBase;
    let header = true;
    let rows: unknown[][] = [];
    for await (const r of createReadStream(file).pipe(parse())) {
      if (header) {
        header = false;
        continue;
      }
      rows.push(bareRow(r as string[]));
      if (rows.length === 50_000) {
        await copyFrom(client, `COPY usage_events (${COLUMNS}) FROM STDIN`, copyText(rows));
        rows = [];
      }
    }
    if (rows.length) await copyFrom(client, `COPY usage_events (${COLUMNS}) FROM STDIN`, copyText(rows));
  });
  const seconds = (performance.now() - t0) / 1000;
  await db.close();
  return seconds;
}

interface CliRun {
  seconds: number;
  wallSeconds: number;
  inserted: number;
  maxRssMb: number | null;
}

/** The real CLI, as a separate process, under /usr/bin/time for its peak RSS when available. */
async function cliIngest(file: string, dbUrl: string): Promise<CliRun> {
  const bin = path.join(repoRoot(), 'bin', 'billing');
  const args = [bin, 'ingest', file, '--db', dbUrl, '--now', NOW, '--json'];
  const timed = existsSync('/usr/bin/time');
  const child = timed
    ? spawn('/usr/bin/time', ['-f', 'maxrss_kb=%M', process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => (stdout += d));
  child.stderr.on('data', (d) => (stderr += d));
  const t0 = performance.now();
  const [code] = (await once(child, 'close')) as [number];
  const wallSeconds = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`billing ingest exited ${code}: ${stderr}`);
  const summary = JSON.parse(stdout) as { seconds: number; inserted: number };
  const rss = /maxrss_kb=(\d+)/.exec(stderr);
  return { seconds: summary.seconds, wallSeconds, inserted: summary.inserted, maxRssMb: rss ? Number(rss[1]) / 1024 : null };
}

async function freshSqlite(dir: string, name: string, seeded: boolean): Promise<string> {
  const url = `sqlite:${path.join(dir, `${name}.db`)}`;
  if (seeded) {
    const db = await openDb(url);
    await seed(db);
    await db.close();
  }
  return url;
}

async function freshPg(base: string, name: string, seeded: boolean): Promise<{ url: string; drop(): Promise<void> }> {
  const schema = `bench_ingest_${name}_${process.pid}`;
  const url = `${base}${base.includes('?') ? '&' : '?'}schema=${schema}`;
  const db = await openDb(url, 'none');
  await db.knex.raw('drop schema if exists ?? cascade', [schema]);
  await db.knex.raw('create schema ??', [schema]);
  if (seeded) {
    await db.knex.migrate.latest();
    await seed(db);
  }
  await db.close();
  return {
    url,
    async drop() {
      const d = await openDb(url, 'none');
      await d.knex.raw('drop schema if exists ?? cascade', [schema]);
      await d.close();
    },
  };
}

async function pgReachable(url: string): Promise<boolean> {
  try {
    const db = await openDb(url, 'none');
    await db.close();
    return true;
  } catch {
    return false;
  }
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

export async function run(args: string[]): Promise<void> {
  const rows = Number(arg(args, '--rows', process.env.BENCH_INGEST_ROWS ?? '1000000'));
  const rssRows = Number(arg(args, '--rss-rows', String(rows * 3)));
  const repeat = Math.max(1, Number(arg(args, '--repeat', '1')));
  const pgBase = arg(args, '--pg', process.env.BILLING_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-ingest-'));
  const line = (name: string, ours: number, base: number, baseName: string) =>
    console.log(
      `${name.padEnd(11)} ingest ${fmt(rows / ours).padStart(9)} rows/s   ${baseName} ${fmt(rows / base).padStart(9)} rows/s` +
        `   ratio ${((100 * base) / ours).toFixed(0)}%`,
    );
  const check = (r: CliRun, where: string) => {
    if (r.inserted !== rows) throw new Error(`${where} ingest inserted ${r.inserted} of ${rows}`);
    return r;
  };
  try {
    const file = path.join(dir, 'usage.csv');
    await generateCsv(file, rows);
    console.log(`${fmt(rows)} events, ${TENANTS} tenants × ${FEATURES} features over 3 months; best of ${repeat}`);

    let sqliteBase = Infinity;
    let sqliteOurs = Infinity;
    let rss = 0;
    for (let i = 0; i < repeat; i++) {
      sqliteBase = Math.min(sqliteBase, await baselineSqlite(file, await freshSqlite(dir, `baseline-${i}`, false)));
      const r = check(await cliIngest(file, await freshSqlite(dir, `ingest-${i}`, true)), 'SQLite');
      sqliteOurs = Math.min(sqliteOurs, r.seconds);
      rss = Math.max(rss, r.maxRssMb ?? 0);
      for (const f of readdirSync(dir)) if (f.endsWith('.db') || f.includes('.db-')) rmSync(path.join(dir, f));
    }
    line('SQLite', sqliteOurs, sqliteBase, 'csv-parse + prepared INSERT');

    if (await pgReachable(pgBase)) {
      let pgBaseSeconds = Infinity;
      let pgOurs = Infinity;
      for (let i = 0; i < repeat; i++) {
        const b = await freshPg(pgBase, 'baseline', false);
        const o = await freshPg(pgBase, 'ingest', true);
        try {
          pgBaseSeconds = Math.min(pgBaseSeconds, await baselinePg(file, b.url));
          pgOurs = Math.min(pgOurs, check(await cliIngest(file, o.url), 'PostgreSQL').seconds);
        } finally {
          await b.drop();
          await o.drop();
        }
      }
      line('PostgreSQL', pgOurs, pgBaseSeconds, 'csv-parse + COPY         ');
    } else {
      console.log(`PostgreSQL  skipped: ${pgBase} unreachable`);
    }

    if (rss === 0) console.log('peak RSS    not measured (no /usr/bin/time)');
    else if (rssRows > 0) {
      rmSync(file);
      const big = path.join(dir, 'usage-big.csv');
      await generateCsv(big, rssRows);
      const bigRun = await cliIngest(big, await freshSqlite(dir, 'rss', true));
      if (bigRun.inserted !== rssRows) throw new Error(`SQLite ingest inserted ${bigRun.inserted} of ${rssRows}`);
      console.log(
        `peak RSS    ${fmt(rows)} rows ${rss.toFixed(0)} MB   ${fmt(rssRows)} rows ${bigRun.maxRssMb?.toFixed(0)} MB   (SQLite, whole CLI process)`,
      );
    } else {
      console.log(`peak RSS    ${fmt(rows)} rows ${rss.toFixed(0)} MB (SQLite, whole CLI process)`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
