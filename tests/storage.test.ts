import { describe, expect, it } from 'vitest';
import { describeEachDb, freshDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { asText } from '../src/storage/sql.js';
import { parseDbUrl, redactUrl } from '../src/storage/url.js';

describeEachDb('storage', (t) => {
  it('migrates a fresh database and reports status', async () => {
    const { db, url } = t();
    const tables = ['features', 'plans', 'plan_versions', 'plan_features', 'tenants', 'subscriptions',
      'subscription_segments', 'quota_overrides', 'usage_events', 'ingest_runs', 'audit_log'];
    for (const table of tables) expect(await db.knex.schema.hasTable(table)).toBe(true);
    const r = await runCli(['migrate', 'status', '--json'], { db: url });
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout);
    expect(status.pending).toEqual([]);
    expect(status.applied.length).toBeGreaterThan(0);
  });

  it('keeps large integer sums exact beyond 2^53', async () => {
    const { db } = t();
    const rows = [
      { tenant_id: 'a', idempotency_key: 'k1', feature_key: 'F', quantity: '999999999999999999', occurred_at: 1, ingested_at: 1 },
      { tenant_id: 'a', idempotency_key: 'k2', feature_key: 'F', quantity: '1', occurred_at: 1, ingested_at: 1 },
    ];
    await db.knex('usage_events').insert(rows);
    const [r] = await db.knex('usage_events').select(asText(db, 'SUM(quantity)').wrap('(', ') as total'));
    expect(r.total).toBe('1000000000000000000');
  });
});

describe('database URLs', () => {
  it('parses sqlite and postgres URLs and redacts passwords', () => {
    expect(parseDbUrl('sqlite:./x.db')).toMatchObject({ dialect: 'sqlite', filename: './x.db' });
    expect(parseDbUrl('postgres://u:secret@h:5432/db?schema=s1')).toMatchObject({ dialect: 'pg', schema: 's1' });
    expect(redactUrl('postgres://u:secret@h/db')).toBe('postgres://u:***@h/db');
    expect(() => parseDbUrl('mysql://x')).toThrow(/unsupported database URL/);
  });

  it('tells the operator to migrate a PostgreSQL database with pending migrations', async ({ skip }) => {
    const { isPgReachable, PG_URL } = await import('./helpers/db.js');
    // Reported as skipped, not passed, when there is no PostgreSQL to ask.
    if (!(await isPgReachable())) skip();
    const schema = `t_unmigrated_${Date.now()}`;
    const r = await runCli(['migrate', 'status'], { db: `${PG_URL}?schema=${schema}` });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/pending/);
    // any command that needs the schema must refuse with the hint
    const { openDb } = await import('../src/storage/db.js');
    await expect(openDb(`${PG_URL}?schema=${schema}`)).rejects.toThrow(/run `billing migrate`/);
    const admin = await openDb(`${PG_URL}?schema=${schema}`, 'none');
    await admin.knex.raw('drop schema if exists ?? cascade', [schema]);
    await admin.close();
  });

  it('names an unreachable database without its password', async () => {
    const r = await runCli(['migrate', 'status'], { db: 'postgres://u:hunter2@127.0.0.1:1/nope' });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot open database postgres:\/\/u:\*\*\*@127\.0\.0\.1:1\/nope/);
    expect(r.stderr).not.toMatch(/hunter2/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
  });
  void freshDb;
});
