import { spawn, type ChildProcess } from 'node:child_process';
import type { Scheduler } from '../src/jobs/daemon.js';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { applyCatalog } from '../src/catalog/apply.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { decimalToMicro } from '../src/domain/quantity.js';
import { discoverTables } from '../src/ops/tables.js';
import type { Db } from '../src/storage/db.js';
import { BIN } from './helpers/cli.js';
import { runPipeline } from '../src/jobs/pipeline.js';
import { addDiscount } from '../src/subscriptions/discounts.js';
import { setTenantTax } from '../src/subscriptions/taxes.js';
import { grantCredit } from '../src/subscriptions/credits.js';
import { createCreditNote } from '../src/invoice/credit-notes.js';
import { markInvoicePaid } from '../src/invoice/lifecycle.js';

/** Shared by the jobs, daemon and ops tests: a small billing world and process helpers. */

export const T = (iso: string) => Date.parse(iso);
export const JAN = { start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') };
export const FEB = { start: JAN.end, end: T('2026-03-01T00:00:00Z') };
export const NOW = T('2026-02-10T12:00:00Z'); // January closed, February open
const CATALOG = JSON.parse(readFileSync(fileURLToPath(new URL('../seeds/catalog.json', import.meta.url)), 'utf8'));

/**
 * Demo catalog, tenants on starter from 1 Jan (no trial), and raw OCR_SCAN events: tenant i
 * scans 120 + i in January and 30 + i in February (ingested as they happen).
 */
export async function seedWorld(db: Db, tenants: string[] = ['acme', 'globex']): Promise<void> {
  const actor = 'test';
  await applyCatalog(db, CATALOG, { now: JAN.start - 1000, actor });
  for (const [i, id] of tenants.entries()) {
    await createTenant(db, { id, name: id.toUpperCase(), currency: 'USD' }, { now: JAN.start - 1000, actor });
    await subscribe(db, { tenantId: id, planKey: 'starter', start: JAN.start, trialDays: 0 }, { now: JAN.start, actor });
    const events = [
      ...[30, 30, 30, 30 + i].map((q, k) => ({ q, at: JAN.start + (k + 1) * 86_400_000 })),
      { q: 30 + i, at: FEB.start + 86_400_000 },
    ];
    await db.knex('usage_events').insert(
      events.map((e, k) => ({
        tenant_id: id, idempotency_key: `${id}-scan-${k}`, feature_key: 'OCR_SCAN', quantity: decimalToMicro(String(e.q)),
        occurred_at: e.at, ingested_at: e.at + 60_000, event_id: `${id}-scan-${k}`, source_service: 'scanner',
      })),
    );
  }
}

/**
 * seedWorld plus many more events (more than a backup page), then every stage run at NOW.
 * `commercial`: a row in every DESIGN.md §13 table too (catalog default tax and a coupon; acme
 * a discount, its own VAT and a credit note on its open January invoice; globex a prepaid
 * grant and, once its January invoice is paid, a credit note that becomes a grant).
 */
export async function opsWorld(db: Db, opts: { commercial?: boolean } = {}): Promise<void> {
  await seedWorld(db);
  if (opts.commercial) await commercialTerms(db);
  const rows = [];
  for (const tenant of ['acme', 'globex']) {
    for (let i = 0; i < 40; i++) {
      const at = (i < 25 ? JAN.start : FEB.start) + i * 3_600_000;
      rows.push({
        tenant_id: tenant, idempotency_key: `${tenant}-${i}`, feature_key: i % 4 === 0 ? 'STORAGE_GB' : 'OCR_SCAN',
        quantity: i === 7 ? '999999999999999999' : String(1_500_000 + i), occurred_at: at, ingested_at: at + 1000,
        event_id: `${tenant}-${i}`, source_service: 'scanner', user_id: `u${i % 3}`, metadata: JSON.stringify({ page: i, note: 'ünïcode "quoted"' }),
      });
    }
  }
  // More rows than a backup page (2000), so paging in key order is exercised.
  for (let i = 0; i < 2100; i++) {
    rows.push({
      tenant_id: 'globex', idempotency_key: `bulk-${i}`, feature_key: 'OCR_SCAN', quantity: '1000000',
      occurred_at: FEB.start + i * 1000, ingested_at: FEB.start + i * 1000 + 5, source_service: 'bulk',
    });
  }
  await db.knex.batchInsert('usage_events', rows, 100);
  // The last event is gone: the serial counter is past the highest remaining id.
  const [{ m }] = await db.knex('usage_events').max('seq as m');
  await db.knex('usage_events').where({ seq: m }).delete();
  const r = await runPipeline(db, { now: NOW, actor: 'test' });
  if (!r.ok) throw new Error(`pipeline stopped: ${JSON.stringify(r.stoppedAt)}`);
  if (opts.commercial) await commercialNotes(db);
}

async function commercialTerms(db: Db): Promise<void> {
  const at = { now: JAN.start - 500, actor: 'test' };
  await applyCatalog(db, {
    ...CATALOG,
    taxes: [{ name: 'Sales tax', rate: '8.25' }],
    coupons: [{ key: 'launch', percent: '10', duration: 'repeating', periods: 2 }],
  }, at);
  await addDiscount(db, { tenantId: 'acme', percent: '10', duration: 'repeating', periods: 2 }, at);
  await setTenantTax(db, 'acme', { name: 'VAT', rate: '19', inclusive: false }, at);
  await grantCredit(db, { tenantId: 'globex', amount: '20.00', name: 'Prepaid package' }, at);
}

async function commercialNotes(db: Db): Promise<void> {
  const at = { now: NOW, actor: 'test' };
  const jan = async (tenantId: string) => (await db.knex('invoices').where({ tenant_id: tenantId, period_start: JAN.start }).first('id', 'number')) as { id: string; number: string };
  await createCreditNote(db, { invoice: (await jan('acme')).number, amount: '5.00', reason: 'outage' }, at);
  const globex = await jan('globex');
  await markInvoicePaid(db, globex.id, at);
  await createCreditNote(db, { invoice: globex.number, amount: '3.00', reason: 'goodwill' }, at);
}

/** Many summaries for tenants without subscriptions: makes the overage stage take a while. */
export async function seedBulkSummaries(db: Db, n: number): Promise<void> {
  const rows = [];
  for (let i = 0; i < n; i++) {
    rows.push({
      tenant_id: `bulk${i % 40}`, feature_key: 'OCR_SCAN', period_start: JAN.start + i * 1000, period_end: JAN.end + i * 1000,
      subscription_id: null, quantity: '5000000', event_count: 5, computed_at: NOW,
    });
  }
  await db.knex.batchInsert('usage_summaries', rows, 400); // SQLite: at most 500 terms per compound select
}

/** Every table's rows in primary-key order (plus job_locks), to compare databases. */
export async function snapshot(db: Db, skip: string[] = []): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  const tables = await discoverTables(db);
  for (const t of tables) {
    if (skip.includes(t.name)) continue;
    const q = db.knex(t.name).select('*');
    for (const k of t.primaryKey.length ? t.primaryKey : t.columns.map((c) => c.name)) q.orderBy(k);
    out[t.name] = (await q).map((r) => ({ ...r }));
  }
  out.job_locks = await db.knex('job_locks').select('*').orderBy('job');
  return out;
}

/** A long-running `billing` process whose stdout lines can be awaited. */
export interface Proc {
  child: ChildProcess;
  lines: string[];
  stderr(): string;
  waitFor(pred: (line: string) => boolean, timeoutMs?: number): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function spawnBilling(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Proc {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', ...opts.env };
  delete env.BILLING_DATABASE_URL;
  delete env.DATABASE_URL;
  delete env.BILLING_NOW;
  const child = spawn(process.execPath, [BIN, ...args], { env, cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  return track(child);
}

/** A node script (ESM, run from the repository root so it can import dist/). */
export function spawnScript(source: string, args: string[] = []): Proc {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const child = spawn(process.execPath, ['--input-type=module', '-e', source, ...args], { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
  return track(child);
}

function track(child: ChildProcess): Proc {
  const lines: string[] = [];
  const waiters: Array<{ pred: (l: string) => boolean; resolve: (l: string) => void }> = [];
  let buf = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString();
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.pred(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('close', (code, signal) => resolve({ code, signal })),
  );
  return {
    child,
    lines,
    stderr: () => err,
    exited,
    waitFor(pred, timeoutMs = 15_000) {
      const found = lines.find(pred);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`timed out waiting for a line; got:\n${lines.join('\n')}\nstderr:\n${err}`)),
          timeoutMs,
        );
        waiters.push({ pred, resolve: (l) => (clearTimeout(timer), resolve(l)) });
        void exited.then(() => {
          clearTimeout(timer);
          reject(new Error(`process exited before the line came; got:\n${lines.join('\n')}\nstderr:\n${err}`));
        });
      });
    },
  };
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Poll until cond() holds (a row another process writes, ...). */
export async function until(cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await sleep(25);
  }
}

/** JSON log lines of a daemon. */
export function events(p: Proc): Array<Record<string, any>> {
  return p.lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
}

/** A scheduler the test fires by hand: the daemon's ticks without waiting for node-cron. */
export class ManualScheduler implements Scheduler {
  private readonly tasks: Array<{ job: string; onTick: (date: Date) => void; live: boolean }> = [];

  schedule(_expression: string, _timezone: string, name: string, onTick: (date: Date) => void) {
    const task = { job: name.replace(/^billing-/, ''), onTick, live: true };
    this.tasks.push(task);
    return { destroy: () => void (task.live = false) };
  }

  /** Fire the tick at `at` for every scheduled job (or only `jobs`), in scheduling order. */
  tick(at: number, jobs?: string[]): void {
    for (const t of this.tasks) if (t.live && (!jobs || jobs.includes(t.job))) t.onTick(new Date(at));
  }
}
