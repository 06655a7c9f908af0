// Grants of units (DESIGN.md §14, docs/reference.md "Unit grants") through the CLI on both
// databases: drawing order, a grant expiring mid-period, one effective mid-period, a void, late
// usage on the period's recorded draw, report, estimate and check agreeing with the invoice, and verify.
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world } from './invoice-world.js';
import { drawGrants, type UnitGrant } from '../src/rate/grants.js';
import { discoverTables } from '../src/ops/tables.js';
import { checkEntitlement } from '../src/entitlements/check.js';
import { addUnitGrant, voidUnitGrant } from '../src/subscriptions/unit-grants.js';
import { voidInvoice } from '../src/invoice/lifecycle.js';

const JAN = '2026-01-01T00:00:00Z';
const CATALOG = {
  features: [{ key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' }],
  plans: [
    {
      key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month',
      features: { API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.01' } } },
    },
  ],
};

describeEachDb('unit grants', (t) => {
  it('top up included units in drawing order until used, expired or voided; invoices, report, estimate and check agree', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now = JAN) => runCli(args, { db: url, now });
    const add = async (args: string[], now = JAN) => {
      const r = await cli(['grant', 'add', 'acme', 'API_CALL', ...args], now);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^ug_[0-9a-f]{16}\n$/);
      return r.stdout.trim();
    };
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    const a = await add(['1000', '--expires', '2026-02-15T00:00:00Z']);
    const c = await add(['300', '--priority', '1']);
    const b = await add(['2000', '--priority', '2']);

    // January: 500 beyond the plan, all from A (priority 0).
    await w.usage('2026-01-15T00:00:00Z', 'acme', 'API_CALL', '1500');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z')).code).toBe(0);
    // February: A expires mid-period, so it is live in it and gives 200 more; January's late +100
    // is rated on what January drew (1500 included), not on what is left.
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'API_CALL', '100', '2026-01-20T00:00:00Z');
    await w.usage('2026-02-12T00:00:00Z', 'acme', 'API_CALL', '1200');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-03-01T01:00:00Z')).code).toBe(0);
    // March: A has expired (300 left lapse); D is effective mid-March, so it is live in March;
    // B is voided mid-March, so it is live in March but in no later period.
    const d = await add(['400', '--effective', '2026-03-20T00:00:00Z'], '2026-03-01T02:00:00Z');
    expect((await cli(['grant', 'void', 'acme', b], '2026-03-10T00:00:00Z')).stdout).toBe(`voided ${b} of acme\n`);
    await w.usage('2026-03-21T00:00:00Z', 'acme', 'API_CALL', '4000');

    // Uninvoiced March: report and check count the remaining balance without recording it.
    const report = JSON.parse((await cli(['report', '--json'], '2026-03-25T00:00:00Z')).stdout);
    expect(report[0].features[0]).toMatchObject({ used: '4000', included: '3700', overage: '300', overageAmount: '3.00' });
    const estimate = JSON.parse((await cli(['estimate', 'acme', '--json'], '2026-03-25T00:00:00Z')).stdout);
    expect(estimate.features[0]).toMatchObject({ used: '4000', overageAmount: '3.00' });
    expect(estimate.invoice.total).toBe('103.00');
    const check = JSON.parse((await cli(['check', 'acme', 'API_CALL', '--json'], '2026-03-25T00:00:00Z')).stdout);
    expect(check).toMatchObject({ allowed: true, reason: 'overage', used: '4000', included: '3700', limit: '3700', remaining: '0' });
    expect(check.grants).toEqual([
      { id: d, balance: '400', drawn: '400', remaining: '0', expires: null },
      { id: c, balance: '300', drawn: '300', remaining: '0', expires: null },
      { id: b, balance: '2000', drawn: '2000', remaining: '0', expires: null },
    ]);
    expect((await db.knex('grant_uses').where('tenant_id', 'acme')).length).toBe(2);

    expect((await cli(['invoice', 'generate', '--finalize'], '2026-04-01T01:00:00Z')).code).toBe(0);
    // April: nothing live has a balance (A expired, B void, C and D used up).
    await w.usage('2026-04-15T00:00:00Z', 'acme', 'API_CALL', '1200');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-05-01T01:00:00Z')).code).toBe(0);

    const lines = (await invoicesByNumber(db)).map((i) => i.lines.filter((l) => l.featureKey).map((l) => `${l.kind} ${l.description} ${l.amount}`));
    expect(lines).toEqual([
      ['overage API calls: 1500 used, 1500 included, 0 billable 0.00'],
      ['overage API calls: 1200 used, 1200 included, 0 billable 0.00', 'late_usage Late usage for 2026-01-01 to 2026-02-01: API calls, +100 (now 1600) 1.00'],
      ['overage API calls: 4000 used, 3700 included, 300 billable 3.00'],
      ['overage API calls: 1200 used, 1000 included, 200 billable 2.00'],
    ]);

    const list = JSON.parse((await cli(['grant', 'list', 'acme', '--json'])).stdout);
    expect(list.map((g: any) => [g.id, g.quantity, g.used, g.remaining, g.priority, g.voidedAt])).toEqual([
      [a, '1000', '700', '300', 0, null],
      [c, '300', '300', '0', 1, null],
      [b, '2000', '2000', '0', 2, '2026-03-10T00:00:00.000Z'],
      [d, '400', '400', '0', 0, null],
    ]);
    expect(list[0]).toMatchObject({ feature: 'API_CALL', effective: '2026-01-01T00:00:00.000Z', expires: '2026-02-15T00:00:00.000Z' });
    const audit = JSON.parse((await cli(['audit', '--json', '--tenant', 'acme'])).stdout);
    expect(audit.filter((e: any) => e.entity === 'unit_grant').map((e: any) => `${e.action} ${e.entityId}`)).toEqual([
      `create ${a}`, `create ${c}`, `create ${b}`, `create ${d}`, `void ${b}`,
    ]);
    expect((await cli(['verify'])).code).toBe(0);

    // A draw beyond the grant's quantity is named by verify; restored, it passes again.
    const use = () => db.knex('grant_uses').where({ tenant_id: 'acme', grant_id: b });
    await use().update({ quantity: '2500' });
    const r = await cli(['verify', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).violations.map((v: any) => `${v.check}: ${v.message}`)).toEqual([
      `grants: tenant acme: unit grant ${b} gave 2500 of 2000 API_CALL: more than its quantity`,
    ]);
    await use().update({ quantity: '2000' });
    expect((await cli(['verify'])).code).toBe(0);
  });

  it('overage re-rates a closed period when a grant live in it is added or voided later (back-dated grants)', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const overage = async (now: string) => {
      const r = await cli(['overage', '--json'], now);
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout).charges.map((c: any) => `${c.period.start} ${c.included} ${c.billable} ${c.amount}`);
    };
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    await w.usage('2026-01-15T00:00:00Z', 'acme', 'API_CALL', '1500');
    expect((await cli(['aggregate'], '2026-02-02T00:00:00Z')).code).toBe(0);
    const jan = '2026-01-01T00:00:00.000Z';
    expect(await overage('2026-02-02T00:00:00Z')).toEqual([`${jan} 1000 500 5.00`]);
    // Closed and unchanged: nothing to rate.
    expect(await overage('2026-02-03T00:00:00Z')).toEqual([]);
    const g = (await cli(['grant', 'add', 'acme', 'API_CALL', '300', '--effective', JAN], '2026-02-04T00:00:00Z')).stdout.trim();
    expect(await overage('2026-02-05T00:00:00Z')).toEqual([`${jan} 1300 200 2.00`]);
    expect(await overage('2026-02-06T00:00:00Z')).toEqual([]);
    expect((await cli(['grant', 'void', 'acme', g], '2026-02-07T00:00:00Z')).code).toBe(0);
    // Voided after January ended: it was live all of January, so January keeps it.
    expect(await overage('2026-02-08T00:00:00Z')).toEqual([`${jan} 1300 200 2.00`]);
    expect(await overage('2026-02-09T00:00:00Z')).toEqual([]);
  });

  it('refuses bad input with one line on stderr and a clean stdout', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    const cases: Array<[string[], RegExp]> = [
      [['grant', 'add', 'acme', 'API_CALL', 'ten'], /quantity "ten" must be a positive decimal/],
      [['grant', 'add', 'acme', 'API_CALL', '0'], /quantity "0" must be a positive decimal/],
      [['grant', 'add', 'acme', 'NOPE', '10'], /unknown feature "NOPE"/],
      [['grant', 'add', 'ghost', 'API_CALL', '10'], /unknown tenant "ghost"/],
      [['grant', 'add', 'acme', 'API_CALL', '10', '--expires', '2025-01-01T00:00:00Z'], /--expires must be after the grant takes effect/],
      [['grant', 'void', 'acme', 'ug_missing', '--json'], /no active unit grant "ug_missing"/],
    ];
    for (const [args, message] of cases) {
      const r = await runCli(args, { db: url, now: JAN });
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    }
    expect((await runCli(['grant', 'list', 'acme'], { db: url })).stdout).toBe('no unit grants for acme\n');
  });

  it("a cached check sees a grant added, an invoice's draw and a voided invoice at once (terms epoch)", async () => {
    const { db } = t();
    const w = world(db);
    const o = (iso: string) => ({ now: Date.parse(iso), actor: 'test' });
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    await w.usage('2026-01-10T00:00:00Z', 'acme', 'API_CALL', '1200');
    const check = async (iso: string) => checkEntitlement(db, { tenantId: 'acme', featureKey: 'API_CALL' }, { now: Date.parse(iso) });
    expect((await check('2026-01-20T00:00:00Z')).included).toBe('1000');
    const g = await addUnitGrant(db, { tenantId: 'acme', featureKey: 'API_CALL', quantity: '500' }, o('2026-01-20T00:00:00Z'));
    expect(await check('2026-01-20T00:00:01Z')).toMatchObject({ included: '1500', grants: [{ id: g.id, balance: '500', drawn: '200', remaining: '300' }] });
    // January's invoice draws 200: February sees 300 left.
    await w.generate('2026-02-01T01:00:00Z', { finalize: true });
    expect((await check('2026-02-02T00:00:00Z')).grants).toEqual([{ id: g.id, balance: '300', drawn: '0', remaining: '300', expires: null }]);
    const [jan] = await invoicesByNumber(db);
    await voidInvoice(db, jan.id, { reason: 'test', now: Date.parse('2026-02-02T01:00:00Z'), actor: 'test' });
    expect((await check('2026-02-02T02:00:00Z')).grants?.[0].balance).toBe('500');
    await voidUnitGrant(db, 'acme', g.id, o('2026-02-02T03:00:00Z'));
    // Voided mid-February: still live in February, in no later period.
    expect((await check('2026-02-02T04:00:00Z')).included).toBe('1500');
    expect((await check('2026-03-02T00:00:00Z')).grants).toBeUndefined();
  });

  it('backup and restore carry grants and their draws as tenant tables', async () => {
    const { db } = t();
    const tables = new Map((await discoverTables(db)).map((x) => [x.name, x]));
    expect(tables.get('unit_grants')?.tenantColumn).toBe('tenant_id');
    expect(tables.get('grant_uses')?.tenantColumn).toBe('tenant_id');
  });
});

describe('drawGrants', () => {
  const g = (id: string, seq: number, quantity: string, priority: number, expiresAt: number | null, draws: Array<[number, string]> = []): UnitGrant => ({
    id, seq, featureKey: 'F', quantity, priority, effectiveAt: 0, expiresAt, voidedAt: null, draws: new Map(draws),
  });
  const p = { start: 100, end: 200 };
  it('draws by priority, then earliest expiry, then oldest, from what other periods left', () => {
    const grants = [g('old', 1, '5', 1, null), g('new', 2, '5', 1, null), g('soon', 3, '5', 1, 300), g('first', 4, '2', 0, null, [[0, '1']])];
    expect(drawGrants(grants, 'F', p, '10', '22').map((d) => `${d.grantId} ${d.quantity} ${d.remaining}`)).toEqual([
      'first 1 0', 'soon 5 0', 'old 5 0', 'new 1 4',
    ]);
    expect(drawGrants(grants, 'F', p, '10', '9')).toEqual([]);
    expect(drawGrants(grants, 'F', p, null, '99')).toEqual([]);
  });
  it("keeps a period's recorded draw as it was", () => {
    const grants = [g('a', 1, '10', 0, null, [[100, '3']]), g('b', 2, '10', 0, null)];
    expect(drawGrants(grants, 'F', p, '0', '50')).toEqual([{ grantId: 'a', quantity: '3', remaining: '7' }]);
    // Invoiced without drawing (a zero draw marks it): late usage draws nothing either.
    expect(drawGrants([g('a', 1, '10', 0, null, [[100, '0']])], 'F', p, '0', '50')).toEqual([]);
  });
  it('ignores grants not live in the period', () => {
    const expired = { ...g('x', 1, '10', 0, 100) };
    const late = { ...g('y', 2, '10', 0, null), effectiveAt: 200 };
    const voided = { ...g('z', 3, '10', 0, null), voidedAt: 100 };
    expect(drawGrants([expired, late, voided], 'F', p, '0', '5')).toEqual([]);
    expect(drawGrants([{ ...voided, voidedAt: 101 }], 'F', p, '0', '5')).toEqual([{ grantId: 'z', quantity: '5', remaining: '5' }]);
  });
});
