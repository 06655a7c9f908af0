import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

// A service imports the package by name and checks/records in-process.
const SCRIPT = `
import { openDb, applyCatalog, createTenant, subscribe, recordUsage, checkEntitlement } from 'billing';
const db = await openDb(process.env.URL);
const now = Date.parse('2026-05-10T00:00:00Z');
const opts = { now, actor: 'svc' };
await applyCatalog(db, { features: [{ key: 'OCR_SCAN', name: 'OCR', unit: 'scan', aggregation: 'sum' }],
  plans: [{ key: 'basic', name: 'Basic', currency: 'USD', price: '10.00', interval: 'month',
    features: { OCR_SCAN: { included: 3, hardStop: true } } }] }, opts);
await createTenant(db, { id: 't1' }, opts);
await subscribe(db, { tenantId: 't1', planKey: 'basic', start: Date.parse('2026-05-01T00:00:00Z') }, opts);
const rec = await recordUsage(db, [{ tenantId: 't1', featureKey: 'OCR_SCAN', quantity: 2, sourceService: 'ocr', sourceEntityId: 'a' },
  { tenantId: 't1', featureKey: 'OCR_SCAN', quantity: 2, sourceService: 'ocr', sourceEntityId: 'a' }], { now });
const check = await checkEntitlement(db, { tenantId: 't1', featureKey: 'OCR_SCAN', quantity: '2' }, { now });
console.log(JSON.stringify({ rec: rec.map((r) => r.status), check }));
await db.close();
`;

describeEachDb('library entry (import from "billing")', (t) => {
  it('records usage and answers entitlement checks in-process', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', SCRIPT], {
      cwd: ROOT,
      env: { ...process.env, URL: t().url },
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.rec).toEqual(['inserted', 'duplicate']);
    expect(out.check).toMatchObject({ allowed: false, reason: 'limit_reached', used: '2', remaining: '1', limit: '3' });
  });
});

