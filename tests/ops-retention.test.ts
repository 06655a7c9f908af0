import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { FEB, JAN, NOW, T, opsWorld as world, snapshot } from './jobs-support.js';
import { runRetention, retentionCutoff } from '../src/ops/retention.js';
import { listAudit } from '../src/ops/audit.js';
import { runPipeline } from '../src/jobs/pipeline.js';
import { runAggregate } from '../src/aggregate/aggregate.js';
import { applyTestCatalog, insertEvents, tenant } from './aggregate-support.js';

describeEachDb('retention', (t) => {
  it('deletes only whole old periods that are aggregated, summarized and invoiced', async () => {
    const { db, url } = t();
    await world(db); // every stage ran on 10 Feb 2026: January is invoiced, February is not
    const later = T('2033-06-01T00:00:00Z'); // January and February 2026 are more than 7 years back
    // An old acme event the aggregate stage has not seen: acme's January must stay whole.
    await db.knex('usage_events').insert({ tenant_id: 'acme', idempotency_key: 'unseen', feature_key: 'OCR_SCAN', quantity: '10000000', occurred_at: JAN.start + 5, ingested_at: NOW + 1 });
    const before = await snapshot(db);
    const events = before.usage_events as Array<Record<string, any>>;
    // What may go: globex's January, every feature of it. Not acme (blocked), not February (not invoiced).
    const expected = events.filter((e) => e.tenant_id === 'globex' && Number(e.occurred_at) < FEB.start).map((e) => e.idempotency_key).sort();
    expect(expected.length).toBeGreaterThan(0);
    expect(new Set(events.filter((e) => expected.includes(e.idempotency_key)).map((e) => e.feature_key))).toEqual(new Set(['OCR_SCAN', 'STORAGE_GB']));

    const dry = await runCli(['retention', '--older-than', '7y', '--dry-run', '--json'], { db: url, now: new Date(later).toISOString() });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout);
    expect(plan.cutoff).toBe('2026-06-01T00:00:00.000Z');
    expect(plan.groups.map((g: any) => [g.tenantId, g.featureKey])).toEqual([['globex', 'OCR_SCAN'], ['globex', 'STORAGE_GB']]);
    expect(plan.groups.reduce((n: number, g: any) => n + g.events, 0)).toBe(expected.length);
    expect(await snapshot(db)).toEqual(before);

    const r = await runRetention(db, { olderThan: '7y', now: later, actor: 'test' });
    expect(r.deleted).toBe(expected.length);
    const left = (await db.knex('usage_events').select('idempotency_key')).map((x) => x.idempotency_key).sort();
    expect(left).toEqual(events.map((e) => e.idempotency_key).filter((k) => !expected.includes(k)).sort());
    // Summaries, charges, invoices and the rest of the audit log are untouched; the deletion is audited.
    const after = await snapshot(db);
    for (const table of ['usage_summaries', 'rated_charges', 'invoices', 'invoice_lines']) expect(after[table]).toEqual(before[table]);
    const audit = await listAudit(db, { entity: 'usage_events' });
    expect(audit).toMatchObject([{ tenantId: 'globex', action: 'retention_delete', after: { events: expected.length } }]);

    // A 10-year age keeps everything.
    expect((await runRetention(db, { olderThan: '10y', now: later, actor: 'test' })).deleted).toBe(0);
    // Once February is invoiced, with the stray event billed as late usage for January,
    // every event left may go.
    expect((await runPipeline(db, { now: T('2026-03-02T00:00:00Z'), actor: 'test' })).ok).toBe(true);
    expect(await db.knex('invoice_lines').where({ tenant_id: 'acme', kind: 'late_usage', period_start: JAN.start }).first()).toBeTruthy();
    expect((await runRetention(db, { olderThan: '7y', now: later, actor: 'test' })).deleted).toBe(left.length);
    expect(await db.knex('usage_events').count('* as n').first()).toMatchObject({ n: 0 });
  });

  it('keeps a unique count exact for late events after its period went past retention', async () => {
    const { db } = t();
    await applyTestCatalog(db, T('2026-01-01T00:00:00Z'));
    await tenant(db, 'acme', { planKey: 'starter', start: '2026-01-10T00:00:00Z' }); // periods from the 10th
    await insertEvents(db, ['u1', 'u2', 'u3', 'u1', 'u2'].map((user, i) => ({ tenant: 'acme', feature: 'ACTIVE_USERS', user, at: T('2026-01-12T00:00:00Z') + i })));
    await runAggregate(db, { now: T('2026-02-11T00:00:00Z'), full: true }); // PostgreSQL's full rebuild writes no value sets
    expect((await runPipeline(db, { now: T('2026-02-11T00:00:00Z'), actor: 'test' })).ok).toBe(true);
    expect((await runRetention(db, { olderThan: '7y', now: T('2033-06-01T00:00:00Z'), actor: 'test' })).deleted).toBe(5);

    // Years later, a late event of that period: u3 was counted already, u4 is new.
    await insertEvents(db, ['u3', 'u4'].map((user) => ({ tenant: 'acme', feature: 'ACTIVE_USERS', user, at: T('2026-01-20T00:00:00Z') })));
    await runAggregate(db, { now: T('2033-06-01T00:00:00Z') });
    const s = await db.knex('usage_summaries').where({ tenant_id: 'acme', feature_key: 'ACTIVE_USERS', period_start: T('2026-01-10T00:00:00Z') }).first();
    expect(Number(s.quantity)).toBe(4_000_000);
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
