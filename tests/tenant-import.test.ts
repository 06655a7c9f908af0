// `billing tenant import|show|update`: bulk onboarding from CSV or JSON lines, one reject line
// per bad row, idempotent reruns, and the same rows as `tenant create` + `subscribe`.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import type { Db } from '../src/storage/db.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { CATALOG } from './aggregate-support.js';

const NOW = '2026-02-01T00:00:00Z';
const T = (iso: string) => Date.parse(iso);

async function catalog(db: Db): Promise<void> {
  await applyCatalog(db, CATALOG, { now: T('2026-01-01T00:00:00Z'), actor: 'test' });
}

const CSV = [
  'id,name,currency,plan,start,trial_days',
  'acme,Acme Inc,,starter,2026-01-15T00:00:00Z,',
  'bigco,,USD,pro,2026-01-20T00:00:00Z,3',
  'bad id,,,,,',
  'yenco,,USD,yen,,',
  'solo,Solo,,,,',
  'ghost,,,nosuch,,',
  'acme,Again,,,,',
  'late,,,starter,2026-13-01T00:00:00Z,',
  'trial,,,starter,,two',
  '',
].join('\n');

/** A tenant's subscription and segment rows without their timestamps of creation. */
async function rowsOf(db: Db, tenantId: string) {
  const subs = await db.knex('subscriptions').where({ tenant_id: tenantId }).orderBy('id');
  const segs = await db.knex('subscription_segments').where({ tenant_id: tenantId }).orderBy('seq');
  const drop = ({ created_at, updated_at, ...r }: Record<string, unknown>) => ({ ...r, created_at: created_at !== undefined, updated_at: updated_at !== undefined });
  const tenant = await db.knex('tenants').where({ id: tenantId }).first();
  return { tenant: drop(tenant), subs: subs.map(drop), segs: segs.map(drop) };
}

describeEachDb('billing tenant import', (t) => {
  it('imports good rows, rejects each bad one with its line and field, and a rerun changes nothing', async () => {
    const { db, url } = t();
    await catalog(db);
    const r = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: CSV });
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      'stdin:4: id: tenant id "bad id" must not contain whitespace',
      'stdin:5: currency: USD differs from plan "yen", billed in JPY',
      'stdin:7: plan: plan "nosuch" does not exist (see `billing catalog show`)',
      'stdin:8: id: tenant "acme" is already on line 2',
      'stdin:9: start: "2026-13-01T00:00:00Z" is not an ISO 8601 instant with a zone (e.g. 2026-01-01T00:00:00Z)',
      'stdin:10: trial_days: "two" is not a whole number of days',
    ]);
    expect(r.stdout).toBe('created 3 tenant(s) (2 subscribed), 0 unchanged, 6 rejected\n');
    expect(r.code).toBe(3);

    const list = await runCli(['tenant', 'list', '--json'], { db: url, now: NOW });
    const tenants = JSON.parse(list.stdout) as Array<{ id: string; name: string | null; planKey: string | null; status: string | null }>;
    expect(tenants.map((x) => [x.id, x.name, x.planKey, x.status])).toEqual([
      ['acme', 'Acme Inc', 'starter', 'active'],
      ['bigco', null, 'pro', 'active'],
      ['solo', 'Solo', null, null],
    ]);
    const bigco = await db.knex('subscriptions').where({ tenant_id: 'bigco' }).first();
    expect(Number(bigco.trial_ends_at)).toBe(T('2026-01-23T00:00:00Z'));
    const audits = await db.knex('audit_log').whereIn('entity', ['tenant', 'subscription']).count({ n: '*' }).first();
    expect(Number(audits!.n)).toBe(5);

    const good = CSV.split('\n').filter((l, i) => i === 0 || ['acme,Acme', 'bigco', 'solo'].some((p) => l.startsWith(p))).join('\n');
    const again = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: good });
    expect(again.stdout).toBe('created 0 tenant(s) (0 subscribed), 3 unchanged, 0 rejected\n');
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);

    const renamed = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: 'id,name\nacme,Acme GmbH\n' });
    expect(renamed.stderr).toBe('stdin:2: name: tenant "acme" exists with name Acme Inc, not Acme GmbH (change it with `billing tenant update`)\n');
    expect(renamed.code).toBe(3);
  });

  it('sets each tenant\'s own tax rate from tax_name / tax_rate / tax_inclusive, rejects a bad one by field, and a rerun checks it', async () => {
    const { db, url } = t();
    await catalog(db);
    const csv = [
      'id,plan,tax_name,tax_rate,tax_inclusive',
      'de,starter,VAT,19,',
      'ch,starter,MWST,7.7,true',
      'none,starter,,,',
      'half,starter,VAT,,',
      'big,starter,VAT,101,',
      'odd,starter,,,yes',
      '',
    ].join('\n');
    const r = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: csv });
    expect(r.stderr.split('\n').filter(Boolean)).toEqual([
      'stdin:5: tax_rate: tax_name and tax_rate go together',
      'stdin:6: tax_rate: tax rate "101" must be a percentage from 0 to 100, like "19" or "7.7"',
      'stdin:7: tax_inclusive: is only meaningful with tax_name and tax_rate',
    ]);
    expect([r.stdout, r.code]).toEqual(['created 3 tenant(s) (3 subscribed), 0 unchanged, 3 rejected\n', 3]);
    const show = async (id: string) => JSON.parse((await runCli(['tax', 'show', id, '--json'], { db: url, now: NOW })).stdout);
    expect(await show('de')).toMatchObject({ source: 'tenant', rates: [{ name: 'VAT', rate: '19', inclusive: false }] });
    expect(await show('ch')).toMatchObject({ source: 'tenant', rates: [{ name: 'MWST', rate: '7.7', inclusive: true }] });
    expect(await show('none')).toMatchObject({ source: 'catalog' });
    const good = csv.split('\n').slice(0, 4).join('\n');
    expect((await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: good })).stdout).toBe('created 0 tenant(s) (0 subscribed), 3 unchanged, 0 rejected\n');
    const changed = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: 'id,tax_name,tax_rate\nde,VAT,20\n' });
    expect([changed.stderr, changed.code]).toEqual(['stdin:2: tax_rate: tenant "de" exists without VAT 20% (change it with `billing tax set`)\n', 3]);
  });

  it('included.FEATURE columns set quota overrides like `quota set --included`, by feature, checked on a rerun', async () => {
    const { db, url } = t();
    await catalog(db);
    const csv = [
      'id,plan,included.ocr_scan,included.api_call',
      'big,starter,1000,unlimited',
      'plain,starter,,',
      'bad,starter,lots,',
      '',
    ].join('\n');
    const r = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: csv });
    expect(r.stderr).toBe('stdin:4: included.ocr_scan: "lots" must be a non-negative number up to 1e12 with at most 6 decimals, or "unlimited"\n');
    expect([r.stdout, r.code]).toEqual(['created 2 tenant(s) (2 subscribed), 0 unchanged, 1 rejected\n', 3]);
    const quotas = async (id: string) => JSON.parse((await runCli(['quota', 'list', id, '--json'], { db: url, now: NOW })).stdout);
    expect(await quotas('big')).toEqual([
      { tenantId: 'big', featureKey: 'API_CALL', included: null },
      { tenantId: 'big', featureKey: 'OCR_SCAN', included: '1000' },
    ]);
    expect(await quotas('plain')).toEqual([]);
    const again = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: csv.split('\n').slice(0, 3).join('\n') });
    expect([again.stdout, again.code]).toEqual(['created 0 tenant(s) (0 subscribed), 2 unchanged, 0 rejected\n', 0]);
    const changed = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: 'id,included.ocr_scan,included.premium_voice\nbig,5,\nplain,,1\n' });
    expect(changed.stderr.split('\n').filter(Boolean)).toEqual([
      'stdin:2: included.ocr_scan: tenant "big" exists with included 1000 for OCR_SCAN, not 5 (change it with `billing quota set`)',
      'stdin:3: included.premium_voice: PREMIUM_VOICE is a boolean feature: it has no quota',
    ]);
  });

  it('writes exactly the rows `tenant create` and `subscribe` write', async () => {
    const { db, url } = t();
    await catalog(db);
    await createTenant(db, { id: 'one', name: 'One', currency: 'USD' }, { now: T(NOW), actor: 'cli:test' });
    await subscribe(db, { tenantId: 'one', planKey: 'pro', start: T('2026-01-20T00:00:00Z'), trialDays: 14 }, { now: T(NOW), actor: 'cli:test' });
    const r = await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: 'id,name,currency,plan,start,trial_days\ntwo,One,USD,pro,2026-01-20T00:00:00Z,14\n' });
    expect(r.code).toBe(0);
    const one = await rowsOf(db, 'one');
    const two = await rowsOf(db, 'two');
    const rename = (x: unknown) => JSON.parse(JSON.stringify(x).replaceAll('"two"', '"one"').replaceAll('sub_two_1', 'sub_one_1'));
    expect(rename(two)).toEqual(one);
  });

  it('reads JSON lines, refuses an unknown field, and a dry run changes nothing', async () => {
    const { db, url } = t();
    await catalog(db);
    const dir = tempDir('tenant-import-');
    const file = path.join(dir, 'tenants.ndjson');
    writeFileSync(file, '{"id":"acme","plan":"starter","trial_days":0}\n{"id":"bigco","name":null}\n[1]\n');
    const dry = await runCli(['tenant', 'import', file, '--dry-run', '--json'], { db: url, now: NOW });
    expect(JSON.parse(dry.stdout)).toEqual({ created: 2, subscribed: 1, unchanged: 0, rejected: 1, dryRun: true });
    expect(dry.stderr).toBe(`${file}:3: is not a JSON object\n`);
    expect(Number((await db.knex('tenants').count({ n: '*' }).first())!.n)).toBe(0);

    const real = await runCli(['tenant', 'import', file, '--json'], { db: url, now: NOW });
    expect(JSON.parse(real.stdout)).toMatchObject({ created: 2, subscribed: 1, rejected: 1, dryRun: false });

    const csv = path.join(dir, 'tenants.csv');
    writeFileSync(csv, 'id,plan,seats\nx,starter,3\n');
    const unknown = await runCli(['tenant', 'import', csv], { db: url, now: NOW });
    expect(unknown.stderr).toBe(`billing: ${csv}:1: unknown field "seats" (expected id, name, currency, plan, start, trial_days, tax_name, tax_rate, tax_inclusive, included.FEATURE)\n`);
    expect(unknown.stdout).toBe('');
    expect(unknown.code).toBe(2);

    writeFileSync(file, '');
    const empty = await runCli(['tenant', 'import', file], { db: url, now: NOW });
    expect(empty.stderr).toBe(`${file}: no rows to import\n`);
  });

  it('tenant show and tenant update', async () => {
    const { db, url } = t();
    await catalog(db);
    await runCli(['tenant', 'import', '-'], { db: url, now: NOW, input: 'id,name,plan,start\nacme,Acme,starter,2026-01-15T00:00:00Z\n' });
    const show = await runCli(['tenant', 'show', 'acme', '--json'], { db: url, now: NOW });
    expect(JSON.parse(show.stdout)).toMatchObject({ id: 'acme', name: 'Acme', currency: null, subscriptionId: 'sub_acme_1', planKey: 'starter', status: 'active', quotaOverrides: [] });
    const upd = await runCli(['tenant', 'update', 'acme', '--name', 'Acme Inc', '--currency', 'usd'], { db: url, now: NOW });
    expect(upd.stdout).toBe('updated tenant acme: name Acme Inc, currency USD\n');
    const eur = await runCli(['tenant', 'update', 'acme', '--currency', 'EUR'], { db: url, now: NOW });
    expect(eur.stderr).toBe('billing: tenant "acme" has subscription sub_acme_1 billed in USD; its currency cannot become EUR\n');
    expect(eur.code).not.toBe(0);
    const missing = await runCli(['tenant', 'show', 'nosuch'], { db: url, now: NOW });
    expect(missing.stderr).toBe('billing: tenant "nosuch" does not exist (see `billing tenant list`)\n');
    expect(missing.code).toBe(2);
    const audit = await db.knex('audit_log').where({ entity: 'tenant', action: 'update' }).first();
    expect(JSON.parse(audit.after)).toMatchObject({ name: 'Acme Inc', currency: 'USD' });
  });
});
