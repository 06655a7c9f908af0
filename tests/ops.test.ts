import { readFileSync, writeFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb, freshDb, type TestDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { FEB, NOW, opsWorld as world, snapshot } from './jobs-support.js';
import { listAudit } from '../src/ops/audit.js';
import type { Db } from '../src/storage/db.js';
import { RESTORED_CUT } from '../src/ops/restore.js';
import { runAggregate } from '../src/aggregate/aggregate.js';

const ISO_NOW = new Date(NOW).toISOString();
const tmp = () => tempDir('billing-ops-');

async function withFresh<T>(dialect: TestDb['dialect'], fn: (t: TestDb) => Promise<T>): Promise<T> {
  const t = await freshDb(dialect);
  try {
    return await fn(t);
  } finally {
    await t.cleanup();
  }
}

/** The restore appends its own audit entry; everything else must match exactly. */
function withoutRestoreAudit(s: Record<string, unknown[]>) {
  return { ...s, audit_log: (s.audit_log as Array<{ entity: string }>).filter((a) => a.entity !== 'backup') };
}

describeEachDb('backup and restore', (t) => {
  it('a full backup restored into a fresh database reproduces every table, id and counter', async () => {
    const { db, url, dialect } = t();
    await world(db, { commercial: true });
    const file = path.join(tmp(), 'full.ndjson.gz');
    const b = await runCli(['backup', '--out', file, '--json'], { db: url, now: ISO_NOW });
    expect(b.code).toBe(0);
    const summary = JSON.parse(b.stdout);
    expect(summary).toMatchObject({ scope: 'full', rows: expect.any(Number) });
    const lines = gunzipSync(readFileSync(file)).toString('utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]);
    expect(header).toMatchObject({ format: 'billing-backup', version: 2, scope: 'full', checksum: summary.checksum });
    expect(lines.length - 1).toBe(summary.rows);
    expect(header.tables.find((x: any) => x.name === 'usage_events').count).toBe(2189);
    expect(lines.some((l) => l.includes('"quantity":"999999999999999999"'))).toBe(true);
    // A row of every DESIGN.md §13 kind is in it (the snapshot comparison below checks them all).
    const counts = Object.fromEntries(header.tables.map((x: { name: string; count: number }) => [x.name, x.count]));
    expect(counts).toMatchObject({
      default_tax_rates: 1, coupons: 1, tenant_tax_rates: 1, discounts: 1, discount_uses: 1, credit_grants: 2, credit_uses: 1, credit_notes: 2,
    });

    const source = await snapshot(db);
    await withFresh(dialect, async (target) => {
      const r = await runCli(['restore', file, '--json'], { db: target.url, now: ISO_NOW });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ scope: 'full', rows: summary.rows, checksum: summary.checksum });
      expect(withoutRestoreAudit(await snapshot(target.db))).toEqual(source);
      // What operators see is byte for byte the same.
      for (const [args, n] of [[['report', '--json', '--period', '2026-01'], 2], [['invoice', 'list', '--json'], 2]] as const) {
        const [a, b] = await Promise.all([runCli([...args], { db: url, now: ISO_NOW }), runCli([...args], { db: target.url, now: ISO_NOW })]);
        expect(a.code).toBe(0);
        expect(JSON.parse(a.stdout)).toHaveLength(n);
        expect(b.stdout).toBe(a.stdout);
      }
      for (const args of [['credit-note', 'list'], ['credit', 'list', 'globex'], ['credit', 'balance', 'globex'], ['tax', 'show', 'acme'], ['tax', 'show', 'globex'], ['discount', 'list', 'acme'], ['invoice', 'show', 'INV-000001']]) {
        const [a, b] = await Promise.all([runCli([...args, '--json'], { db: url, now: ISO_NOW }), runCli([...args, '--json'], { db: target.url, now: ISO_NOW })]);
        expect([a.code, a.stderr]).toEqual([0, '']);
        expect(b.stdout).toBe(a.stdout);
      }
      const verified = await runCli(['verify'], { db: target.url, now: ISO_NOW });
      expect([verified.code, verified.stdout]).toEqual([0, expect.stringMatching(/^ok: 2 invoice\(s\)/)]);
      const [restored] = await listAudit(target.db, { entity: 'backup' });
      expect(restored).toMatchObject({ action: 'restore', entityId: summary.checksum });

      // The serial counters continue where the source's would have (past the deleted event).
      const next = async (d: Db) => {
        await d.knex('usage_events').insert({ tenant_id: 'acme', idempotency_key: 'after', feature_key: 'OCR_SCAN', quantity: 1, occurred_at: NOW, ingested_at: NOW });
        return Number((await d.knex('usage_events').where({ idempotency_key: 'after' }).first()).seq);
      };
      expect(await next(target.db)).toBe(await next(db));

      // A second full restore is refused: the database is no longer empty.
      const again = await runCli(['restore', file], { db: target.url, now: ISO_NOW });
      expect(again.code).toBe(1);
      expect(again.stderr).toMatch(/database is not empty \(tenants has rows\)/);
    });
  });

  it('a tenant restore replaces only that tenant, keeping later audit entries', async () => {
    const { db, url } = t();
    await world(db);
    const file = path.join(tmp(), 'acme.ndjson');
    const b = await runCli(['backup', '--tenant', 'acme', '--out', file], { db: url, now: ISO_NOW });
    expect(b.code).toBe(0);
    expect(b.stdout).toMatch(/wrote \d+ row\(s\) to .*acme\.ndjson \(tenant acme/);
    const body = readFileSync(file, 'utf8').trimEnd().split('\n').slice(1);
    expect(body.every((l) => /"(tenant_id|id)":"acme"/.test(l))).toBe(true);
    expect(body.some((l) => l.startsWith('{"t":"features"'))).toBe(false);
    const before = await snapshot(db);

    // Both tenants change after the backup.
    await db.knex('usage_events').where({ tenant_id: 'acme' }).where('occurred_at', '>=', FEB.start).delete();
    await db.knex('usage_events').insert({ tenant_id: 'globex', idempotency_key: 'late', feature_key: 'OCR_SCAN', quantity: 5, occurred_at: NOW, ingested_at: NOW });
    await db.knex('audit_log').insert({ at: NOW, actor: 'ops', tenant_id: 'acme', entity: 'tenant', entity_id: 'acme', action: 'note' });
    const changed = await snapshot(db);

    const r = await runCli(['restore', file, '--json'], { db: url, now: ISO_NOW });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ scope: 'tenant', tenant: 'acme' });
    const after = await snapshot(db);
    const only = (s: Record<string, unknown[]>, tenant: string, table: string, col = 'tenant_id') =>
      (s[table] as Array<Record<string, unknown>>).filter((row) => row[col] === tenant);
    for (const table of ['usage_events', 'usage_summaries', 'rated_charges', 'subscriptions', 'subscription_segments']) {
      expect(only(after, 'acme', table)).toEqual(only(before, 'acme', table));
      expect(only(after, 'globex', table)).toEqual(only(changed, 'globex', table));
    }
    expect(after.features).toEqual(before.features);
    // The audit log is append-only: the note written after the backup is still there.
    expect(only(after, 'acme', 'audit_log').map((a: any) => a.action)).toEqual([
      ...only(changed, 'acme', 'audit_log').map((a: any) => a.action),
      'restore_tenant',
    ]);

    // Its summaries were cut against the backup's watermark: the next run rebuilds the tenant
    // from its events, and no other.
    expect(await db.knex('aggregate_tenants').where({ tenant_id: 'acme' }).first()).toMatchObject({ windows_key: RESTORED_CUT });
    await db.knex('usage_summaries').where({ tenant_id: 'acme' }).update({ quantity: 0 });
    await runAggregate(db, { now: NOW });
    const rebuilt = await snapshot(db);
    expect(only(rebuilt, 'acme', 'usage_summaries').map((r: any) => [r.feature_key, r.period_start, r.quantity])).toEqual(
      only(before, 'acme', 'usage_summaries').map((r: any) => [r.feature_key, r.period_start, r.quantity]),
    );
    expect((await db.knex('aggregate_tenants').where({ tenant_id: 'acme' }).first())?.windows_key).not.toBe(RESTORED_CUT);
  });

  it('verifies the whole file before writing anything', async () => {
    const { db, url } = t();
    await world(db);
    const dir = tmp();
    const file = path.join(dir, 'full.ndjson');
    expect((await runCli(['backup', '--out', file], { db: url, now: ISO_NOW })).code).toBe(0);
    const lines = readFileSync(file, 'utf8').split('\n');
    const idx = lines.findIndex((l) => l.startsWith('{"t":"usage_events"'));

    const tampered = path.join(dir, 'tampered.ndjson');
    writeFileSync(tampered, lines.map((l, i) => (i === idx ? l.replace('"quantity":"', '"quantity":"1') : l)).join('\n'));
    const truncated = path.join(dir, 'truncated.ndjson');
    writeFileSync(truncated, lines.filter((_, i) => i !== idx).join('\n'));

    await withFresh(t().dialect, async (target) => {
      const before = await snapshot(target.db);
      const r1 = await runCli(['restore', tampered], { db: target.url, now: ISO_NOW });
      expect(r1.code).toBe(2);
      expect(r1.stderr).toMatch(/is not usable: checksum mismatch .*; nothing was restored/);
      const r2 = await runCli(['restore', truncated], { db: target.url, now: ISO_NOW });
      expect(r2.code).toBe(2);
      expect(r2.stderr).toMatch(/table usage_events has 2188 rows, the header says 2189/);
      const r3 = await runCli(['restore', path.join(dir, 'missing.ndjson')], { db: target.url, now: ISO_NOW });
      expect(r3.code).toBe(2);
      expect(r3.stderr).toMatch(/cannot read backup/);
      expect(await snapshot(target.db)).toEqual(before);
    });
  });
});
