import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FEB, JAN, NOW, T, opsWorld as world, snapshot } from './jobs-support.js';
import { runRetention, retentionCutoff } from '../src/ops/retention.js';
import { listAudit } from '../src/ops/audit.js';

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
    const expected: Array<Record<string, unknown>> = [];
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
    expect((await snapshot(db)).usage_summaries).toEqual(before.usage_summaries);
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
