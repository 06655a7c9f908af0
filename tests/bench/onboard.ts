import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyCatalog } from '../../src/catalog/apply.js';
import { importTenants, type ImportRecord } from '../../src/subscriptions/import.js';
import { arg, target } from './ops.js';

/**
 * `billing tenant import` of N tenants, each subscribed, against the floor: the rows it writes
 * (tenants, subscriptions, segments, audit) inserted by bare multi-row INSERTs in one
 * transaction. `npm run bench -- onboard [--tenants N]`; BILLING_BENCH_PG_URL adds PostgreSQL.
 */
const NOW = Date.UTC(2026, 1, 1);
const CATALOG: unknown = JSON.parse(readFileSync(path.resolve('seeds/catalog.json'), 'utf8'));

async function bench(kind: 'sqlite' | 'pg', n: number, dir: string): Promise<void> {
  const records: ImportRecord[] = Array.from({ length: n }, (_, i) => ({
    line: i + 2,
    fields: { id: `tn${i}`, name: `Tenant ${i}`, plan: 'starter', start: '2026-01-15T00:00:00Z' },
  }));
  const real = await target(kind, dir, 'import');
  const floor = await target(kind, dir, 'floor');
  try {
    await applyCatalog(real.db, CATALOG, { now: NOW, actor: 'bench' });
    const t0 = performance.now();
    const result = await importTenants(real.db, records, { now: NOW, actor: 'bench' });
    const importMs = performance.now() - t0;
    if (result.created !== n || result.rejected.length > 0) throw new Error(`import did not create ${n} tenants: ${JSON.stringify(result).slice(0, 300)}`);
    const t1 = performance.now();
    const again = await importTenants(real.db, records, { now: NOW, actor: 'bench' });
    const rerunMs = performance.now() - t1;
    if (again.unchanged !== n) throw new Error('the rerun was not a no-op');

    // The floor: the very rows the import wrote, copied out and inserted bare.
    const tables = ['tenants', 'subscriptions', 'subscription_segments', 'audit_log'] as const;
    const rows = new Map<string, Record<string, unknown>[]>();
    // audit_log's id is the database's sequence; the other tables' keys are copied.
    for (const t of tables) rows.set(t, (await real.db.knex(t).select('*')).map(({ id, ...r }) => (t === 'audit_log' ? r : { ...r, ...(id === undefined ? {} : { id }) })));
    await applyCatalog(floor.db, CATALOG, { now: NOW, actor: 'bench' });
    await floor.db.knex('audit_log').delete();
    const t2 = performance.now();
    await floor.db.tx(async (tx) => {
      for (const t of tables) {
        const list = rows.get(t)!.filter((r) => t !== 'audit_log' || r.entity !== 'catalog');
        for (let i = 0; i < list.length; i += 200) await tx.knex(t).insert(list.slice(i, i + 200));
      }
    });
    const floorMs = performance.now() - t2;
    console.log(
      `${kind}: import of ${n} subscribed tenants ${Math.round(importMs)} ms (${(importMs / floorMs).toFixed(1)}× the floor), ` +
        `rerun (all unchanged) ${Math.round(rerunMs)} ms; floor (bare INSERTs of the same rows, one transaction) ${Math.round(floorMs)} ms`,
    );
  } finally {
    await real.drop();
    await floor.drop();
  }
}

export async function run(args: string[]): Promise<void> {
  const n = arg(args, '--tenants', 2000);
  const dir = mkdtempSync(path.join(tmpdir(), 'bench-onboard-'));
  try {
    await bench('sqlite', n, dir);
    if (process.env.BILLING_BENCH_PG_URL) await bench('pg', n, dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
