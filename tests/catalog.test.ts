import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { parseCatalogText } from '../src/catalog/load.js';
import { loadCurrentPlanVersion, loadFeature, loadPlanVersion } from '../src/catalog/repository.js';
import { validateCatalog } from '../src/catalog/validate.js';
import { BillingError } from '../src/domain/errors.js';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';
import { describeEachDb } from './helpers/db.js';

const NOW = Date.parse('2026-01-15T00:00:00Z');
const opts = { now: NOW, actor: 'test' };
const SEED = new URL('../seeds/catalog.json', import.meta.url).pathname;

function catalog() {
  return {
    features: [
      { key: 'OCR_SCAN', name: 'OCR Scans', unit: 'scan', aggregation: 'sum' },
      { key: 'STORAGE_GB', name: 'Storage', unit: 'GB', aggregation: 'max' },
      { key: 'PREMIUM_VOICE', name: 'Premium voice model', type: 'boolean' },
    ],
    plans: [
      {
        key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month', trialDays: 14,
        features: {
          OCR_SCAN: { included: 50, overage: { model: 'per_unit', unitPrice: '0.05' } },
          STORAGE_GB: { included: '5', hardStop: true },
          PREMIUM_VOICE: { enabled: false },
        },
      },
    ],
  };
}

/** Expect validateCatalog to throw and return its problems as "path: message" lines. */
function problemsOf(input: unknown, known = new Map()): string[] {
  try {
    validateCatalog(input, known);
  } catch (e) {
    expect(e).toBeInstanceOf(BillingError);
    expect((e as BillingError).code).toBe('catalog_invalid');
    return ((e as BillingError).details as Array<{ path: string; message: string }>).map((p) => `${p.path}: ${p.message}`);
  }
  throw new Error('expected the catalog to be rejected');
}

describe('catalog validation', () => {
  it('reports every problem of a file at once, each with its JSON path', () => {
    const bad = {
      features: [
        { key: 'ocr_scan' },
        { key: 'USERS', aggregation: 'unique' },
        { key: 'VOICE', type: 'boolean', aggregation: 'sum' },
        { key: 'USERS', aggregation: 'median' },
      ],
      plans: [
        {
          key: 'Starter', currency: 'XYZ', price: 29.0, interval: 'week', trialDays: -1,
          features: {
            NOPE: { included: 1 },
            VOICE: { included: 5 },
            USERS: {
              included: -3,
              hardStop: 'yes',
              overage: { model: 'graduated', tiers: [{ upTo: 100, unitPrice: '0.02' }, { upTo: 100, unitPrice: 0.01 }, { upTo: 500, unitPrice: '0.01' }] },
            },
          },
        },
        { key: 'pro', currency: 'USD', price: '-1', interval: 'month', features: { USERS: { overage: { model: 'flat' } } } },
      ],
    };
    expect(problemsOf(bad)).toEqual([
      'features[0].key: "ocr_scan" must be UPPER_SNAKE (A-Z, 0-9, _; starting with a letter)',
      'features[1].uniqueBy: is required when aggregation is "unique" (e.g. "user_id")',
      'features[2].aggregation: a boolean feature is on or off per plan: it takes no aggregation',
      'features[3].aggregation: must be one of sum, count, max, min, last, unique, avg, weighted_sum',
      'features[3].key: duplicate feature "USERS"',
      'plans[0].key: "Starter" must be lower-kebab (a-z, 0-9, single dashes)',
      'plans[0].currency: "XYZ" is not an ISO 4217 currency code',
      'plans[0].price: must be a decimal string like "29" (prices are strings so no float ever touches money)',
      'plans[0].interval: must be "month" or "year"',
      'plans[0].trialDays: must be a whole number of days from 0 to 3650',
      'plans[0].features.NOPE: unknown feature "NOPE" (declare it under "features" or apply it first)',
      'plans[0].features.VOICE.included: VOICE is a boolean feature: it takes only "enabled"',
      'plans[0].features.USERS.included: must not be negative',
      'plans[0].features.USERS.hardStop: must be true or false',
      'plans[0].features.USERS.overage.tiers[1].upTo: must be greater than 100',
      'plans[0].features.USERS.overage.tiers[1].unitPrice: must be a decimal string like "0.01" (prices are strings so no float ever touches money)',
      'plans[0].features.USERS.overage.tiers[2].upTo: the last tier must have upTo: null (it prices everything above the previous bound)',
      'plans[1].price: must not be negative',
      'plans[1].features.USERS.included: is required for a metered feature (a number, a decimal string, or null for unlimited)',
      'plans[1].features.USERS.overage.model: must be one of per_unit, package, graduated, volume, graduated_percentage, percentage',
    ]);
  });

  it('checks the finer rules: limits, unlimited with overage, package size, min/max, unknown fields', () => {
    const base = catalog();
    const plan = base.plans[0] as Record<string, any>;
    plan.features = {
      OCR_SCAN: { included: 10, hardStop: true, limit: 5, overage: { model: 'package', size: 0, packagePrice: '1.00' } },
      STORAGE_GB: { included: null, hardStop: true, overage: { model: 'per_unit', unitPrice: '0.1', minimum: '5', maximum: '2' } },
    };
    plan.colour = 'blue';
    expect(problemsOf(base)).toEqual([
      'plans[0].colour: unknown field (expected one of: key, name, currency, price, interval, trialDays, minimumCommitment, spendThreshold, features)',
      'plans[0].features.OCR_SCAN.limit: must be at least included (10)',
      'plans[0].features.OCR_SCAN.overage.size: must be greater than 0',
      'plans[0].features.STORAGE_GB.hardStop: needs a limit: included is unlimited (null) and no limit is given',
      'plans[0].features.STORAGE_GB.overage.maximum: must be at least the minimum (5)',
      'plans[0].features.STORAGE_GB.overage: has no effect when included is null (unlimited); remove it or set included',
    ]);
    expect(problemsOf(null)).toEqual(['$: must be an object']);
    expect(problemsOf({})).toEqual(['$: declares no features and no plans']);
  });

  it('normalizes: quantities to canonical decimal strings, limit defaults to included under a hard stop', () => {
    const spec = validateCatalog(catalog(), new Map());
    expect(spec.features.map((f) => [f.key, f.type, f.aggregation])).toEqual([
      ['OCR_SCAN', 'metered', 'sum'],
      ['STORAGE_GB', 'metered', 'max'],
      ['PREMIUM_VOICE', 'boolean', 'sum'],
    ]);
    const starter = spec.plans[0];
    expect(starter.features.OCR_SCAN).toEqual({
      featureKey: 'OCR_SCAN', enabled: true, included: '50', hardStop: false, limit: null,
      overage: { model: 'per_unit', unitPrice: '0.05' },
    });
    expect(starter.features.STORAGE_GB).toMatchObject({ included: '5', hardStop: true, limit: '5', overage: null });
    expect(starter.features.PREMIUM_VOICE).toMatchObject({ enabled: false, included: null });
    // a metered feature listed as off needs no allowance
    const off = catalog();
    (off.plans[0].features as Record<string, unknown>).OCR_SCAN = { enabled: false };
    expect(validateCatalog(off, new Map()).plans[0].features.OCR_SCAN).toMatchObject({ enabled: false, included: '0', overage: null });
  });

  it('accepts the demo catalog in seeds/', async () => {
    const { readFileSync } = await import('node:fs');
    const spec = validateCatalog(await parseCatalogText(readFileSync(SEED, 'utf8'), SEED), new Map());
    const aggregations = new Set(spec.features.map((f) => f.aggregation));
    expect([...aggregations].sort()).toEqual(['count', 'last', 'max', 'sum', 'unique', 'weighted_sum']);
    const models = new Set(spec.plans.flatMap((p) => Object.values(p.features).map((f) => f.overage?.model).filter(Boolean)));
    expect([...models].sort()).toEqual(['graduated', 'package', 'per_unit', 'percentage', 'volume']);
  });
});

async function auditCount(db: { knex: any }): Promise<number> {
  const [r] = await db.knex('audit_log').count({ n: '*' });
  return Number(r.n);
}

describeEachDb('catalog apply', (t) => {
  it('applies atomically, and a second apply of the same document is a no-op without audit rows', async () => {
    const { db } = t();
    const first = await applyCatalog(db, catalog(), opts);
    expect(first.noop).toBe(false);
    expect(first.changes).toEqual([
      { kind: 'feature', key: 'OCR_SCAN', action: 'create' },
      { kind: 'feature', key: 'STORAGE_GB', action: 'create' },
      { kind: 'feature', key: 'PREMIUM_VOICE', action: 'create' },
      { kind: 'plan', key: 'starter', action: 'create', version: 1 },
    ]);
    const audits = await auditCount(db);
    expect(audits).toBe(4);
    const again = await applyCatalog(db, catalog(), { ...opts, now: NOW + 1000 });
    expect(again).toEqual({ noop: true, changes: [] });
    expect(await auditCount(db)).toBe(audits);
    // the same numbers written differently are the same terms
    const respelled = catalog();
    respelled.plans[0].price = '29.0';
    (respelled.plans[0].features.OCR_SCAN as any).overage.unitPrice = '0.050';
    expect((await applyCatalog(db, respelled, opts)).noop).toBe(true);
    const plan = await loadCurrentPlanVersion(db.knex, 'starter');
    expect(plan).toMatchObject({ version: 1, price: '29.00', currency: 'USD', interval: 'month', trialDays: 14 });
    expect(plan!.features.OCR_SCAN.overage).toEqual({ model: 'per_unit', unitPrice: '0.05' });
  });

  it('a price change creates a new version; the old version row stays for its subscribers', async () => {
    const { db } = t();
    await applyCatalog(db, catalog(), opts);
    const changed = catalog();
    changed.plans[0].price = '35.00';
    (changed.plans[0].features.OCR_SCAN as any).included = 100;
    const r = await applyCatalog(db, changed, { ...opts, now: NOW + 1000 });
    expect(r.changes).toEqual([
      { kind: 'plan', key: 'starter', action: 'new_version', version: 2, diff: ['price: 29.00 → 35.00', 'features.OCR_SCAN.included: 50 → 100'] },
    ]);
    expect(await loadPlanVersion(db.knex, 'starter', 1)).toMatchObject({ price: '29.00', features: { OCR_SCAN: { included: '50' } } });
    expect(await loadCurrentPlanVersion(db.knex, 'starter')).toMatchObject({ version: 2, price: '35.00', features: { OCR_SCAN: { included: '100' } } });
    const audit = await db.knex('audit_log').where({ entity: 'plan', action: 'new_version' });
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ entity_id: 'starter', actor: 'test', tenant_id: null });
    expect(JSON.parse(audit[0].before)).toMatchObject({ version: 1, price: '29.00' });
    expect(JSON.parse(audit[0].after)).toMatchObject({ version: 2, price: '35.00' });
  });

  it('renames a plan in place, updates features in place, and leaves absent entries alone', async () => {
    const { db } = t();
    await applyCatalog(db, catalog(), opts);
    const r = await applyCatalog(
      db,
      {
        features: [{ key: 'OCR_SCAN', name: 'Document scans', unit: 'page', aggregation: 'sum' }],
        plans: [{ ...catalog().plans[0], name: 'Starter 2026' }],
      },
      opts,
    );
    expect(r.changes).toEqual([
      { kind: 'feature', key: 'OCR_SCAN', action: 'update', diff: ['name: OCR Scans → Document scans', 'unit: scan → page'] },
      { kind: 'plan', key: 'starter', action: 'update', version: 1, diff: ['name: Starter → Starter 2026'] },
    ]);
    expect(await loadCurrentPlanVersion(db.knex, 'starter')).toMatchObject({ version: 1, name: 'Starter 2026' });
    expect(await loadFeature(db.knex, 'OCR_SCAN')).toMatchObject({ name: 'Document scans', unit: 'page' });
    expect(await loadFeature(db.knex, 'STORAGE_GB')).toMatchObject({ name: 'Storage' });
    const update = await db.knex('audit_log').where({ entity: 'feature', action: 'update' }).first();
    expect(JSON.parse(update.before)).toMatchObject({ name: 'OCR Scans' });
    expect(JSON.parse(update.after)).toMatchObject({ name: 'Document scans' });
  });

  it('lets a later file reference stored features, refuses type changes, and writes nothing on error or dry run', async () => {
    const { db } = t();
    await applyCatalog(db, catalog(), opts);
    const pro = { key: 'pro', name: 'Pro', currency: 'USD', price: '99.00', interval: 'month', features: { OCR_SCAN: { included: null } } };
    const dry = await applyCatalog(db, { plans: [pro] }, { ...opts, dryRun: true });
    expect(dry.changes).toEqual([{ kind: 'plan', key: 'pro', action: 'create', version: 1 }]);
    expect(await loadCurrentPlanVersion(db.knex, 'pro')).toBeNull();
    const before = await auditCount(db);
    // one good plan plus one bad feature: nothing at all is applied
    await expect(
      applyCatalog(db, { features: [{ key: 'STORAGE_GB', type: 'boolean' }], plans: [pro] }, opts),
    ).rejects.toMatchObject({ code: 'catalog_invalid', details: [{ path: 'features[0].type' }] });
    expect(await loadCurrentPlanVersion(db.knex, 'pro')).toBeNull();
    expect(await auditCount(db)).toBe(before);
    await applyCatalog(db, { plans: [pro] }, opts);
    expect(await loadCurrentPlanVersion(db.knex, 'pro')).toMatchObject({ version: 1, features: { OCR_SCAN: { included: null } } });
  });

  it('serializes concurrent applies: each new version gets its own number', async () => {
    const { db } = t();
    await applyCatalog(db, catalog(), opts);
    const priced = (price: string) => ({ plans: [{ ...catalog().plans[0], price }] });
    const results = await Promise.all([applyCatalog(db, priced('31.00'), opts), applyCatalog(db, priced('32.00'), opts)]);
    expect(results.map((r) => r.changes[0].version).sort()).toEqual([2, 3]);
    const versions = await db.knex('plan_versions').where({ plan_key: 'starter' }).orderBy('version');
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3]);
    const current = await loadCurrentPlanVersion(db.knex, 'starter');
    expect(current!.version).toBe(3);
  });

  it('CLI: applies JSON and YAML files, prints the diff, says unchanged, and lists every problem', async () => {
    const { url } = t();
    const dir = tempDir('billing-catalog-');
    const yamlFile = path.join(dir, 'catalog.yaml');
    writeFileSync(
      yamlFile,
      [
        'features:',
        '  - { key: OCR_SCAN, name: OCR Scans, unit: scan }',
        'plans:',
        '  - key: starter',
        '    name: Starter',
        '    currency: USD',
        '    price: "29.00"',
        '    interval: month',
        '    features:',
        '      OCR_SCAN:',
        '        included: 50',
        '        overage: { model: graduated, tiers: [ { upTo: 100, unitPrice: "0.02" }, { upTo: ~, unitPrice: "0.01", flatPrice: "1.00" } ] }',
      ].join('\n'),
    );
    const r1 = await runCli(['catalog', 'apply', yamlFile], { db: url });
    expect(r1.stderr).toBe('');
    expect(r1.code).toBe(0);
    expect(r1.stdout).toMatch(/applied 2 change\(s\)/);
    expect(r1.stdout).toMatch(/plan\s+starter\s+create \(version 1\)/);
    const r2 = await runCli(['catalog', 'apply', yamlFile], { db: url });
    expect(r2.stdout.trim()).toBe('catalog unchanged');

    const r3 = await runCli(['catalog', 'apply', SEED, '--json'], { db: url });
    expect(r3.code).toBe(0);
    const out = JSON.parse(r3.stdout);
    expect(out.noop).toBe(false);
    expect(out.changes).toContainEqual({
      kind: 'plan', key: 'starter', action: 'new_version', version: 2,
      diff: expect.arrayContaining(['trialDays: 0 → 14', 'features.API_CALL: added']),
    });

    const show = await runCli(['catalog', 'show', '--json', '--plan', 'starter', '--version', '1'], { db: url });
    expect(JSON.parse(show.stdout).plans[0]).toMatchObject({ planKey: 'starter', version: 1, trialDays: 0 });

    const badFile = path.join(dir, 'bad.json');
    writeFileSync(badFile, JSON.stringify({ plans: [{ key: 'x', currency: 'USD', price: '1', interval: 'month', features: { NOPE: {}, OCR_SCAN: { included: 'lots' } } }] }));
    const r4 = await runCli(['catalog', 'apply', badFile], { db: url });
    expect(r4.code).toBe(2);
    expect(r4.stderr.split('\n').filter(Boolean)).toEqual([
      `billing: ${badFile}: 2 problems, nothing applied:`,
      '  plans[0].features.NOPE: unknown feature "NOPE" (declare it under "features" or apply it first)',
      '  plans[0].features.OCR_SCAN.included: must be a number or a decimal string',
    ]);
    const r5 = await runCli(['catalog', 'apply', path.join(dir, 'missing.json')], { db: url });
    expect(r5.code).toBe(2);
    expect(r5.stderr).toMatch(/cannot read catalog file .*missing\.json: ENOENT/);
  });
  it('CLI: applies and shows a min feature; uniqueBy on it is refused', async () => {
    const { url } = t();
    const dir = tempDir('billing-catalog-');
    const file = path.join(dir, 'min.json');
    writeFileSync(file, JSON.stringify({ features: [{ key: 'FREE_GB', name: 'Free space', unit: 'GB', aggregation: 'min' }] }));
    const applied = await runCli(['catalog', 'apply', file], { db: url });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    const shown = await runCli(['catalog', 'show'], { db: url });
    expect(shown.stdout).toMatch(/^FREE_GB\s+Free space\s+metered\s+min\s+GB/m);
    const json = await runCli(['catalog', 'show', '--json'], { db: url });
    expect(JSON.parse(json.stdout).features).toContainEqual(expect.objectContaining({ key: 'FREE_GB', aggregation: 'min' }));
    writeFileSync(file, JSON.stringify({ features: [{ key: 'FREE_GB', name: 'Free space', aggregation: 'min', uniqueBy: 'user_id' }] }));
    const refused = await runCli(['catalog', 'apply', file], { db: url });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/features\[0\]\.uniqueBy: only applies to aggregation "unique"/);
  });
  it('CLI: a YAML alias bomb is refused as invalid input (exit 2, one line); a JSON or YAML catalog with a BOM applies', async () => {
    const { url } = t();
    const dir = tempDir('billing-catalog-');
    const bomb = path.join(dir, 'bomb.yaml');
    const lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]'];
    for (let i = 1; i < 9; i++) lines.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(10).fill('*' + String.fromCharCode(96 + i)).join(',')}]`);
    lines.push('features: *i');
    writeFileSync(bomb, lines.join('\n'));
    const r1 = await runCli(['catalog', 'apply', bomb], { db: url });
    expect(r1.code).toBe(2);
    expect(r1.stdout).toBe('');
    expect(r1.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r1.stderr).toMatch(/^billing: cannot parse .*bomb\.yaml as YAML: .*alias/i);

    const json = path.join(dir, 'bom.json');
    writeFileSync(json, '\ufeff' + JSON.stringify(catalog()));
    const r2 = await runCli(['catalog', 'apply', json], { db: url });
    expect(r2.stderr).toBe('');
    expect(r2.code).toBe(0);
    expect(r2.stdout).toMatch(/plan\s+starter\s+create \(version 1\)/);
    const yamlFile = path.join(dir, 'bom.yaml');
    writeFileSync(yamlFile, '\ufeff' + 'features:\n  - { key: NEW_ONE, name: New, unit: x }\n');
    const r3 = await runCli(['catalog', 'apply', yamlFile], { db: url });
    expect(r3.stderr).toBe('');
    expect(r3.code).toBe(0);
  });
});
