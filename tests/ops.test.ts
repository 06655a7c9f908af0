import { readFileSync, writeFileSync, mkdtempSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb, freshDb, type TestDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FEB, JAN, NOW, T, seedWorld, snapshot } from './jobs-support.js';
import { runPipeline } from '../src/jobs/pipeline.js';
import { runRetention, retentionCutoff } from '../src/ops/retention.js';
import { listAudit } from '../src/ops/audit.js';
import type { Db } from '../src/storage/db.js';

const ISO_NOW = new Date(NOW).toISOString();
const tmp = () => mkdtempSync(path.join(tmpdir(), 'billing-ops-'));

/** Raw events for each tenant in January and February, then every stage run at NOW. */
async function world(db: Db): Promise<void> {
  await seedWorld(db);
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
  await db.knex.batchInsert('usage_events', rows, 100);
  // The last event is gone: the serial counter is past the highest remaining id.
  const [{ m }] = await db.knex('usage_events').max('seq as m');
  await db.knex('usage_events').where({ seq: m }).delete();
  const r = await runPipeline(db, { now: NOW, actor: 'test' });
  expect(r.ok).toBe(true);
}

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
    await world(db);
    const file = path.join(tmp(), 'full.ndjson.gz');
    const b = await runCli(['backup', '--out', file, '--json'], { db: url, now: ISO_NOW });
    expect(b.code).toBe(0);
    const summary = JSON.parse(b.stdout);
    expect(summary).toMatchObject({ scope: 'full', rows: expect.any(Number) });
    const lines = gunzipSync(readFileSync(file)).toString('utf8').trimEnd().split('\n');
    const header = JSON.parse(lines[0]);
    expect(header).toMatchObject({ format: 'billing-backup', version: 1, scope: 'full', checksum: summary.checksum });
    expect(lines.length - 1).toBe(summary.rows);
    expect(header.tables.find((x: any) => x.name === 'usage_events').count).toBe(89);
    expect(lines.some((l) => l.includes('"quantity":"999999999999999999"'))).toBe(true);

    const source = await snapshot(db);
    await withFresh(dialect, async (target) => {
      const r = await runCli(['restore', file, '--json'], { db: target.url, now: ISO_NOW });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ scope: 'full', rows: summary.rows, checksum: summary.checksum });
      expect(withoutRestoreAudit(await snapshot(target.db))).toEqual(source);
      // What operators see is byte for byte the same.
      for (const args of [['report', '--json', '--period', '2026-01'], ['report', '--json'], ['invoice', 'list', '--json']]) {
        const [a, b] = await Promise.all([runCli(args, { db: url, now: ISO_NOW }), runCli(args, { db: target.url, now: ISO_NOW })]);
        expect(a.code).toBe(0);
        expect(b.stdout).toBe(a.stdout);
      }
      expect(JSON.parse((await runCli(['invoice', 'list', '--json'], { db: target.url })).stdout)).toHaveLength(2);
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
      expect(r2.stderr).toMatch(/table usage_events has 88 rows, the header says 89/);
      const r3 = await runCli(['restore', path.join(dir, 'missing.ndjson')], { db: target.url, now: ISO_NOW });
      expect(r3.code).toBe(2);
      expect(r3.stderr).toMatch(/cannot read backup/);
      expect(await snapshot(target.db)).toEqual(before);
    });
  });
});

describeEachDb('retention', (t) => {
  it('deletes only old events that are aggregated, summarized and invoiced', async () => {
    const { db, url } = t();
    await world(db);
    const later = T('2033-06-01T00:00:00Z'); // January and February 2026 are more than 7 years back
    const hasInvoices = await db.knex.schema.hasTable('invoices');
    // Not yet aggregated: an old event ingested after the last aggregate run.
    await db.knex('usage_events').insert({ tenant_id: 'acme', idempotency_key: 'unseen', feature_key: 'OCR_SCAN', quantity: 1, occurred_at: JAN.start + 5, ingested_at: NOW + 1 });
    const before = await snapshot(db);

    const dry = await runCli(['retention', '--older-than', '7y', '--dry-run', '--json'], { db: url, now: new Date(later).toISOString() });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.cutoff).toBe('2026-06-01T00:00:00.000Z');
    expect(await snapshot(db)).toEqual(before);

    const eligible = (before.usage_events as Array<Record<string, unknown>>).filter((e) => e.idempotency_key !== 'unseen');
    const invoiced = async (e: Record<string, unknown>) =>
      !hasInvoices ||
      Boolean(
        await db.knex('invoices').where({ tenant_id: e.tenant_id }).whereNot('status', 'void')
          .where('period_start', '<=', e.occurred_at as number).where('period_end', '>', e.occurred_at as number).first(),
      );
    const expected = [];
    for (const e of eligible) if (await invoiced(e)) expected.push(e);
    expect(plan.groups.reduce((n: number, g: any) => n + g.events, 0)).toBe(expected.length);
    // January is invoiced; February (still open at the last run) is not.
    expect(expected.length).toBeGreaterThan(0);
    expect(expected.every((e) => (e.occurred_at as number) < FEB.start)).toBe(true);

    const r = await runRetention(db, { olderThan: '7y', now: later, actor: 'test' });
    expect(r.deleted).toBe(expected.length);
    const left = (await db.knex('usage_events').select('idempotency_key')).map((x) => x.idempotency_key).sort();
    const kept = (before.usage_events as Array<Record<string, string>>).filter((e) => !expected.includes(e)).map((e) => e.idempotency_key).sort();
    expect(left).toEqual(kept);
    expect(left).toContain('unseen');
    // Summaries, charges and the rest of the audit log are untouched.
    expect(await db.knex('usage_summaries').select()).toEqual(before.usage_summaries);
    if (r.deleted > 0) expect((await listAudit(db, { entity: 'usage_events' })).map((a) => a.action)).toContain('retention_delete');

    // Nothing is young enough... or old enough: a 10-year retention deletes nothing.
    expect((await runRetention(db, { olderThan: '10y', now: later, actor: 'test' })).deleted).toBe(0);
  });

  it('parses ages and refuses nonsense', () => {
    const now = T('2026-03-31T00:00:00Z');
    expect(new Date(retentionCutoff('1m', now)).toISOString()).toBe('2026-02-28T00:00:00.000Z');
    expect(new Date(retentionCutoff('7y', now)).toISOString()).toBe('2019-03-31T00:00:00.000Z');
    expect(retentionCutoff('90d', now)).toBe(now - 90 * 86_400_000);
    expect(() => retentionCutoff('0y', now)).toThrow(/positive age/);
    expect(() => retentionCutoff('seven', now)).toThrow(/positive age/);
  });
});
