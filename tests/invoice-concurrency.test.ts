import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world } from './invoice-world.js';

describeEachDb('billing invoice generate (concurrent processes)', (t) => {
  it('two generate processes at once produce exactly one invoice per subscription period', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    const tenants = Array.from({ length: 15 }, (_, i) => `t${i + 1}`);
    for (const id of tenants) {
      await w.tenant('2026-01-01T00:00:00Z', id);
      await w.subscribe('2026-01-01T00:00:00Z', id, id === 't3' ? 'pro' : 'basic');
      await w.usage('2026-01-05T00:00:00Z', id, 'OCR_SCAN', '120');
      await w.usage('2026-02-05T00:00:00Z', id, 'OCR_SCAN', '130');
    }
    const args = ['invoice', 'generate', '--json'];
    const [a, b] = await Promise.all([
      runCli(args, { db: url, now: '2026-04-01T01:00:00Z' }),
      runCli(args, { db: url, now: '2026-04-01T01:00:00Z' }),
    ]);
    expect([a.code, b.code, a.stderr, b.stderr]).toEqual([0, 0, '', '']);
    const created = [...JSON.parse(a.stdout).created, ...JSON.parse(b.stdout).created];
    expect(created).toHaveLength(tenants.length * 3);
    const rows = await db.knex('invoices').select('tenant_id', 'subscription_id', 'period_start', 'number');
    expect(rows).toHaveLength(tenants.length * 3);
    expect(new Set(rows.map((r) => `${r.subscription_id}|${r.period_start}`)).size).toBe(tenants.length * 3);
    expect(rows.map((r) => r.number).sort()).toEqual(Array.from({ length: tenants.length * 3 }, (_, i) => `INV-${String(i + 1).padStart(6, '0')}`));
    const v = await runCli(['verify'], { db: url });
    expect([v.code, v.stdout]).toEqual([0, expect.stringMatching(/^ok: 45 invoice/)]);
  });
});
