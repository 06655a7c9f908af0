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
        ['INV-000001', 'INV-000002', 'INV-000003', 'INV-000004', 'INV-000005', 'INV-000006', 'INV-000007']);
      expect(r.report.map((t: { tenantId: string }) => t.tenantId)).toEqual(['tnt_acme', 'tnt_globex', 'tnt_initech', 'tnt_umbrella']);
      const denied = r.checks.find((c: { featureKey: string }) => c.featureKey === 'API_CALL');
      expect(denied.result).toMatchObject({ allowed: false, reason: 'limit_reached', hardStop: true });

      // A second run starts fresh: same numbers, not doubled.
      const second = await runCli(['demo', '--json'], { cwd });
      expect(second.code).toBe(0);
      expect(JSON.parse(second.stdout).invoices.map((i: { total: string }) => i.total)).toEqual(
        r.invoices.map((i: { total: string }) => i.total));

      const verify = await runCli(['verify'], { cwd, db: 'sqlite:./billing-demo.db' });
      expect(verify.code).toBe(0);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });

  it('prints a readable walk-through for people', async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), 'billing-demo-'));
    try {
      const r = await runCli(['demo'], { cwd });
      expect(r.code).toBe(0);
      for (const step of ['catalog apply', 'ingest', 'aggregate', 'overage', 'invoice generate', 'report', 'check']) {
        expect(r.stdout).toContain(`$ billing ${step}`);
      }
      expect(r.stdout).toMatch(/tnt_umbrella .*quota OCR_SCAN: 100 included at 0.05/);
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
    expect(JSON.parse(first.stdout).invoices).toHaveLength(7);
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
        return { report: r.report, invoices: r.invoices.map((i: { number: string; total: string }) => [i.number, i.total]) };
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
