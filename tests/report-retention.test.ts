import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { NOW, opsWorld as world } from './jobs-support.js';
import { dec, ZERO } from '../src/domain/decimal.js';

const ISO_NOW = new Date(NOW).toISOString();

describeEachDb('reports after retention', (t) => {
  it('history and report --period show what was billed for periods whose raw events are gone', async () => {
    const { db, url } = t();
    await world(db); // every stage ran on 10 Feb 2026: January is summarized and invoiced
    const views = [
      ['history', 'acme', '--limit', '3', '--json'],
      ['history', 'globex', '--limit', '3', '--json'],
      ['history', 'globex', '--limit', '3'],
      ['report', '--period', '2026-01', '--json'],
      ['report', '--period', '2026-01', '--format', 'csv'],
      ['report', '--tenant', 'acme', '--period', 'previous'],
    ];
    const read = () => Promise.all(views.map((args) => runCli(args, { db: url, now: ISO_NOW })));
    const before = await read();
    for (const r of before) expect(r.code).toBe(0);
    const jan = JSON.parse(before[3].stdout) as Array<{ tenantId: string; features: Array<{ used: string; overageAmount: string }>; totalOverageAmount: string }>;
    expect(jan.map((r) => r.tenantId)).toEqual(['acme', 'globex']);
    for (const r of jan) expect(r.features.some((f) => f.used !== '0')).toBe(true);
    expect(jan.some((r) => r.totalOverageAmount !== '0.00')).toBe(true);

    const janEvents = () => db.knex('usage_events').where('occurred_at', '<', Date.parse('2026-02-01T00:00:00Z')).count('* as n').first();
    expect(Number((await janEvents())?.n)).toBeGreaterThan(0);
    const gone = await runCli(['retention', '--older-than', '1d', '--json'], { db: url, now: ISO_NOW });
    expect(gone.code).toBe(0);
    expect(JSON.parse(gone.stdout).deleted).toBeGreaterThan(0);
    expect(Number((await janEvents())?.n)).toBe(0);

    const after = await read();
    for (const [i, r] of after.entries()) {
      expect(r.stderr).toBe('');
      expect(r.stdout, views[i].join(' ')).toBe(before[i].stdout);
    }
    // What January shows is what its invoices billed for usage.
    for (const r of jan) {
      const billed = await db.knex('invoice_lines').where({ tenant_id: r.tenantId, kind: 'overage', period_start: Date.parse('2026-01-01T00:00:00Z') }).select('amount');
      const sum = billed.reduce((n, l) => n.plus(dec(String(l.amount))), ZERO);
      expect(dec(r.totalOverageAmount).eq(sum)).toBe(true);
    }
  });
});
