// Alert rules (DESIGN.md §15) through the CLI on both databases: usage as a percentage of
// included or of the limit, absolute usage, period spend and low prepaid credit, each firing
// once per rule per billing period (reruns and two concurrent evaluations included).
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { world } from './invoice-world.js';
import { openDb } from '../src/storage/db.js';
import { evaluateAlerts } from '../src/alerts/evaluate.js';
import { addAlertRule } from '../src/alerts/rules.js';

const JAN = '2026-01-01T00:00:00Z';
const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'SEATS', name: 'Seats', unit: 'seat', aggregation: 'max' },
  ],
  plans: [
    {
      key: 'growth', name: 'Growth', currency: 'USD', price: '100.00', interval: 'month',
      features: {
        API_CALL: { included: 1000, overage: { model: 'per_unit', unitPrice: '0.10' } },
        SEATS: { included: 5, hardStop: true, limit: 10, overage: { model: 'per_unit', unitPrice: '8.00' } },
      },
    },
  ],
};

describeEachDb('alerts', (t) => {
  it('fire once per rule per period when usage, spend or prepaid credit crosses the line', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const add = async (args: string[]) => {
      const r = await cli(['alert', 'add', 'acme', ...args], JAN);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^al_[0-9a-f]{16}\n$/);
      return r.stdout.trim();
    };
    const aggregate = async (now: string) => {
      const r = await cli(['aggregate', '--json'], now);
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout).alerts.map((a: any) => `${a.rule} ${a.value}${a.currency ? ` ${a.currency}` : ''} ${a.period.start.slice(0, 10)}`);
    };
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    expect((await cli(['credit', 'grant', 'acme', '30.00'], JAN)).code).toBe(0);
    expect((await cli(['webhook', 'add', 'http://127.0.0.1:9/hooks', '--secret', 'whsec_0123456789abcdef', '--events', 'alert.triggered,credit.low'], JAN)).code).toBe(0);
    const eighty = await add(['API_CALL', '--usage-percent', '80']);
    const absolute = await add(['API_CALL', '--usage', '1500']);
    const seatsOfLimit = await add(['SEATS', '--usage-percent', '90', '--of', 'limit']);
    const spend = await add(['--spend', '150.00']);
    const featureSpend = await add(['API_CALL', '--spend', '20']);
    const lowCredit = await add(['--credit-below', '40']);

    // Below every usage line; the credit balance (30) is already below 40.
    await w.usage('2026-01-05T00:00:00Z', 'acme', 'API_CALL', '799');
    expect(await aggregate('2026-01-05T01:00:00Z')).toEqual([`${lowCredit} 30.00 USD 2026-01-01`]);
    // 800 of 1000 included is exactly 80%; a rerun fires nothing again.
    await w.usage('2026-01-06T00:00:00Z', 'acme', 'API_CALL', '1');
    expect(await aggregate('2026-01-06T01:00:00Z')).toEqual([`${eighty} 80 2026-01-01`]);
    expect(await aggregate('2026-01-06T02:00:00Z')).toEqual([]);
    // 1600 calls: 1500 absolute; 600 billable × 0.10 = 60.00 feature spend; 9 seats (4 × 8.00): invoice 192.00.
    await w.usage('2026-01-07T00:00:00Z', 'acme', 'API_CALL', '800');
    await w.usage('2026-01-07T00:00:00Z', 'acme', 'SEATS', '9');
    expect((await aggregate('2026-01-07T01:00:00Z')).sort()).toEqual(
      [`${absolute} 1600 2026-01-01`, `${seatsOfLimit} 90 2026-01-01`, `${spend} 192.00 USD 2026-01-01`, `${featureSpend} 60.00 USD 2026-01-01`].sort(),
    );
    expect(await aggregate('2026-01-20T00:00:00Z')).toEqual([]);

    // February is a new period: the 80% rule fires again once usage gets there; a removed rule never.
    expect((await cli(['alert', 'remove', absolute], '2026-01-31T00:00:00Z')).stdout).toBe(`removed ${absolute} of acme\n`);
    await w.usage('2026-02-03T00:00:00Z', 'acme', 'API_CALL', '2000');
    const feb = await aggregate('2026-02-03T01:00:00Z');
    expect(feb).toContain(`${eighty} 200 2026-02-01`);
    expect(feb.some((l: string) => l.startsWith(absolute))).toBe(false);

    const fired = JSON.parse((await cli(['alert', 'list', '--fired', '--json', '--tenant', 'acme'], '2026-02-04T00:00:00Z')).stdout);
    expect(fired.filter((f: any) => f.rule === eighty).map((f: any) => f.period.start)).toEqual(['2026-02-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z']);
    expect(fired[0]).toMatchObject({ tenant: 'acme', kind: expect.any(String), description: expect.any(String), fired: '2026-02-03T01:00:00.000Z' });
    const text = (await cli(['alert', 'list', '--fired'], '2026-02-04T00:00:00Z')).stdout;
    expect(text).toContain('API_CALL usage reaches 80% of included');
    const rules = JSON.parse((await cli(['alert', 'list', '--json'], '2026-02-04T00:00:00Z')).stdout);
    expect(rules.map((r: any) => r.id)).not.toContain(absolute);
    expect(JSON.parse((await cli(['alert', 'list', '--all', '--json'], '2026-02-04T00:00:00Z')).stdout)).toHaveLength(6);
    // Each firing is an outgoing event written with it: credit.low for the balance, alert.triggered otherwise.
    const events = await db.knex('webhook_events').where({ tenant_id: 'acme' }).whereIn('type', ['alert.triggered', 'credit.low']).select('type', 'body');
    const bodies = events.map((e) => ({ type: e.type, ...JSON.parse(e.body) }));
    // The balance is still below the line in February: a new period, a new firing.
    expect(bodies.filter((b) => b.type === 'credit.low').map((b) => `${b.data.rule} ${b.data.period.start.slice(0, 10)}`).sort()).toEqual([`${lowCredit} 2026-01-01`, `${lowCredit} 2026-02-01`]);
    expect(bodies.filter((b) => b.type === 'alert.triggered').map((b) => `${b.data.rule} ${b.data.period.start.slice(0, 10)}`).sort()).toEqual(
      fired.filter((f: any) => f.rule !== lowCredit).map((f: any) => `${f.rule} ${f.period.start.slice(0, 10)}`).sort(),
    );
    expect(Number((await db.knex('webhook_deliveries').whereIn('event_id', bodies.map((b) => b.id)).count({ n: '*' }))[0].n)).toBe(bodies.length);
    const audit = await db.knex('audit_log').where({ entity: 'alert_rule' }).select('action');
    expect(audit.map((a) => a.action).sort()).toEqual(['create', 'create', 'create', 'create', 'create', 'create', 'delete']);
  });

  it('two evaluations at once fire a rule once', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'growth', 0);
    const rule = await addAlertRule(db, { tenantId: 'acme', featureKey: 'API_CALL', kind: 'usage', threshold: '10' }, { now: Date.parse(JAN), actor: 'test' });
    await w.usage('2026-01-05T00:00:00Z', 'acme', 'API_CALL', '50');
    const a = await openDb(url);
    const b = await openDb(url);
    try {
      const now = Date.parse('2026-01-05T01:00:00Z');
      const runs = await Promise.all([evaluateAlerts(a, { now }), evaluateAlerts(b, { now }), evaluateAlerts(a, { now })]);
      expect(runs.flat().map((f) => f.ruleId)).toEqual([rule.id]);
      expect(Number((await db.knex('alert_firings').count({ n: '*' }))[0].n)).toBe(1);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('refuses bad rules with one line on stderr and a clean stdout', async () => {
    const { db, url } = t();
    const w = world(db);
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    const cases: Array<[string[], RegExp]> = [
      [['alert', 'add', 'acme', 'API_CALL'], /exactly one of --usage-percent/],
      [['alert', 'add', 'acme', 'API_CALL', '--usage', '5', '--spend', '3'], /exactly one of/],
      [['alert', 'add', 'acme', '--usage', '5'], /--usage needs a FEATURE/],
      [['alert', 'add', 'acme', 'API_CALL', '--credit-below', '5'], /takes no FEATURE/],
      [['alert', 'add', 'acme', 'API_CALL', '--usage-percent', '-3'], /must be a positive decimal/],
      [['alert', 'add', 'acme', 'API_CALL', '--usage-percent', '80', '--of', 'x'], /--of "x" is not one of included, limit/],
      [['alert', 'add', 'nosuch', 'API_CALL', '--usage', '5'], /unknown tenant "nosuch"/],
      [['alert', 'add', 'acme', 'NOPE', '--usage', '5'], /unknown feature "NOPE"/],
      [['alert', 'remove', 'al_nosuch'], /no alert rule "al_nosuch"/],
    ];
    for (const [args, err] of cases) {
      const r = await runCli(args, { db: url, now: JAN });
      expect(r.code, args.join(' ')).not.toBe(0);
      expect(r.stdout, args.join(' ')).toBe('');
      expect(r.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
      expect(r.stderr, args.join(' ')).toMatch(err);
    }
  });
});

describe('alert rules text', () => {
  it('describe what they watch', async () => {
    const { describeRule } = await import('../src/alerts/rules.js');
    expect(describeRule({ kind: 'spend', threshold: '500', base: null, featureKey: null })).toBe('period spend on all features reaches 500');
    expect(describeRule({ kind: 'credit_below', threshold: '20', base: null, featureKey: null })).toBe('prepaid credit falls below 20');
  });
});
