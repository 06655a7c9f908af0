import { createWriteStream, mkdtempSync, rmSync, statSync } from 'node:fs';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { openDb, type Db } from '../../src/storage/db.js';
import { backup } from '../../src/ops/backup.js';
import { restore } from '../../src/ops/restore.js';
import { withJobLock } from '../../src/jobs/lock.js';
import { withTx } from '../../src/storage/sql.js';

/**
 * Backup and restore of N usage events against naive baselines measured in the same run
 * (one SELECT * streamed to NDJSON; a plain batch insert of the same rows), and the cost of
 * a job lock against an empty write transaction.
 * `npm run bench -- ops [--events N]`; BILLING_BENCH_PG_URL adds PostgreSQL.
 */
export function arg(args: string[], name: string, dflt: number): number {
  const i = args.indexOf(name);
  return i >= 0 ? Number(args[i + 1]) : dflt;
}

/** A fresh database for a bench: a SQLite file in dir, or a new PostgreSQL schema. */
export async function target(kind: 'sqlite' | 'pg', dir: string, name: string): Promise<{ db: Db; drop(): Promise<void> }> {
  if (kind === 'sqlite') {
    const db = await openDb(`sqlite:${path.join(dir, `${name}.db`)}`);
    return { db, drop: () => db.close() };
  }
  const base = process.env.BILLING_BENCH_PG_URL!;
  const schema = `bench_${name}_${randomBytes(4).toString('hex')}`;
  const db = await openDb(`${base}${base.includes('?') ? '&' : '?'}schema=${schema}`, 'none');
  await db.knex.migrate.latest();
  return {
    db,
    async drop() {
      await db.knex.raw('drop schema if exists ?? cascade', [schema]);
      await db.close();
    },
  };
}

async function seed(db: Db, n: number): Promise<void> {
  await db.knex('tenants').insert(Array.from({ length: 50 }, (_, i) => ({ id: `t${i}`, created_at: 0 })));
  const t0 = Date.UTC(2026, 0, 1);
  for (let i = 0; i < n; i += 400) {
    const rows = [];
    for (let k = i; k < Math.min(n, i + 400); k++) {
      rows.push({
        tenant_id: `t${k % 50}`, idempotency_key: `k${k}`, feature_key: 'OCR_SCAN', quantity: String(1_000_000 + k),
        occurred_at: t0 + k * 1000, ingested_at: t0 + k * 1000 + 5, source_service: 'bench', user_id: `u${k % 97}`,
        metadata: JSON.stringify({ page: k % 13 }),
      });
    }
    await db.knex('usage_events').insert(rows);
  }
  // As autovacuum would have by now: the planner needs statistics to page by the key.
  if (db.dialect === 'pg') await db.knex.raw('ANALYZE');
}

async function time<T>(fn: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const v = await fn();
  return [v, performance.now() - t];
}

const rate = (n: number, ms: number) => `${Math.round((n * 1000) / ms).toLocaleString('en-US')} rows/s`;

async function benchDialect(kind: 'sqlite' | 'pg', events: number, dir: string): Promise<void> {
  const src = await target(kind, dir, 'src');
  try {
    await seed(src.db, events);
    const naiveFile = path.join(dir, `${kind}-naive.ndjson`);
    const [, naiveMs] = await time(async () => {
      const out = createWriteStream(naiveFile);
      for (const r of await src.db.knex('usage_events').select('*')) out.write(JSON.stringify({ t: 'usage_events', r }) + '\n');
      out.end();
      await once(out, 'finish');
    });
    const file = path.join(dir, `${kind}-backup.ndjson`);
    const [summary, backupMs] = await time(() => backup(src.db, { out: file, now: Date.now() }));
    const [, gzMs] = await time(() => backup(src.db, { out: `${file}.gz`, now: Date.now() }));
    console.log(`${kind}: ${summary.rows} rows (${events} events)`);
    console.log(`  naive SELECT * → NDJSON      ${naiveMs.toFixed(0).padStart(6)} ms  ${rate(events, naiveMs)}`);
    console.log(`  billing backup               ${backupMs.toFixed(0).padStart(6)} ms  ${rate(summary.rows, backupMs)}  ×${(backupMs / naiveMs).toFixed(2)} of naive (snapshot, paging, checksum)`);
    console.log(`  billing backup .gz           ${gzMs.toFixed(0).padStart(6)} ms  ×${(gzMs / naiveMs).toFixed(2)}  ${(statSync(`${file}.gz`).size / statSync(file).size * 100).toFixed(0)}% of the plain file`);

    const rows = await src.db.knex('usage_events').select('*');
    const base = await target(kind, dir, 'base');
    const [, insertMs] = await time(async () => {
      for (let i = 0; i < rows.length; i += 400) await withTx(base.db, (trx) => trx('usage_events').insert(rows.slice(i, i + 400)).then(() => undefined));
    });
    await base.drop();
    const dst = await target(kind, dir, 'dst');
    const [, restoreMs] = await time(() => restore(dst.db, { file, now: Date.now(), actor: 'bench' }));
    await dst.drop();
    console.log(`  plain batch insert           ${insertMs.toFixed(0).padStart(6)} ms  ${rate(events, insertMs)}`);
    console.log(`  billing restore (verify+tx)  ${restoreMs.toFixed(0).padStart(6)} ms  ${rate(summary.rows, restoreMs)}  ×${(restoreMs / insertMs).toFixed(2)} of plain insert`);

    const N = 200;
    const [, txMs] = await time(async () => {
      for (let i = 0; i < N; i++) await withTx(src.db, async () => undefined);
    });
    const [, lockMs] = await time(async () => {
      for (let i = 0; i < N; i++) await withJobLock(src.db, 'bench', { owner: 'bench', now: Date.now(), ttlMs: 60_000, clock: Date.now }, async () => undefined);
    });
    console.log(`  job lock take+release        ${(lockMs / N).toFixed(2).padStart(6)} ms  ×${(lockMs / txMs).toFixed(2)} of an empty write transaction (${(txMs / N).toFixed(2)} ms)`);
  } finally {
    await src.drop();
  }
}

export async function run(args: string[]): Promise<void> {
  const events = arg(args, '--events', 200_000);
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-bench-ops-'));
  try {
    await benchDialect('sqlite', events, dir);
    if (process.env.BILLING_BENCH_PG_URL) await benchDialect('pg', events, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
