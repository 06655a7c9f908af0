import { existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfigFile } from '../src/cli/config-file.js';
import { BillingError } from '../src/domain/errors.js';
import { applyScheduleFlags, DEFAULT_SCHEDULES } from '../src/jobs/schedules.js';
import { runCli } from './helpers/cli.js';
import { freshDb, type TestDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { world } from './invoice-world.js';

function configFile(content: unknown, dir = tempDir('billing-config-'), name = 'billing.config.json'): string {
  const file = path.join(dir, name);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function messageOf(file: string): string {
  try {
    loadConfigFile(file, true);
  } catch (e) {
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('usage');
    return (e as BillingError).message;
  }
  throw new Error('expected the config to be refused');
}

/** Tenant ids in a SQLite file the CLI wrote, or null when the file was never created. */
function tenantsIn(file: string): string[] | null {
  if (!existsSync(file)) return null;
  const db = new Database(file, { readonly: true });
  try {
    return (db.prepare('select id from tenants order by id').all() as Array<{ id: string }>).map((r) => r.id);
  } finally {
    db.close();
  }
}

const DAEMON_KEYS = 'timezone, schedules, lockTtlSeconds, shutdownTimeoutSeconds, draftInvoices';

describe('billing.config.json: validation', () => {
  it('refuses an unknown key anywhere, naming the file and the key path', () => {
    const top = configFile({ deamon: { timezone: 'UTC' } });
    expect(messageOf(top)).toBe(`${top}: deamon: unknown key (use databaseUrl, defaultCurrency, invoiceDueDays, seller, daemon)`);
    const inner = configFile({ daemon: { timezone: 'UTC', lockTtl: 30 } });
    expect(messageOf(inner)).toBe(`${inner}: daemon.lockTtl: unknown key (use ${DAEMON_KEYS})`);
    const seller = configFile({ seller: { name: 'Acme', vat: 'x' } });
    expect(messageOf(seller)).toBe(`${seller}: seller.vat: unknown key (use name, addressLines, email, taxId)`);
    const job = configFile({ daemon: { schedules: { invoices: '0 3 * * *' } } });
    expect(messageOf(job)).toBe(`${job}: daemon.schedules.invoices: unknown key (use aggregate, overage, invoice, stripe-sync, stripe-retry, dunning, webhooks)`);
  });

  it('names the key of a value of the wrong type', () => {
    const cases: Array<[unknown, string]> = [
      [{ invoiceDueDays: '14' }, 'invoiceDueDays: must be a whole number of days from 0 to 3650'],
      [{ invoiceDueDays: 1.5 }, 'invoiceDueDays: must be a whole number of days from 0 to 3650'],
      [{ databaseUrl: 5 }, 'databaseUrl: must be a database URL string (sqlite:PATH or postgres://...)'],
      [{ defaultCurrency: 'EURO' }, 'defaultCurrency: must be an ISO 4217 currency code such as "USD"'],
      [{ seller: { name: 'Acme', addressLines: 'Main St 1' } }, 'seller.addressLines: must be an array of strings, one per address line'],
      [{ seller: { name: 'Acme', addressLines: ['Main St 1', 7] } }, 'seller.addressLines[1]: must be a string'],
      [{ seller: { email: 'a@b.c' } }, "seller.name: must be the seller's name (a non-empty string)"],
      [{ daemon: { draftInvoices: 'yes' } }, 'daemon.draftInvoices: must be true or false'],
      [{ daemon: { lockTtlSeconds: -1 } }, 'daemon.lockTtlSeconds: must be a positive number of seconds'],
      [{ daemon: { timezone: 'Mars/Base' } }, 'daemon.timezone: unknown time zone "Mars/Base"'],
      [{ daemon: { schedules: { invoice: 5 } } }, 'daemon.schedules.invoice: must be a cron expression string, "off" or null'],
      [{ daemon: [] }, 'daemon: must be an object'],
      [[], 'must be a JSON object'],
    ];
    for (const [content, expected] of cases) {
      const file = configFile(content);
      expect(messageOf(file)).toBe(`${file}: ${expected}`);
    }
    const broken = configFile('{"databaseUrl": ');
    expect(messageOf(broken)).toMatch(new RegExp(`^${broken.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON \\(`));
  });

  it('accepts every known setting, keeping the daemon section it had before', () => {
    const file = configFile({
      databaseUrl: 'sqlite:./billing.db',
      defaultCurrency: 'eur',
      invoiceDueDays: 30,
      seller: { name: 'Acme GmbH', addressLines: ['Hauptstr. 1', '10115 Berlin'], email: 'billing@acme.test', taxId: 'DE123456789' },
      daemon: { timezone: 'Europe/Paris', schedules: { invoice: 'off', dunning: null, aggregate: '*/5 * * * *' }, lockTtlSeconds: 30, shutdownTimeoutSeconds: 5, draftInvoices: true },
    });
    const c = loadConfigFile(file, true);
    expect(c).toMatchObject({
      file,
      databaseUrl: 'sqlite:./billing.db',
      defaultCurrency: 'EUR',
      invoiceDueDays: 30,
      seller: { name: 'Acme GmbH', addressLines: ['Hauptstr. 1', '10115 Berlin'], email: 'billing@acme.test', taxId: 'DE123456789' },
      daemon: { timezone: 'Europe/Paris', lockTtlMs: 30_000, shutdownTimeoutMs: 5000, draftInvoices: true },
    });
    expect(c.daemon.schedules).toEqual({ ...DEFAULT_SCHEDULES, invoice: undefined, dunning: undefined, aggregate: '*/5 * * * *' });
    expect(Object.keys(c.daemon.schedules)).not.toContain('invoice');
    // --schedule flags come over the file, which comes over the defaults.
    expect(applyScheduleFlags(c.daemon, ['invoice=0 2 1 * *', 'aggregate=off']).schedules).toEqual({
      overage: DEFAULT_SCHEDULES.overage, 'stripe-sync': DEFAULT_SCHEDULES['stripe-sync'], 'stripe-retry': DEFAULT_SCHEDULES['stripe-retry'], webhooks: DEFAULT_SCHEDULES.webhooks, invoice: '0 2 1 * *',
    });
    expect(loadConfigFile(configFile({ seller: { name: 'Solo' } }), true).seller).toEqual({ name: 'Solo', addressLines: [], email: null, taxId: null });
  });

  it('a missing default file is no config; a named one that is missing is an error', () => {
    const dir = tempDir('billing-config-');
    expect(loadConfigFile(path.join(dir, 'billing.config.json'), false)).toMatchObject({ file: null, databaseUrl: undefined });
    expect(messageOf(path.join(dir, 'nosuch.json'))).toBe(`${path.join(dir, 'nosuch.json')}: no such file`);
  });
});

describe('billing.config.json: CLI', () => {
  it('an unknown key is one line `billing: FILE: KEY: problem` and exit 2, before any database is opened', async () => {
    const dir = tempDir('billing-config-');
    const file = configFile({ daemon: { schedule: {} } });
    const never = path.join(dir, 'never.db');
    for (const args of [['status', '--config', file], ['--config', file, 'tenant', 'list']]) {
      const r = await runCli(args, { db: `sqlite:${never}` });
      expect(r.code).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.stderr).toBe(`billing: ${file}: daemon.schedule: unknown key (use ${DAEMON_KEYS})\n`);
    }
    const typed = configFile({ invoiceDueDays: 'soon' }, dir, 'typed.json');
    const r = await runCli(['tenant', 'list'], { db: `sqlite:${never}`, env: { BILLING_CONFIG: typed } });
    expect([r.code, r.stdout, r.stderr]).toEqual([2, '', `billing: ${typed}: invoiceDueDays: must be a whole number of days from 0 to 3650\n`]);
    expect(existsSync(never)).toBe(false);
  });

  it('precedence on SQLite: --db over BILLING_DATABASE_URL over the file over ./billing.db; the same for the default currency', async () => {
    // One row per level: what is given, and which database and currency must win.
    const rows: Array<{ level: string; flag: boolean; env: boolean; file: boolean; db: string; currency: string | null }> = [
      { level: 'default', flag: false, env: false, file: false, db: 'billing.db', currency: null },
      { level: 'file', flag: false, env: false, file: true, db: 'file.db', currency: 'EUR' },
      { level: 'env', flag: false, env: true, file: true, db: 'env.db', currency: 'GBP' },
      { level: 'flag', flag: true, env: true, file: true, db: 'flag.db', currency: 'JPY' },
    ];
    for (const row of rows) {
      const dir = tempDir('billing-precedence-');
      if (row.file) configFile({ databaseUrl: `sqlite:${path.join(dir, 'file.db')}`, defaultCurrency: 'EUR' }, dir);
      const env: NodeJS.ProcessEnv = row.env ? { BILLING_DATABASE_URL: `sqlite:${path.join(dir, 'env.db')}`, BILLING_DEFAULT_CURRENCY: 'GBP' } : {};
      const args = ['tenant', 'create', `t-${row.level}`, '--json'];
      if (row.flag) args.push('--db', `sqlite:${path.join(dir, 'flag.db')}`, '--currency', 'JPY');
      const r = await runCli(args, { cwd: dir, env });
      expect([row.level, r.code, r.stderr]).toEqual([row.level, 0, '']);
      expect([row.level, JSON.parse(r.stdout).currency]).toEqual([row.level, row.currency]);
      for (const name of ['billing.db', 'file.db', 'env.db', 'flag.db']) {
        expect([row.level, name, tenantsIn(path.join(dir, name))]).toEqual([row.level, name, name === row.db ? [`t-${row.level}`] : null]);
      }
    }
  });

  it('a database URL with a password from the file is never printed unmasked', async () => {
    const dir = tempDir('billing-config-');
    configFile({ databaseUrl: 'postgres://billing:hunter2@127.0.0.1:1/nodb' }, dir);
    const r = await runCli(['tenant', 'list'], { cwd: dir });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('***');
    expect(r.stderr).not.toContain('hunter2');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
  });

  it('status reads daemon schedules from BILLING_CONFIG, --config or ./billing.config.json', async () => {
    const dir = tempDir('billing-config-');
    const db = `sqlite:${path.join(dir, 'status.db')}`;
    const file = configFile({ daemon: { schedules: { invoice: '0 3 * * *', dunning: null } } }, dir, 'ops.json');
    const schedules = (stdout: string) => Object.fromEntries(JSON.parse(stdout).jobs.map((j: { job: string; schedule: string | null }) => [j.job, j.schedule]));
    const expected = { ...DEFAULT_SCHEDULES, invoice: '0 3 * * *', dunning: null };
    const viaEnv = await runCli(['status', '--json'], { db, now: '2026-02-10T12:00:00Z', env: { BILLING_CONFIG: file } });
    expect(schedules(viaEnv.stdout)).toEqual(expected);
    const viaFlag = await runCli(['--config', file, 'status', '--json'], { db, now: '2026-02-10T12:00:00Z' });
    expect(schedules(viaFlag.stdout)).toEqual(expected);
    // --config over BILLING_CONFIG.
    const other = configFile({ daemon: { schedules: { invoice: '0 4 * * *' } } }, dir, 'other.json');
    const both = await runCli(['status', '--json', '--config', other], { db, now: '2026-02-10T12:00:00Z', env: { BILLING_CONFIG: file } });
    expect(schedules(both.stdout)).toEqual({ ...DEFAULT_SCHEDULES, invoice: '0 4 * * *' });
    const none = await runCli(['status', '--json'], { db, now: '2026-02-10T12:00:00Z', cwd: dir });
    expect(schedules(none.stdout)).toEqual(DEFAULT_SCHEDULES);
    const missing = await runCli(['status'], { db, env: { BILLING_CONFIG: path.join(dir, 'gone.json') } });
    expect([missing.code, missing.stderr]).toEqual([2, `billing: ${path.join(dir, 'gone.json')}: no such file\n`]);
  });
});

describe('billing.config.json: invoice due days', () => {
  let t: TestDb | undefined;
  afterEach(async () => {
    await t?.cleanup();
    t = undefined;
  });

  it('INVOICE_DUE_DAYS over the file over the default of 7 (SQLite)', async () => {
    t = await freshDb('sqlite');
    const w = world(t.db);
    await w.apply('2026-01-01T00:00:00Z');
    await w.tenant('2026-01-01T00:00:00Z', 'acme');
    await w.subscribe('2026-01-01T00:00:00Z', 'acme', 'basic');
    const dir = tempDir('billing-config-');
    const file = configFile({ invoiceDueDays: 30 }, dir);
    const dueAt = async (opts: { env?: NodeJS.ProcessEnv; cwd?: string }) => {
      const r = await runCli(['invoice', 'preview', 'acme', '--json'], { db: t!.url, now: '2026-01-20T00:00:00Z', ...opts });
      expect([r.code, r.stderr]).toEqual([0, '']);
      return JSON.parse(r.stdout).dueAt;
    };
    expect(await dueAt({})).toBe('2026-01-27T00:00:00.000Z');
    expect(await dueAt({ cwd: dir })).toBe('2026-02-19T00:00:00.000Z');
    expect(await dueAt({ env: { BILLING_CONFIG: file } })).toBe('2026-02-19T00:00:00.000Z');
    expect(await dueAt({ cwd: dir, env: { INVOICE_DUE_DAYS: '14' } })).toBe('2026-02-03T00:00:00.000Z');
  });
});
