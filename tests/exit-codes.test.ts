// The exit-code rule of docs/reference.md ("Exit codes"), one row per command: 0 done (a no-op
// included), 1 failure, 2 usage error or not found, 3 partial. Errors are one `billing: ` line.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';

const CATALOG = new URL('../seeds/catalog.json', import.meta.url).pathname;
const BEFORE = '2026-03-25T12:00:00Z';
const AFTER = '2026-04-01T00:15:00Z';

interface Case {
  args: string[];
  code: 0 | 1 | 2 | 3;
  /** stderr's first line, for failures */
  error?: RegExp;
  now?: string;
}

// Run in this order against one database: acme on starter since 1 March, one invoice issued.
const CASES: Case[] = [
  // 0: done, or nothing to do
  { args: ['catalog', 'apply', CATALOG], code: 0 },
  { args: ['subscription', 'change', 'acme', 'starter'], code: 0 },
  { args: ['invoice', 'finalize', 'INV-000001'], code: 0 },
  { args: ['invoice', 'generate'], code: 0, now: AFTER },
  { args: ['invoice', 'list', '--tenant', 'acme'], code: 0 },
  { args: ['aggregate'], code: 0 },
  { args: ['report', '--tenant', 'acme'], code: 0 },
  { args: ['verify'], code: 0 },
  { args: ['check', 'acme', 'OCR_SCAN'], code: 0 },
  // 1: a failure
  { args: ['tenant', 'create', 'acme'], code: 1, error: /^billing: tenant "acme" already exists/ },
  { args: ['report', '--db', 'sqlite:/nonexistent-dir/x.db'], code: 1, error: /^billing: cannot open database/ },
  // 2: usage errors
  { args: ['frobnicate'], code: 2, error: /^billing: unknown command 'frobnicate'/ },
  { args: ['invoice', 'show'], code: 2, error: /^billing: missing required argument 'id'/ },
  { args: ['report', '--bogus'], code: 2, error: /^billing: unknown option '--bogus'/ },
  { args: ['invoice', 'void', 'INV-000001'], code: 2, error: /^billing: required option '--reason <text>' not specified/ },
  { args: ['invoice', 'list', '--status', 'late'], code: 2, error: /^billing: unknown invoice status "late"/ },
  { args: ['ingest', 'no-such-file.csv'], code: 2, error: /^billing: cannot read no-such-file\.csv/ },
  // 2: not found
  { args: ['report', '--tenant', 'nosuch'], code: 2, error: /^billing: tenant "nosuch" does not exist/ },
  { args: ['invoice', 'list', '--tenant', 'nosuch'], code: 2, error: /^billing: unknown tenant "nosuch"/ },
  { args: ['invoice', 'show', 'INV-999999'], code: 2, error: /^billing: no invoice "INV-999999"/ },
  { args: ['tenant', 'show', 'nosuch'], code: 2, error: /^billing: tenant "nosuch" does not exist/ },
  { args: ['history', 'nosuch'], code: 2, error: /^billing: tenant "nosuch" does not exist/ },
  { args: ['subscription', 'show', 'nosuch'], code: 2, error: /^billing: unknown tenant "nosuch"/ },
  { args: ['credit', 'balance', 'nosuch'], code: 2, error: /^billing: unknown tenant "nosuch"/ },
  { args: ['tax', 'show', 'nosuch'], code: 2, error: /^billing: unknown tenant "nosuch"/ },
  { args: ['credit-note', 'show', 'CN-999999'], code: 2, error: /^billing: no credit note "CN-999999"/ },
  { args: ['backup', '--tenant', 'nosuch', '--out', '-'], code: 2, error: /^billing: tenant "nosuch" does not exist/ },
  // 3: partial
  { args: ['check', 'acme', 'API_CALL', '--quantity', '20000'], code: 3 },
  { args: ['record', '--tenant', 'nosuch', '--feature', 'API_CALL'], code: 3 },
];

describe('exit codes', () => {
  let dir = '';
  let db = '';
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'exit-codes'));
    db = `sqlite:${join(dir, 'billing.db')}`;
    const csv = join(dir, 'usage.csv');
    writeFileSync(csv, 'tenant_id,usage_type,quantity,occurred_at,source_service,source_entity_id\nacme,OCR_SCAN,60,2026-03-02T09:00:00Z,ocr,b1\n');
    for (const args of [
      ['catalog', 'apply', CATALOG],
      ['tenant', 'create', 'acme', '--currency', 'USD'],
      ['subscribe', 'acme', 'starter', '--start', '2026-03-01T00:00:00Z', '--trial-days', '0'],
      ['ingest', csv],
    ]) {
      const r = await runCli(args, { db, now: BEFORE });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
    }
    const inv = await runCli(['invoice', 'generate', '--finalize'], { db, now: AFTER });
    expect(inv.stdout).toContain('INV-000001');
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(CASES.map((c) => [c.args.join(' '), c] as const))('billing %s', async (_name, c) => {
    const args = c.args.includes('--db') ? c.args : [...c.args, '--db', db];
    const r = await runCli(args, { now: c.now ?? AFTER, cwd: dir });
    expect({ code: r.code, stderr: r.stderr }).toMatchObject({ code: c.code });
    if (c.error) {
      expect(r.stderr.split('\n')[0]).toMatch(c.error);
      expect(r.stdout).toBe('');
    }
  });
});
