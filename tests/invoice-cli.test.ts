import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world } from './invoice-world.js';

describeEachDb('billing invoice (CLI)', (t) => {
  it('two generate processes at once produce exactly one invoice per subscription period', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    const tenants = ['t1', 't2', 't3', 't4', 't5', 't6'];
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
    expect(rows.map((r) => r.number).sort()).toEqual(Array.from({ length: 18 }, (_, i) => `INV-${String(i + 1).padStart(6, '0')}`));
    const v = await runCli(['verify'], { db: url });
    expect([v.code, v.stdout]).toEqual([0, expect.stringMatching(/^ok: 18 invoice/)]);
  });

  it('generates, lists, shows, finalizes, voids and exports from the command line', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    const tenant = `o'neil&<co>"`;
    await w.tenant('2026-01-01T00:00:00Z', tenant);
    await w.subscribe('2026-01-01T00:00:00Z', tenant, 'basic');
    await w.usage('2026-01-10T00:00:00Z', tenant, 'OCR_SCAN', '150');

    const preview = await runCli(['invoice', 'preview', tenant, '--json'], { db: url, now: '2026-01-20T00:00:00Z' });
    expect(JSON.parse(preview.stdout)).toMatchObject({ number: 'PREVIEW', total: '12.50' });
    const dry = await runCli(['invoice', 'generate', '--dry-run'], { db: url, now: '2026-02-01T01:00:00Z' });
    expect(dry.stdout).toMatch(/would create 1 invoice\(s\)/);
    expect((await runCli(['invoice', 'list'], { db: url })).stdout.trim()).toBe('no invoices');

    const gen = await runCli(['invoice', 'generate'], { db: url, now: '2026-02-01T01:00:00Z', env: { INVOICE_DUE_DAYS: '14' } });
    expect(gen.code).toBe(0);
    expect(gen.stdout).toMatch(/INV-000001 .* 2026-01-01 to 2026-02-01\s+draft\s+12\.50\s+USD\s+2/);
    const listed = JSON.parse((await runCli(['invoice', 'list', '--tenant', tenant, '--status', 'draft', '--json'], { db: url })).stdout);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({
      number: 'INV-000001', tenant, status: 'draft', currency: 'USD', subtotal: '12.50', total: '12.50',
      period: { start: '2026-01-01T00:00:00.000Z', end: '2026-02-01T00:00:00.000Z' },
      dueAt: '2026-02-15T01:00:00.000Z',
      lines: [
        expect.objectContaining({ kind: 'base_fee', amount: '10.00' }),
        expect.objectContaining({ kind: 'overage', feature: 'OCR_SCAN', quantity: '50', unitPrice: '0.05', amount: '2.50' }),
      ],
    });
    const bad = await runCli(['invoice', 'list', '--status', 'late'], { db: url });
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/unknown invoice status "late"/)]);

    const shown = await runCli(['invoice', 'show', 'INV-000001'], { db: url });
    expect(shown.stdout).toMatch(/^INV-000001 {2}draft {2}12\.50 USD/);
    expect(shown.stdout).toMatch(/OCR scans: 150 used, 100 included, 50 billable\s+50\s+0\.05\s+2\.50/);

    expect((await runCli(['invoice', 'finalize', 'INV-000001'], { db: url, now: '2026-02-02T00:00:00Z' })).stdout).toMatch(/INV-000001 finalized, due 2026-02-09/);
    const noReason = await runCli(['invoice', 'void', 'INV-000001'], { db: url });
    expect(noReason.code).toBe(2);

    const dir = mkdtempSync(path.join(tmpdir(), 'billing-export-'));
    try {
      const out = path.join(dir, 'inv.html');
      const exp = await runCli(['invoice', 'export', 'INV-000001', '--format', 'html', '--out', out], { db: url });
      expect(exp.stdout).toMatch(/wrote INV-000001 as html/);
      const html = readFileSync(out, 'utf8');
      expect(html).toContain('o&#39;neil&amp;&lt;co&gt;&quot;');
      expect(html).not.toContain(tenant);
      expect(html).toMatch(/<td class="num">12\.50 USD<\/td>/);
      const csv = await runCli(['invoice', 'export', 'INV-000001', '--format', 'csv'], { db: url });
      expect(csv.stdout.split('\n')[1]).toBe(`INV-000001,"o'neil&<co>""",open,USD,1,base_fee,,Basic base fee,2026-01-01T00:00:00.000Z,2026-02-01T00:00:00.000Z,1,10.00,10.00`);
      const json = JSON.parse((await runCli(['invoice', 'export', 'INV-000001'], { db: url })).stdout);
      expect(json).toMatchObject({ number: 'INV-000001', status: 'open', total: '12.50' });
      const pdf = await runCli(['invoice', 'export', 'INV-000001', '--format', 'pdf'], { db: url });
      expect(pdf.code).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    const voided = await runCli(['invoice', 'void', 'INV-000001', '--reason', 'duplicate customer', '--json'], { db: url, now: '2026-02-03T00:00:00Z' });
    expect(JSON.parse(voided.stdout)).toMatchObject({ changed: true, invoice: { status: 'void', voidReason: 'duplicate customer' } });
    const regen = JSON.parse((await runCli(['invoice', 'generate', '--finalize', '--json'], { db: url, now: '2026-02-03T01:00:00Z' })).stdout);
    expect(regen.created).toMatchObject([{ number: 'INV-000002', status: 'open', total: '12.50' }]);
    const missing = await runCli(['invoice', 'show', 'INV-999999'], { db: url });
    expect([missing.code, missing.stderr.trim()]).toEqual([2, 'billing: no invoice "INV-999999"; list them with `billing invoice list`']);
    expect((await runCli(['verify'], { db: url })).code).toBe(0);
  });
});
