import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { NOW, ingestText } from './ingest-support.js';
import { T, world } from './invoice-world.js';
import type { Db } from '../src/storage/db.js';

/** t1, created 2026-06-01: with the default 400 days of backfill, events from 2025-04-27 on. */
async function seedTenant(db: Db): Promise<void> {
  await db.knex('tenants').insert({ id: 't1', created_at: T('2026-06-01T00:00:00Z') });
  await db.knex('features').insert({ key: 'API_CALL', name: 'API', type: 'metered', aggregation: 'sum', created_at: 0, updated_at: 0 });
}

describeEachDb('event times', (t) => {
  it('refuses impossible dates and times outside the window in CSV, NDJSON and CloudEvents', async () => {
    const { db } = t();
    await seedTenant(db);
    const csvTimes = [
      '2026-02-30T10:00:00Z', '2026-04-31T00:00:00Z', '2026-02-29', '2026-01-01T25:00:00Z', '2026-01-01T24:00:00Z',
      '2026-01-01T10:00:00+24:00', '-8640000000000001', '0000-01-01T00:00:00Z', '1900-01-01T00:00:00Z', '2025-01-01T00:00:00Z',
      '2025-06-01T00:00:00Z', '2026-02-28T23:59:59Z', '2026-03-01',
    ];
    const csv = ['tenant_id,feature,occurred_at,event_id', ...csvTimes.map((time, i) => `t1,API_CALL,${time},c${i}`)].join('\n');
    const s = await ingestText(db, 'u.csv', csv, { maxMessages: 20 });
    const notReal = 'is not a real date and time (no such day, hour, minute or offset)';
    expect(s.messages).toEqual([
      `u.csv:2: occurred_at: "2026-02-30T10:00:00Z" ${notReal}`,
      `u.csv:3: occurred_at: "2026-04-31T00:00:00Z" ${notReal}`,
      `u.csv:4: occurred_at: "2026-02-29" ${notReal}`,
      `u.csv:5: occurred_at: "2026-01-01T25:00:00Z" ${notReal}`,
      `u.csv:6: occurred_at: "2026-01-01T24:00:00Z" ${notReal}`,
      `u.csv:7: occurred_at: "2026-01-01T10:00:00+24:00" ${notReal}`,
      'u.csv:8: occurred_at: "-8640000000000001" is outside the range of dates',
      'u.csv:9: occurred_at: "0000-01-01T00:00:00Z" is outside 1970-01-01..9999-12-31',
      'u.csv:10: occurred_at: "1900-01-01T00:00:00Z" is outside 1970-01-01..9999-12-31',
      'u.csv:11: occurred_at: "2025-01-01T00:00:00Z" is before 2025-04-27T00:00:00.000Z, 400 days before the tenant was created (BILLING_BACKFILL_DAYS)',
    ]);
    expect(s).toMatchObject({ inserted: 3, rejected: 10 });

    const lines = [
      { tenant_id: 't1', feature: 'API_CALL', id: 'n1', time: -1e17 },
      { tenant_id: 't1', feature: 'API_CALL', id: 'n2', time: -8640000000000001 },
      { tenant_id: 't1', feature: 'API_CALL', id: 'n3', time: 1e17 },
      { specversion: '1.0', id: 'ce1', source: 's', type: 'API_CALL', subject: 't1', time: '2026-02-30T10:00:00Z', data: {} },
      { specversion: '1.0', id: 'ce2', source: 's', type: 'API_CALL', subject: 't1', time: '2026-02-28T10:00:00Z', data: {} },
    ];
    const j = await ingestText(db, 'e.ndjson', lines.map((l) => JSON.stringify(l)).join('\n'));
    expect(j.messages).toEqual([
      'e.ndjson:1: time: "-100000000000000000" is outside the range of dates',
      'e.ndjson:2: time: "-8640000000000001" is outside the range of dates',
      'e.ndjson:3: time: "100000000000000000" is outside the range of dates',
      `e.ndjson:4: time: "2026-02-30T10:00:00Z" ${notReal}`,
    ]);
    expect(j).toMatchObject({ inserted: 1, rejected: 4 });

    // A longer backfill allowance lets older events in.
    const older = await ingestText(db, 'u.csv', csv, { backfillDays: 800 });
    expect(older).toMatchObject({ inserted: 1, duplicates: 3, rejected: 9 });
  });

  it('billing record --time applies the same window; BILLING_BACKFILL_DAYS widens it', async () => {
    const { db, url } = t();
    await seedTenant(db);
    const rec = (time: string, env: NodeJS.ProcessEnv = {}) =>
      runCli(['record', '--tenant', 't1', '--feature', 'API_CALL', `--time=${time}`, '--event-id', time], { db: url, now: NOW, env });
    const min = await rec('-8640000000000001');
    expect([min.code, min.stdout]).toEqual([3, 'rejected: occurredAt: "-8640000000000001" is outside the range of dates\n']);
    const feb30 = await rec('2026-02-30T10:00:00Z');
    expect([feb30.code, feb30.stdout]).toEqual([3, 'rejected: occurredAt: "2026-02-30T10:00:00Z" is not a real date and time (no such day, hour, minute or offset)\n']);
    const old = await rec('2025-01-01T00:00:00Z');
    expect(old.code).toBe(3);
    expect(old.stdout).toMatch(/^rejected: occurredAt: "2025-01-01T00:00:00Z" is before 2025-04-27/);
    const wider = await rec('2025-01-01T00:00:00Z', { BILLING_BACKFILL_DAYS: '800' });
    expect([wider.code, wider.stdout]).toEqual([0, 'inserted (key e:2025-01-01T00:00:00Z)\n']);
    const bad = await rec('2025-01-01T00:00:00Z', { BILLING_BACKFILL_DAYS: 'lots' });
    expect([bad.code, bad.stderr]).toEqual([2, 'billing: BILLING_BACKFILL_DAYS "lots" must be a whole number of days\n']);
  });

  it('an event stored outside every period (before this check existed) stops no billing run', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    for (const id of ['good', 'bad']) {
      await w.tenant('2026-01-01T00:00:00Z', id);
      await w.subscribe('2026-01-01T00:00:00Z', id, 'basic');
    }
    await w.usage('2026-01-10T00:00:00Z', 'good', 'OCR_SCAN', '150');
    await w.usage('2026-01-10T00:00:00Z', 'bad', 'OCR_SCAN', '150');
    // What ingest accepted before it checked the range: the smallest epoch and year 0000.
    const row = (key: string, occurred: number) => ({
      tenant_id: 'bad', idempotency_key: key, feature_key: 'OCR_SCAN', quantity: '1000000', occurred_at: occurred, ingested_at: T('2026-01-10T00:00:00Z'),
    });
    await db.knex('usage_events').insert([row('e:min', -8640000000000001), row('e:y0', Date.parse('0000-01-01T00:00:00Z'))]);

    const now = '2026-01-20T00:00:00Z';
    const warning = 'warning: tenant bad: skipped 2 event(s) dated outside 1970-01-01..9999-12-31 and counted in no period; delete or fix them\n';
    for (const args of [['aggregate'], ['aggregate', '--full']]) {
      const r = await runCli(args, { db: url, now });
      expect([args.join(' '), r.code, r.stderr]).toEqual([args.join(' '), 0, warning]);
    }
    for (const tenant of ['good', 'bad']) {
      const r = await runCli(['invoice', 'preview', tenant, '--json'], { db: url, now });
      expect([tenant, r.code, r.stderr]).toEqual([tenant, 0, '']);
      expect(JSON.parse(r.stdout)).toMatchObject({ total: '12.50' });
    }
    const gen = await runCli(['invoice', 'generate', '--json'], { db: url, now: '2026-02-01T01:00:00Z' });
    expect([gen.code, gen.stderr]).toEqual([0, expect.any(String)]);
    const created = JSON.parse(gen.stdout).created as Array<{ tenant: string; total: string }>;
    expect(created.map((i) => [i.tenant, i.total]).sort()).toEqual([['bad', '12.50'], ['good', '12.50']]);
  });
});
