import { expect, it } from 'vitest';
import { applyCatalog } from '../src/catalog/apply.js';
import { UsageGroupCommit } from '../src/serve/group-commit.js';
import type { Db } from '../src/storage/db.js';
import { subscribe } from '../src/subscriptions/lifecycle.js';
import { createTenant } from '../src/subscriptions/tenants.js';
import { describeEachDb } from './helpers/db.js';

const START = Date.parse('2026-01-01T00:00:00Z');
const NOW = Date.parse('2026-01-15T12:00:00Z');

async function seed(db: Db): Promise<void> {
  const opts = { now: START, actor: 'test' };
  await applyCatalog(db, {
    features: [{ key: 'OCR_SCAN', name: 'OCR scans', aggregation: 'sum' }],
    plans: [{ key: 'starter', name: 'Starter', currency: 'USD', price: '29.00', interval: 'month', features: { OCR_SCAN: { included: 50 } } }],
  }, opts);
  await createTenant(db, { id: 'acme' }, opts);
  await subscribe(db, { tenantId: 'acme', planKey: 'starter', start: START }, opts);
}

const ev = (id: string) => ({ tenantId: 'acme', featureKey: 'OCR_SCAN', quantity: 1, sourceService: 'ocr', sourceEntityId: id });

/** A row the database itself refuses: a failure no validation can foresee. */
async function poisonInserts(db: Db, entityId: string): Promise<void> {
  if (db.dialect === 'sqlite') {
    await db.knex.raw(`CREATE TRIGGER poison BEFORE INSERT ON usage_events WHEN NEW.source_entity_id = '${entityId}' BEGIN SELECT RAISE(ABORT, 'poisoned row'); END`);
    return;
  }
  await db.knex.raw(`CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN
    IF NEW.source_entity_id = '${entityId}' THEN RAISE EXCEPTION 'poisoned row'; END IF; RETURN NEW; END $$`);
  await db.knex.raw('CREATE TRIGGER poison BEFORE INSERT ON usage_events FOR EACH ROW EXECUTE FUNCTION poison()');
}

describeEachDb('usage group commit', (t) => {
  it('records concurrent requests in shared transactions, each with its own results', async () => {
    const { db } = t();
    await seed(db);
    const gc = new UsageGroupCommit(db);
    // 30 requests at once; doc-0 is sent twice, by two different requests.
    const requests = [...Array.from({ length: 30 }, (_, i) => [ev(`doc-${i}`)]), [ev('doc-0'), ev('doc-new')]];
    const results = await Promise.all(requests.map((inputs) => gc.record(inputs, NOW)));
    expect(results.slice(0, 30).every(([r]) => r.status === 'inserted')).toBe(true);
    expect(results[30].map((r) => r.status)).toEqual(['duplicate', 'inserted']);
    expect(gc.stats.transactions).toBeLessThan(gc.stats.requests / 4);
    expect(Number((await db.knex('usage_events').count({ n: '*' }))[0].n)).toBe(31);
  });

  it('isolates a request the database refuses: the others of its group still land', async () => {
    const { db } = t();
    await seed(db);
    await poisonInserts(db, 'doc-7');
    const gc = new UsageGroupCommit(db);
    const settled = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => gc.record([ev(`doc-${i}`)], NOW)));
    expect(settled[7]).toMatchObject({ status: 'rejected', reason: expect.objectContaining({ message: expect.stringContaining('poisoned row') }) });
    for (const [i, s] of settled.entries()) if (i !== 7) expect(s).toMatchObject({ status: 'fulfilled', value: [{ status: 'inserted' }] });
    expect(gc.stats.retriedGroups).toBeGreaterThan(0);
    const ids = (await db.knex('usage_events').select('source_entity_id')).map((r) => r.source_entity_id).sort();
    expect(ids).toEqual(Array.from({ length: 12 }, (_, i) => `doc-${i}`).filter((d) => d !== 'doc-7').sort());
  });
});
