import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world, T } from './invoice-world.js';
import { finalizeInvoice } from '../src/invoice/lifecycle.js';

describeEachDb('billing invoice export', (t) => {
  it('exports JSON, formula-safe CSV and escaped, self-contained HTML', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z');
    const tenant = `o'neil&<co>"`;
    await w.tenant('2026-01-01T00:00:00Z', tenant);
    await w.subscribe('2026-01-01T00:00:00Z', tenant, 'basic');
    await w.usage('2026-01-10T00:00:00Z', tenant, 'OCR_SCAN', '150');
    await w.generate('2026-02-01T01:00:00Z');
    await finalizeInvoice(db, 'INV-000001', { now: T('2026-02-02T00:00:00Z'), actor: 'test' });

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
  });
});
