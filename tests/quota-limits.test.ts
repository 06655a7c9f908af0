import { expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import type { Db } from '../src/storage/db.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';

const START = Date.parse('2026-01-01T00:00:00Z');
const NOW = '2026-01-15T12:00:00Z';

// API_CALL: hard stop at included (limit defaulted); OCR_SCAN: 10,000 with a hard stop and no
// overage price; REPORTS: an explicit limit above included, overage billed in between.
const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', aggregation: 'sum' },
    { key: 'OCR_SCAN', name: 'OCR scans', aggregation: 'sum' },
    { key: 'REPORTS', name: 'Reports', aggregation: 'sum' },
  ],
  plans: [{
    key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month',
    features: {
      API_CALL: { included: 10, hardStop: true },
      OCR_SCAN: { included: 10000, hardStop: true },
      REPORTS: { included: 10, hardStop: true, limit: 100, overage: { model: 'per_unit', unitPrice: '0.50' } },
    },
  }],
};

async function seed(db: Db): Promise<void> {
  const opts = { now: START, actor: 'test' };
  await applyCatalog(db, CATALOG, opts);
  await createTenant(db, { id: 'acme' }, opts);
  await subscribe(db, { tenantId: 'acme', planKey: 'starter', start: START }, opts);
}

describeEachDb('quota overrides and hard stops', (t) => {
  const cli = (args: string[]) => runCli(args, { db: t().url, now: NOW });
  const set = (feature: string, ...flags: string[]) => cli(['quota', 'set', 'acme', feature, ...flags]);
  /** [allowed, limit] for a request of `quantity` with nothing used yet. */
  const check = async (feature: string, quantity: number) => {
    const r = JSON.parse((await cli(['check', 'acme', feature, '--quantity', String(quantity), '--json'])).stdout);
    return [r.allowed, r.limit];
  };

  it('a limit that defaulted to included follows the overridden included', async () => {
    await seed(t().db);
    expect((await set('API_CALL', '--included', '20')).code).toBe(0);
    expect([await check('API_CALL', 20), await check('API_CALL', 21)]).toEqual([[true, '20'], [false, '20']]);

    expect((await set('OCR_SCAN', '--included', '50', '--hard-stop')).code).toBe(0);
    expect([await check('OCR_SCAN', 50), await check('OCR_SCAN', 51)]).toEqual([[true, '50'], [false, '50']]);

    // An explicit override limit wins; `--limit default` goes back to following included.
    expect((await set('API_CALL', '--limit', '30')).code).toBe(0);
    expect(await check('API_CALL', 30)).toEqual([true, '30']);
    expect((await set('API_CALL', '--limit', 'default')).code).toBe(0);
    expect(await check('API_CALL', 21)).toEqual([false, '20']);
  });

  it('refuses a limit below included, however the combination arises (exit 2)', async () => {
    await seed(t().db);
    const low = await set('API_CALL', '--limit', '5');
    expect([low.code, low.stderr]).toEqual([2, expect.stringContaining('limit 5 is below included 10')]);

    // The plan's explicit limit (100) stays when included moves below it...
    expect((await set('REPORTS', '--included', '50')).code).toBe(0);
    expect(await check('REPORTS', 100)).toEqual([true, '100']);
    // ...and a larger included needs its own limit.
    const above = await set('REPORTS', '--included', '200');
    expect([above.code, above.stderr]).toEqual([2, expect.stringContaining("the plan's limit 100 is below included 200")]);
    expect((await set('REPORTS', '--included', '200', '--limit', '250')).code).toBe(0);
    expect(await check('REPORTS', 250)).toEqual([true, '250']);
    const back = await set('REPORTS', '--limit', 'default');
    expect([back.code, back.stderr]).toEqual([2, expect.stringContaining("the plan's limit 100 is below included 200")]);
    const unlimited = await set('API_CALL', '--included', 'unlimited');
    expect([unlimited.code, unlimited.stderr]).toEqual([2, expect.stringContaining('a hard stop needs a limit')]);
    // Nothing refused was stored.
    expect(JSON.parse((await cli(['quota', 'list', 'acme', '--json'])).stdout)).toEqual([
      { tenantId: 'acme', featureKey: 'REPORTS', included: '200', limit: '250' },
    ]);
  });
});
