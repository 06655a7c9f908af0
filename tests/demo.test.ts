import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import pg from 'pg';
import { describeEachDb, isPgReachable, PG_URL } from './helpers/db.js';

describe('billing demo (default: fresh SQLite file in the cwd)', () => {
  it('runs the whole pipeline twice in a row with identical results, and the result verifies', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'billing-demo-'));
    try {
      const first = await runCli(['demo', '--json'], { cwd });
      expect(first.stderr).toBe('');
      expect(first.code).toBe(0);
      expect(existsSync(path.join(cwd, 'billing-demo.db'))).toBe(true);
      const r = JSON.parse(first.stdout);
      // The fixtures hold one re-sent row and three bad ones; everything else lands.
      expect(r.ingest).toMatchObject({ duplicates: 1, rejected: 3 });
      expect(r.ingest.inserted).toBe(r.ingest.read - 4);
      expect(r.invoices.map((i: { number: string }) => i.number)).toEqual(
        ['INV-000001', 'INV-000002', 'INV-000003', 'INV-000004', 'INV-000005', 'INV-000006', 'INV-000007', 'INV-000008', 'INV-000009']);
      expect(r.report.map((t: { tenantId: string }) => t.tenantId)).toEqual(['tnt_acme', 'tnt_globex', 'tnt_initech', 'tnt_umbrella', 'tnt_wayne']);
      const denied = r.checks.find((c: { featureKey: string }) => c.featureKey === 'API_CALL');
      expect(denied.result).toMatchObject({ allowed: false, reason: 'limit_reached', hardStop: true });

      // DESIGN.md §13 on the demo (seeds/tenants.json), by hand:
      // - tnt_globex, 10 % repeating 3 invoices + VAT 19 %: INV-000004 subtotal 121.28 (99.00 base
      //   + 22.28 usage), discount 12.128 → 12.13, VAT 19 % of 109.15 = 20.7385 → 20.74, total 129.89;
      //   INV-000005 119.84, 11.984 → 11.98, 19 % of 107.86 = 20.4934 → 20.49, total 128.35, then
      //   credit note CN-000001 of 10.00 (tax share 10.00 × 20.49 / 128.35 = 1.596 → 1.60): due 118.35.
      // - tnt_umbrella, a 75.00 grant: INV-000006 29.65 and INV-000007 29.14 are paid by it
      //   (due 0.00), leaving 75.00 − 29.65 − 29.14 = 16.21.
      const totals = (i: Record<string, string>) => [i.number, i.subtotal, i.discountTotal, i.taxTotal, i.total, i.creditsApplied, i.amountDue];
      expect(r.invoices.slice(3, 7).map(totals)).toEqual([
        ['INV-000004', '121.28', '12.13', '20.74', '129.89', '0.00', '129.89'],
        ['INV-000005', '119.84', '11.98', '20.49', '128.35', '0.00', '118.35'],
        ['INV-000006', '29.65', '0.00', '0.00', '29.65', '29.65', '0.00'],
        ['INV-000007', '29.14', '0.00', '0.00', '29.14', '29.14', '0.00'],
      ]);
      // The tenants without §13 terms pay their total.
      for (const i of [...r.invoices.slice(0, 3), ...r.invoices.slice(7)]) expect([i.subtotal, i.amountDue]).toEqual([i.total, i.total]);
      // DESIGN.md §14–15 on tnt_wayne (platform plan), by hand. February: base 49.00; storage 40 GB
      // all month + 30 GB from the 15th of 28 days = 55 GB-month, 45 beyond 10 × 0.25 = 11.25;
      // payments at 2.9 % + 0.30 each: 3.78 + 1.6195 + 28.72 + 0.735 = 34.8545 → 34.85; AI tokens by
      // model: gpt-4 120,000 − 100,000 included × 0.00003 = 0.60, gpt-4o-mini 300,000 of 500,000 (*)
      // 0.00. Total 95.70. March, running: payments 72.80 + 9.29725 + 58.30 = 140.39725 → 140.40,
      // storage 70 + 20 × 27/31 = 87.419355 GB-month, 77.419355 × 0.25 → 19.35, claude 650,000 − 500,000
      // × 0.000002 = 0.30: 160.05 of usage reaches the 150.00 spend threshold, so March gets a
      // threshold invoice now (the base fee waits for its end).
      expect(r.invoices.slice(7).map((i: Record<string, string>) => [i.number, i.billingReason, i.total])).toEqual([
        ['INV-000008', 'period', '95.70'],
        ['INV-000009', 'threshold', '160.05'],
      ]);
      expect(r.webhooks.fired.map((f: { ruleId: string; tenantId: string }) => `${f.ruleId} ${f.tenantId}`)).toEqual(['al_demo_wayne tnt_wayne']);
      expect(r.webhooks.received.map((w: { type: string; verified: boolean }) => `${w.type} ${w.verified}`)).toEqual(['alert.triggered true', 'threshold.invoiced true']);
      expect(r.commercial.creditNote).toMatchObject({ number: 'CN-000001', invoiceNumber: 'INV-000005', amount: '10.00', taxAmount: '1.60', dueReduction: '10.00', credited: '0.00' });
      expect(r.commercial.balances).toEqual([{ tenantId: 'tnt_umbrella', currency: 'USD', balance: '16.21' }]);

      // A second run starts fresh: same numbers, not doubled.
      const second = await runCli(['demo', '--json'], { cwd });
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout).invoices.map((i: { total: string }) => i.total)).toEqual(
        r.invoices.map((i: { total: string }) => i.total));

      const verify = await runCli(['verify'], { cwd, db: 'sqlite:./billing-demo.db' });
      expect(verify.stdout).toMatch(/^ok: 9 invoice\(s\)/);
      expect(verify.code).toBe(0);
      // The same numbers through the commands the walk-through points at.
      const at = { cwd, db: 'sqlite:./billing-demo.db', now: '2026-03-20T12:00:00Z' };
      const shown = JSON.parse((await runCli(['invoice', 'show', 'INV-000005', '--json'], at)).stdout);
      expect([shown.total, shown.creditNotes, shown.amountDue]).toEqual(['128.35', [{ number: 'CN-000001', amount: '10.00' }], '118.35']);
      const check = await runCli(['check', 'tnt_umbrella', 'OCR_SCAN', '--json'], at);
      expect(JSON.parse(check.stdout).credits).toEqual({ balance: '16.21', currency: 'USD' });
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('prints a readable walk-through for people', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'billing-demo-'));
    try {
      const r = await runCli(['demo'], { cwd });
      expect(r.code).toBe(0);
      for (const step of ['catalog apply', 'discount add', 'tax set', 'credit grant', 'webhook add', 'alert add', 'ingest', 'aggregate', 'overage', 'invoice generate', 'credit-note create', 'invoice show', 'credit balance', 'webhook deliver', 'report', 'check']) {
        expect(r.stdout).toContain(`$ billing ${step}`);
      }
      expect(r.stdout).toMatch(/tnt_umbrella .*quota OCR_SCAN: 100 included at 0.05/);
      // The §13 steps, as README's walk-through quotes them (numbers worked out in the test above).
      const block = (from: string, to: string) => r.stdout.slice(r.stdout.indexOf(from), r.stdout.indexOf(to)).trimEnd().split('\n');
      expect(block('$ billing discount add', '$ billing webhook add')).toEqual([
        '$ billing discount add tnt_globex --percent 10 --duration repeating --periods 3',
        '  dsc_demo_launch: 10% off its next 3 invoices',
        '',
        '$ billing tax set tnt_globex --name VAT --rate 19',
        '  tnt_globex: VAT 19%, added on top of the discounted amount',
        '',
        '$ billing credit grant tnt_umbrella 75.00 --name "Prepaid package"',
        '  cg_demo_package: 75.00 USD of prepaid credit, taken off its invoices after tax',
      ]);
      expect(r.stdout).toContain('  INV-000005  tnt_globex    2026-01-31 → 2026-02-28  USD total  128.35  due  128.35  (8 lines)\n');
      expect(r.stdout).toContain('  INV-000007  tnt_umbrella  2026-02-01 → 2026-03-01  USD total   29.14  due    0.00  (6 lines)\n');
      expect(block('$ billing credit-note create', '$ billing webhook deliver')).toEqual([
        '$ billing credit-note create INV-000005 --amount 10.00 --reason "API outage on 2026-02-10"',
        '  CN-000001  INV-000005  10.00 USD  amount due −10.00 (of which tax 1.60)',
        '',
        '$ billing invoice show INV-000005',
        '  INV-000005  open  128.35 USD  (tnt_globex; its 8 lines left out here)',
        '  Subtotal                                                     119.84 USD',
        '  Discount 10% (repeating, 3 invoices, dsc_demo_launch)        -11.98 USD',
        '  VAT 19% on 107.86                                             20.49 USD',
        '  Total                                                        128.35 USD',
        '  Credit note CN-000001                                        -10.00 USD',
        '  Amount due                                                   118.35 USD',
        '',
        '$ billing invoice show INV-000007',
        '  INV-000007  open  29.14 USD  (tnt_umbrella; its 6 lines left out here)',
        '  Total                          29.14 USD',
        '  Prepaid credit applied        -29.14 USD',
        '  Amount due                      0.00 USD',
        '',
        '$ billing credit balance tnt_umbrella',
        '  tnt_umbrella: 16.21 USD left',
      ]);
      expect(r.stdout).not.toMatch(/\x1b\[/); // no escape codes off a TTY
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describeEachDb('billing demo --db', (t) => {
  it('runs on an empty database given with --db and refuses one that already has tenants', async () => {
    const { url } = t();
    const first = await runCli(['demo', '--json'], { db: url });
    expect(first.code).toBe(0);
    expect(JSON.parse(first.stdout).invoices).toHaveLength(9);
    const verify = await runCli(['verify'], { db: url });
    expect([verify.code, verify.stdout]).toEqual([0, expect.stringMatching(/^ok: 9 invoice\(s\)/)]);
    const again = await runCli(['demo'], { db: url });
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/already has tenants/);
  });
});

describe('billing demo on an empty PostgreSQL schema, with a password in the URL', () => {
  it('migrates it itself, reports what SQLite reports, and never prints the password', async () => {
    if (!(await isPgReachable())) throw new Error('PostgreSQL is needed for this test');
    const schema = `t_${randomBytes(6).toString('hex')}`;
    const withPassword = PG_URL.replace(/^postgres(ql)?:\/\/([^:@/]+)(:[^@/]*)?@/, 'postgres://$2:SECRETPW@');
    expect(withPassword).toContain('SECRETPW@');
    const url = `${withPassword}${withPassword.includes('?') ? '&' : '?'}schema=${schema}`;
    const cwd = mkdtempSync(path.join(tmpdir(), 'billing-demo-'));
    try {
      const pgJson = await runCli(['demo', '--json'], { db: url });
      expect(pgJson.stderr).toBe('');
      expect(pgJson.code).toBe(0);
      const sqliteJson = await runCli(['demo', '--json'], { cwd });
      expect(sqliteJson.code).toBe(0);
      const pick = (out: string) => {
        const r = JSON.parse(out);
        return {
          report: r.report,
          invoices: r.invoices.map((i: { number: string; total: string; amountDue: string }) => [i.number, i.total, i.amountDue]),
          balances: r.commercial.balances,
        };
      };
      expect(pick(pgJson.stdout)).toEqual(pick(sqliteJson.stdout));

      const refused = await runCli(['demo'], { db: url });
      expect(refused.code).toBe(2);
      for (const r of [pgJson, refused]) expect(r.stdout + r.stderr).not.toContain('SECRETPW');

      const text = await runCli(['demo'], { db: url.replace(schema, `${schema}b`) });
      expect(text.code).toBe(0);
      expect(text.stdout).toContain('postgres://postgres:***@');
      expect(text.stdout + text.stderr).not.toContain('SECRETPW');
      await runCli(['verify'], { db: url.replace(schema, `${schema}b`) }).then((v) => expect(v.stdout + v.stderr).not.toContain('SECRETPW'));
    } finally {
      rmSync(cwd, { recursive: true, force: true });
      const admin = new pg.Client({ connectionString: PG_URL });
      await admin.connect();
      await admin.query(`drop schema if exists ${schema} cascade; drop schema if exists ${schema}b cascade`);
      await admin.end();
    }
  });
});
