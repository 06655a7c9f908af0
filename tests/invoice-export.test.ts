import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world, T } from './invoice-world.js';
import { finalizeInvoice } from '../src/invoice/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { sellerDetails } from '../src/invoice/seller.js';
import { htmlPeriod } from '../src/invoice/export.js';

const SELLER_ENV = {
  BILLING_SELLER_NAME: 'Meter & Co <GmbH>',
  BILLING_SELLER_ADDRESS: '1 Main St|10115 Berlin',
  BILLING_SELLER_EMAIL: 'billing@meter.example',
  BILLING_SELLER_TAX_ID: 'DE123456789',
};

/** Three pricing models on one plan, and a feature whose usage stays within its allowance. */
const modelsCatalog = {
  features: [
    { key: 'OCR_SCAN', name: 'OCR scans', unit: 'scan', aggregation: 'sum' },
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'EMAIL', name: 'Emails', unit: 'email', aggregation: 'sum' },
  ],
  plans: [
    {
      key: 'mixed', name: 'Mixed', currency: 'USD', price: '10.00', interval: 'month',
      features: {
        OCR_SCAN: { included: 100, overage: { model: 'per_unit', unitPrice: '0.05' } },
        API_CALL: { included: 0, overage: { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '0.10' }, { upTo: null, unitPrice: '0.05', flatPrice: '1.00' }] } },
        EMAIL: { included: 0, overage: { model: 'package', size: '100', packagePrice: '5.00' } },
      },
    },
  ],
};

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

  it('the HTML a customer gets: names, seller, inclusive period, prices of every usage line, zero lines hidden, DRAFT', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply('2026-01-01T00:00:00Z', modelsCatalog);
    await createTenant(db, { id: 'acme', name: 'Acme <Corp> & Sons' }, { now: T('2026-01-01T00:00:00Z'), actor: 'test' });
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'mixed');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'OCR_SCAN', '40'); // within the allowance: a 0.00 line
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'API_CALL', '150');
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'EMAIL', '250');
    await w.generate('2026-02-01T01:00:00Z');
    const [inv] = await invoicesByNumber(db);
    expect(inv.lines.map((l) => `${l.kind} ${l.featureKey ?? '-'} ${l.amount}`)).toEqual([
      'base_fee - 10.00', 'overage API_CALL 13.50', 'overage EMAIL 15.00', 'overage OCR_SCAN 0.00',
    ]);

    const draft = (await runCli(['invoice', 'export', 'inv-000001', '--format', 'html'], { db: url, env: SELLER_ENV })).stdout;
    expect(draft).toContain('<div class="watermark" aria-hidden="true">DRAFT</div>');
    expect(draft).toContain('<title>Draft invoice INV-000001</title>');
    expect(draft).not.toMatch(/<dt>(Issued|Due)<\/dt>/);
    expect(draft).toContain('<p class="name">Acme &lt;Corp&gt; &amp; Sons</p>\n      <p>Customer ID: acme</p>');
    expect(draft).toContain(
      '<h2>From</h2>\n      <p class="name">Meter &amp; Co &lt;GmbH&gt;</p>\n      <p>1 Main St</p>\n      <p>10115 Berlin</p>\n      <p>billing@meter.example</p>\n      <p>Tax ID: DE123456789</p>',
    );
    expect(draft).toContain('<dt>Period</dt><dd>2026-01-01 – 2026-01-31</dd>');
    expect(draft).not.toContain('2026-02-01');
    // Graduated: the tier breakdown; package: the price per package and the packages billed.
    expect(draft).toContain('<li>tier 1 (0 &lt; units ≤ 100): 100 units: 100 × 0.10 = 10.00</li><li>tier 2 (above 100): 50 units: 50 × 0.05 + 1.00 flat = 3.50</li>');
    expect(draft).toMatch(/<td class="num">tiered \(graduated\)<\/td><td class="num">13\.50<\/td>/);
    expect(draft).toMatch(/<td class="num">5\.00 per 100<\/td><td class="num">15\.00<\/td>/);
    expect(draft).toContain('<li>3 × package of 100 (250 units): 3 × 5.00 = 15.00</li>');
    expect(draft).not.toContain('OCR scans');
    expect(draft).toContain('1 usage line(s) with nothing to pay not shown.');
    expect(draft).toMatch(/<td colspan="5">Total<\/td><td class="num">38\.50 USD<\/td>/);

    await finalizeInvoice(db, 'INV-000001', { now: T('2026-02-02T00:00:00Z'), actor: 'test' });
    const open = (await runCli(['invoice', 'export', 'INV-000001', '--format', 'html'], { db: url })).stdout;
    expect(open).not.toContain('DRAFT');
    expect(open).toContain('<dt>Issued</dt><dd>2026-02-02</dd>');
    expect(open).not.toContain('<h2>From</h2>'); // no seller configured: no block

    // Late usage bills a difference: its breakdown says what is due in all and what was billed before.
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'API_CALL', '50', '2026-01-20T00:00:00Z');
    await w.generate('2026-03-01T01:00:00Z');
    const feb = (await runCli(['invoice', 'export', 'INV-000002', '--format', 'html'], { db: url })).stdout;
    expect(feb).toContain('<dt>Period</dt><dd>2026-02-01 – 2026-02-28</dd>');
    expect(feb).toMatch(/<td>Late usage for [^<]*<ul class="tiers">.*<li>due for 200 used: 16\.00, less 13\.50 billed before<\/li><\/ul><\/td><td class="period">2026-01-01 – 2026-01-31<\/td>/);
    expect(feb).toMatch(/<td class="num">tiered \(graduated\)<\/td><td class="num">2\.50<\/td>/);
  });
});

describe('invoice HTML pieces', () => {
  it('periods end on their last day; seller details come from the environment, or none', () => {
    expect(htmlPeriod({ start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') })).toBe('2026-01-01 – 2026-01-31');
    expect(htmlPeriod({ start: T('2026-01-31T00:00:00Z'), end: T('2026-02-01T00:00:00Z') })).toBe('2026-01-31');
    expect(htmlPeriod({ start: T('2026-01-01T05:00:00Z'), end: T('2026-02-01T05:00:00Z') })).toBe('2026-01-01 05:00 – 2026-02-01 05:00 UTC');
    expect(sellerDetails({})).toBeNull();
    expect(sellerDetails({ BILLING_SELLER_NAME: '  ' })).toBeNull();
    expect(sellerDetails({ BILLING_SELLER_ADDRESS: 'a\\nb\nc| d ' })).toEqual({ name: null, addressLines: ['a', 'b', 'c', 'd'], email: null, taxId: null });
  });
});
