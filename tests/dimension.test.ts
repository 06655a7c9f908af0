// Prices by dimension (DESIGN.md §14, docs/reference.md "Catalog files") through the CLI on
// both databases: two models with different prices, values without an entry and events
// without the field priced by "*", included per value (a value exactly at its included),
// JPY rounding per value, a hard stop per value in `billing check`, late usage of one value;
// rated charges, invoice lines and verify agreeing. Then validation's errors.
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world } from './invoice-world.js';
import { validateCatalog } from '../src/catalog/validate.js';
import { BillingError } from '../src/domain/errors.js';
import type { AddressInfo } from 'node:net';
import { createServer, stopServer } from '../src/serve/server.js';
import { recordUsage } from '../src/ingest/record.js';

const SECRET = 'svc-secret-dim-0123456789';

const JAN = '2026-01-01T00:00:00Z';
const FEB = '2026-02-01T00:00:00Z';
const MAR = '2026-03-01T00:00:00Z';
const day = (d: number) => new Date(Date.parse(JAN) + (d - 1) * 86_400_000).toISOString();
const unit = (p: string) => ({ model: 'per_unit', unitPrice: p });

const FEATURE = { key: 'TOKENS', name: 'AI tokens', aggregation: 'sum' };
const PLANS = [
  {
    key: 'ai', name: 'AI', currency: 'USD', price: '0', interval: 'month',
    features: {
      TOKENS: {
        dimension: 'model',
        prices: [
          { match: 'gpt-4', included: 100, overage: unit('0.03'), hardStop: true, limit: 150 },
          { match: 'gpt-3.5', included: 1000, overage: unit('0.001') },
          { match: '*', included: 0, overage: unit('0.01') },
        ],
      },
    },
  },
  {
    key: 'ai-jpy', name: 'AI JPY', currency: 'JPY', price: '0', interval: 'month',
    features: { TOKENS: { dimension: 'model', prices: [{ match: 'gpt-4', included: 0, overage: unit('0.5') }, { match: '*', included: 0, overage: unit('0.5') }] } },
  },
];

/** [tenant, model (null: no field), quantity, day of January]. */
const EVENTS: Array<[string, string | null, string, number]> = [
  ['usd', 'gpt-4', '130', 2], // 30 over 100 at 0.03 = 0.90
  ['usd', 'gpt-3.5', '1000', 3], // exactly its included: 0.00
  ['usd', 'claude', '5', 4], // no entry: "*", 5 at 0.01 = 0.05
  ['usd', null, '7', 5], // no field: "*" too, its own value, 0.07
  ['jpy', 'gpt-4', '3', 2], // 1.5 → 2
  ['jpy', 'claude', '1', 3], // 0.5 → 1: the feature is 3, not round(2.0) = 2
];

/** Expected lines per tenant: [dimension value, description after "AI tokens ", amount], values by name. */
const LINES: Record<string, Array<[string, string, string]>> = {
  usd: [
    ['*', '(*): 7 used, 0 included, 7 billable', '0.07'],
    ['claude', '(claude): 5 used, 0 included, 5 billable', '0.05'],
    ['gpt-3.5', '(gpt-3.5): 1000 used, 1000 included, 0 billable', '0.00'],
    ['gpt-4', '(gpt-4): 130 used, 100 included, 30 billable', '0.90'],
  ],
  jpy: [
    ['claude', '(claude): 1 used, 0 included, 1 billable', '1'],
    ['gpt-4', '(gpt-4): 3 used, 0 included, 3 billable', '2'],
  ],
};

function catalogFile(): string {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'dim-')), 'catalog.json');
  writeFileSync(file, JSON.stringify({ features: [FEATURE], plans: PLANS }));
  return file;
}

describeEachDb('prices by dimension', (t) => {
  it('rates each value on its own entry in overage and invoices, checks each value, bills late usage per value', async () => {
    const { db, url } = t();
    const w = world(db);
    const run = (args: string[], now: string, input?: string) => runCli(args, { db: url, now, input });
    const cli = async (args: string[], now: string, input?: string) => {
      const r = await run(args, now, input);
      if (args[0] !== 'ingest') expect(r.stderr, args.join(' ')).toBe('');
      expect(r.code, r.stdout + r.stderr).toBe(0);
      return r.stdout;
    };
    await cli(['catalog', 'apply', catalogFile()], JAN);
    // One row per prices entry.
    const show = (await cli(['catalog', 'show', '--plan', 'ai'], JAN)).split('\n');
    expect(show.filter((l) => l.startsWith('TOKENS model=')).map((l) => l.split(/\s{2,}/).slice(0, 6))).toEqual([
      ['TOKENS model=gpt-4', 'yes', '100', 'yes', '150', '0.03/unit'],
      ['TOKENS model=gpt-3.5', 'yes', '1000', 'no', '0.001/unit'],
      ['TOKENS model=*', 'yes', '0', 'no', '0.01/unit'],
    ]);
    await w.tenant(JAN, 'usd');
    await w.subscribe(JAN, 'usd', 'ai', 0);
    await w.tenant(JAN, 'jpy');
    await w.subscribe(JAN, 'jpy', 'ai-jpy', 0);
    const ndjson = (events: typeof EVENTS, prefix: string) =>
      events
        .map(([tenant, model, quantity, d], k) =>
          JSON.stringify({ tenant_id: tenant, feature: 'TOKENS', quantity, occurred_at: day(d), event_id: `${prefix}${k}`, ...(model === null ? {} : { metadata: { model } }) }),
        )
        .join('\n') + '\n';
    await cli(['ingest', '-', '--format', 'ndjson'], day(10), ndjson(EVENTS, 'e'));

    // Each value is its own entitlement: gpt-4 has 20 left before its hard stop at 150.
    const check = async (args: string[]) => {
      const r = await run(['check', 'usd', 'TOKENS', ...args, '--json'], day(10));
      return { code: r.code, ...(r.code === 2 || r.stdout === '' ? { stderr: r.stderr } : JSON.parse(r.stdout)) } as Record<string, unknown>;
    };
    expect(await check(['--dimension', 'gpt-4', '--quantity', '20'])).toMatchObject({ code: 0, allowed: true, reason: 'overage', used: '130', included: '100', limit: '150', remaining: '20', hardStop: true, dimension: { field: 'model', value: 'gpt-4' } });
    expect(await check(['--dimension', 'gpt-4', '--quantity', '21'])).toMatchObject({ code: 3, allowed: false, reason: 'limit_reached' });
    expect(await check(['--dimension', 'gpt-3.5', '--quantity', '0'])).toMatchObject({ code: 0, allowed: true, reason: 'within_plan', used: '1000', included: '1000', remaining: '0' });
    expect(await check(['--dimension', 'claude'])).toMatchObject({ code: 0, allowed: true, reason: 'overage', used: '5', included: '0', hardStop: false });
    expect(await check(['--dimension', '*'])).toMatchObject({ code: 0, used: '7' });
    expect(await check(['--dimension', 'llama'])).toMatchObject({ code: 0, used: '0', included: '0' });
    const bare = await check([]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain('"model"');
    expect((await run(['check', 'usd', 'TOKENS', '--dimension', 'gpt-4', '--quantity', '21'], day(10))).stdout).toContain('denied: usd TOKENS (model gpt-4) x21: limit reached');

    // Reports and history: the feature's row sums its values, each value a row under it.
    const report = JSON.parse(await cli(['report', '--tenant', 'usd', '--json'], day(10)))[0].features[0];
    expect(report).toMatchObject({ featureKey: 'TOKENS', used: '1142', overageAmount: '1.02', dimension: 'model' });
    expect(report.values.map((v: { value: string; used: string; included: string; overage: string; overageAmount: string }) => [v.value, v.used, v.included, v.overage, v.overageAmount])).toEqual([
      ['*', '7', '0', '7', '0.07'],
      ['claude', '5', '0', '5', '0.05'],
      ['gpt-3.5', '1000', '1000', '0', '0.00'],
      ['gpt-4', '130', '100', '30', '0.90'],
    ]);
    const jpy = JSON.parse(await cli(['report', '--tenant', 'jpy', '--json'], day(10)))[0];
    expect([jpy.features[0].overageAmount, jpy.features[0].values.map((v: { overageAmount: string }) => v.overageAmount), jpy.totalAmount]).toEqual(['3', ['1', '2'], '3']);
    // The estimate projects each value at the run rate (31 / 9 days) and prices each on its entry:
    // gpt-4 447.777778 → 10.43, gpt-3.5 3444.444444 → 2.44, claude 17.222222 → 0.17, * 24.111111 → 0.24.
    const estimate = JSON.parse(await cli(['estimate', 'usd', '--json'], day(10)));
    expect(estimate.features[0]).toMatchObject({ projection: 'run_rate', projectedUsed: '3933.555555', overageAmount: '1.02', projectedOverageAmount: '13.28' });
    expect(estimate.projectedTotalAmount).toBe('13.28');
    const table = await cli(['report', '--tenant', 'usd'], day(10));
    expect(table).toMatch(/\n {2}model=gpt-4 +130 +100 +30 +0\.90/);
    const history = await cli(['history', 'usd'], day(10));
    expect(history).toMatch(/ {2}model=claude +5 +5 +0\.05/);

    // An alert on the feature measures its usage over all values (1142), without failing the aggregate stage.
    await cli(['alert', 'add', 'usd', 'TOKENS', '--usage', '1000'], day(10));
    await cli(['aggregate'], day(10));
    expect(JSON.parse(await cli(['alert', 'list', '--fired', '--json'], day(10)))).toMatchObject([{ feature: 'TOKENS', value: '1142' }]);
    await cli(['aggregate'], FEB);
    const charges = JSON.parse(await cli(['overage', '--json'], FEB)).charges as Array<{ tenantId: string; amount: string; used: string }>;
    expect(charges.map((c) => [c.tenantId, c.used, c.amount]).sort()).toEqual([['jpy', '4', '3'], ['usd', '1142', '1.02']]);

    await cli(['invoice', 'generate', '--finalize'], FEB);
    const lines = async (tenant: string, start = Date.parse(JAN)) =>
      (await invoicesByNumber(db)).filter((i) => i.tenantId === tenant).flatMap((i) => i.lines).filter((l) => l.featureKey === 'TOKENS' && l.period.start === start);
    for (const tenant of ['usd', 'jpy']) {
      expect((await lines(tenant)).map((l) => [l.dimensionValue, l.description.replace(/^AI tokens /, ''), l.amount])).toEqual(LINES[tenant]);
    }
    expect((await invoicesByNumber(db)).find((i) => i.tenantId === 'jpy')!.total).toBe('3');
    expect(JSON.parse(await cli(['verify', '--json'], FEB))).toMatchObject({ ok: true, violations: [] });

    // Late usage of gpt-4 alone: 10 more in January bills 10 × 0.03 on the next invoice; the other values bill nothing again.
    await cli(['ingest', '-', '--format', 'ndjson'], day(40), ndjson([['usd', 'gpt-4', '10', 20]], 'late'));
    await cli(['aggregate'], MAR);
    await cli(['invoice', 'generate', '--finalize', '--tenant', 'usd'], MAR);
    const jan = await lines('usd');
    expect(jan.filter((l) => l.kind === 'late_usage').map((l) => [l.dimensionValue, l.description, l.amount])).toEqual([
      ['gpt-4', 'Late usage for 2026-01-01 to 2026-02-01: AI tokens (gpt-4), +10 (now 140)', '0.30'],
    ]);
    expect(JSON.parse(await cli(['verify', '--json'], MAR))).toMatchObject({ ok: true, violations: [] });
  });
});

describeEachDb('prices by dimension: HTTP check and consume', (t) => {
  it('checks the value in the body, and consume checks the value its event carries', async () => {
    const { db } = t();
    const w = world(db);
    await w.apply(JAN, { features: [FEATURE], plans: PLANS });
    await w.tenant(JAN, 'usd');
    await w.subscribe(JAN, 'usd', 'ai', 0);
    await recordUsage(db, [{ tenantId: 'usd', featureKey: 'TOKENS', quantity: '130', occurredAt: day(2), eventId: 'g4', metadata: { model: 'gpt-4' } }], { now: Date.parse(day(2)) });
    const server = createServer(db, { auth: { serviceSecrets: [SECRET] }, clock: () => Date.parse(day(10)), rateLimit: null, log: () => {} });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const port = (server.address() as AddressInfo).port;
      const post = async (path: string, body: unknown) => {
        const r = await fetch(`http://127.0.0.1:${port}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-service-secret': SECRET }, body: JSON.stringify(body) });
        return { status: r.status, json: (await r.json()) as Record<string, unknown> };
      };
      const check = (body: Record<string, unknown>) => post('/v1/billing/entitlements/check', { tenantId: 'usd', usageType: 'TOKENS', ...body });
      expect(await check({ dimension: 'gpt-4', quantity: 20 })).toMatchObject({ status: 200, json: { allowed: true, reason: 'overage', used: '130', remaining: '20', dimension: { field: 'model', value: 'gpt-4' } } });
      expect(await check({ dimension: 'gpt-4', quantity: 21 })).toMatchObject({ status: 200, json: { allowed: false, reason: 'limit_reached' } });
      expect(await check({ dimension: 'claude', quantity: 21 })).toMatchObject({ status: 200, json: { allowed: true, used: '0', included: '0' } });
      const bare = await check({});
      expect(bare.status).toBe(400);
      expect(String(bare.json.message)).toContain('"model"');
      expect((await check({ dimension: 5 })).status).toBe(400);
      // Consume: the event's model is the value checked (and recorded); a denied one is not recorded.
      const consume = (n: number, quantity: number, metadata?: Record<string, unknown>) =>
        post('/v1/billing/entitlements/consume', { tenantId: 'usd', usageType: 'TOKENS', quantity, sourceService: 'ai', sourceEntityId: `req-${n}`, ...(metadata ? { metadata } : {}) });
      expect(await consume(1, 21, { model: 'gpt-4' })).toMatchObject({ status: 200, json: { status: 'denied', reason: 'limit_reached' } });
      expect(await consume(2, 20, { model: 'gpt-4' })).toMatchObject({ status: 200, json: { status: 'inserted', dimension: { value: 'gpt-4' } } });
      expect(await consume(3, 500)).toMatchObject({ status: 200, json: { status: 'inserted', dimension: { value: '*' } } });
      expect(await check({ dimension: 'gpt-4', quantity: 1 })).toMatchObject({ json: { allowed: false, used: '150' } });
    } finally {
      await stopServer(server, 1000);
    }
  });
});

describe('prices by dimension: validation', () => {
  const error = (terms: Record<string, unknown>, aggregation = 'sum'): string => {
    try {
      validateCatalog({ features: [{ ...FEATURE, aggregation }], plans: [{ key: 'p', currency: 'USD', price: '0', interval: 'month', features: { TOKENS: terms } }] }, new Map());
    } catch (e) {
      expect(e).toBeInstanceOf(BillingError);
      return (e as Error).message;
    }
    return 'valid';
  };
  const star = { match: '*', included: 0, overage: unit('0.01') };
  it.each([
    ['a valid one', { dimension: 'model', prices: [{ match: 'gpt-4', included: 0, overage: unit('0.03') }, star] }, 'valid'],
    ['no "*" entry', { dimension: 'model', prices: [{ match: 'gpt-4', included: 0 }] }, 'prices: needs a last entry with match "*"'],
    ['"*" not last', { dimension: 'model', prices: [star, { match: 'gpt-4', included: 0 }] }, 'prices[0].match: must be the last entry'],
    ['a repeated match', { dimension: 'model', prices: [{ match: 'a', included: 0 }, { match: 'a', included: 1 }, star] }, 'prices[1].match: "a" is matched by an earlier entry'],
    ['empty prices', { dimension: 'model', prices: [] }, 'prices: must be a non-empty array'],
    ['prices without dimension', { prices: [star] }, 'dimension: is required with prices'],
    ['feature-level included too', { dimension: 'model', included: 5, prices: [star] }, 'included: cannot be combined with prices'],
    ['an entry validated like terms', { dimension: 'model', prices: [{ match: '*', included: -1 }] }, 'prices[0].included: must not be negative'],
    ['percentage in an entry', { dimension: 'model', prices: [{ match: '*', included: 0, overage: { model: 'percentage', rate: '1' } }] }, 'prices[0].overage.model: cannot be percentage pricing'],
    ['rollover', { dimension: 'model', rollover: { max: 5 }, prices: [star] }, 'rollover: cannot be combined with prices by dimension'],
    ['resetEvery', { dimension: 'model', resetEvery: 'day', prices: [star] }, 'resetEvery: cannot be combined with prices by dimension'],
  ])('%s', (_name, terms, message) => {
    expect(error(terms as Record<string, unknown>)).toContain(message);
  });
  it('refuses a feature that does not add up its events', () => {
    expect(error({ dimension: 'model', prices: [star] }, 'max')).toContain('it needs "sum" or "count"');
  });
});
