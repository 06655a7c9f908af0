import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world } from './invoice-world.js';

describeEachDb('billing invoice (CLI)', (t) => {
  it('previews, generates, lists, shows, finalizes, voids and reissues from the command line', async () => {
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
    // A dry run shows no number or id it would not really use.
    expect(dry.stdout).toMatch(/^\(new\) +\(new\) +o'neil/m);
    expect(dry.stdout).not.toMatch(/INV-|in_/);
    const dryJson = JSON.parse((await runCli(['invoice', 'generate', '--dry-run', '--json'], { db: url, now: '2026-02-01T01:00:00Z' })).stdout);
    expect(dryJson).toMatchObject({ dryRun: true, created: [{ id: '(new)', number: '(new)', total: '12.50' }] });
    expect((await runCli(['invoice', 'list'], { db: url })).stdout.trim()).toBe('no invoices');

    const gen = await runCli(['invoice', 'generate'], { db: url, now: '2026-02-01T01:00:00Z', env: { INVOICE_DUE_DAYS: '14' } });
    expect(gen.code).toBe(0);
    expect(gen.stdout).toMatch(/INV-000001 .* 2026-01-01 – 2026-01-31\s+draft\s+12\.50\s+USD\s+2/);
    const listed = JSON.parse((await runCli(['invoice', 'list', '--tenant', tenant, '--status', 'draft', '--json'], { db: url })).stdout);
    expect(listed).toHaveLength(1);
    expect(listed[0]).toMatchObject({
      number: 'INV-000001', tenant, status: 'draft', currency: 'USD', subtotal: '12.50', total: '12.50',
      // DESIGN.md §13 totals: nothing discounted, taxed or credited.
      discounts: [], discountTotal: '0.00', taxes: [], taxTotal: '0.00', creditsApplied: '0.00', creditNotes: [], amountDue: '12.50',
      period: { start: '2026-01-01T00:00:00.000Z', end: '2026-02-01T00:00:00.000Z' },
      dueAt: '2026-02-15T01:00:00.000Z',
      lines: [
        expect.objectContaining({ kind: 'base_fee', amount: '10.00' }),
        expect.objectContaining({ kind: 'overage', feature: 'OCR_SCAN', quantity: '50', unitPrice: '0.05', amount: '2.50' }),
      ],
    });
    const bad = await runCli(['invoice', 'list', '--status', 'late'], { db: url });
    expect([bad.code, bad.stderr]).toEqual([2, expect.stringMatching(/unknown invoice status "late"/)]);

    const shown = await runCli(['invoice', 'show', 'inv-000001'], { db: url }); // numbers in any case
    expect(shown.stdout).toMatch(/^INV-000001 {2}draft {2}12\.50 USD/);
    expect(shown.stdout).toContain('\n  period 2026-01-01 – 2026-01-31\n'); // the last day, inclusive
    expect(shown.stdout).toMatch(/OCR scans: 150 used, 100 included, 50 billable\s+50\s+0\.05\s+2\.50/);

    expect((await runCli(['invoice', 'finalize', 'Inv-000001'], { db: url, now: '2026-02-02T00:00:00Z' })).stdout).toMatch(/INV-000001 finalized, due 2026-02-09/);
    const byId = JSON.parse((await runCli(['invoice', 'show', listed[0].id, '--json'], { db: url })).stdout);
    expect(byId.number).toBe('INV-000001');
    expect((await runCli(['invoice', 'show', listed[0].id.toUpperCase()], { db: url })).code).toBe(2); // ids are exact
    const noReason = await runCli(['invoice', 'void', 'INV-000001'], { db: url });
    expect(noReason.code).toBe(2);

    const voided = await runCli(['invoice', 'void', 'INV-000001', '--reason', 'duplicate customer', '--json'], { db: url, now: '2026-02-03T00:00:00Z' });
    expect(JSON.parse(voided.stdout)).toMatchObject({ changed: true, invoice: { status: 'void', voidReason: 'duplicate customer' } });
    const regen = JSON.parse((await runCli(['invoice', 'generate', '--finalize', '--json'], { db: url, now: '2026-02-03T01:00:00Z' })).stdout);
    expect(regen.created).toMatchObject([{ number: 'INV-000002', status: 'open', total: '12.50' }]);
    const note = await runCli(['credit-note', 'create', 'inv-000002', '--amount', '1.00', '--reason', 'goodwill'], { db: url, now: '2026-02-04T00:00:00Z' });
    expect(note.stdout).toMatch(/^CN-000001 {2}INV-000002 {2}1\.00 USD/);
    const missing = await runCli(['invoice', 'show', 'INV-999999'], { db: url });
    expect([missing.code, missing.stderr.trim()]).toEqual([2, 'billing: no invoice "INV-999999"; list them with `billing invoice list`']);
    expect((await runCli(['verify'], { db: url })).code).toBe(0);
  });
});
