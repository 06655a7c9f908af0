// Reset windows (DESIGN.md §14 `resetEvery`, docs/reference.md "Reset windows") on both
// databases through the CLI: included and the hard stop per day, an event at 23:59:59.999 vs
// 00:00:00.000, the period boundary, `billing check --json` naming its window, monthly windows
// on a yearly plan, and invoice, overage, report and verify agreeing.
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { runCli } from './helpers/cli.js';
import { invoicesByNumber, world } from './invoice-world.js';
import { resetWindowAt, resetWindows, windowsBillable } from '../src/rate/reset.js';

const T = (iso: string) => Date.parse(iso);
const day = (t: number) => new Date(t).toISOString().slice(0, 10);
const per = (unitPrice: string) => ({ model: 'per_unit', unitPrice });
const CATALOG = {
  features: [
    { key: 'API_CALL', name: 'API calls', unit: 'call', aggregation: 'sum' },
    { key: 'EXPORT', name: 'Exports', unit: 'export', aggregation: 'count' },
  ],
  plans: [
    {
      key: 'daily', name: 'Daily', currency: 'USD', price: '100.00', interval: 'month',
      features: { API_CALL: { included: 1000, overage: per('0.01'), resetEvery: 'day' }, EXPORT: { included: 2, hardStop: true, resetEvery: 'day' } },
    },
    { key: 'annual', name: 'Annual', currency: 'USD', price: '1000.00', interval: 'year', features: { API_CALL: { included: 100, overage: per('0.10'), resetEvery: 'month' } } },
  ],
};

describe('reset windows of a period', () => {
  it.each([
    ['31 days of January', '2026-01-01T00:00:00Z', '2026-02-01T00:00:00Z', 'day', 31, '2026-01-01', '2026-01-31', '2026-02-01'],
    ['weeks of a month starting mid-week, the last cut short', '2026-02-04T00:00:00Z', '2026-03-04T00:00:00Z', 'week', 4, '2026-02-04', '2026-02-25', '2026-03-04'],
    ['weeks of a 31-day month: a 3-day last window', '2026-03-04T00:00:00Z', '2026-04-04T00:00:00Z', 'week', 5, '2026-03-04', '2026-04-01', '2026-04-04'],
    ['months of a year from the 31st, clamped like anniversaries', '2026-01-31T00:00:00Z', '2027-01-31T00:00:00Z', 'month', 12, '2026-01-31', '2026-12-31', '2027-01-31'],
    ['a period cut short by a cancellation', '2026-01-01T00:00:00Z', '2026-01-10T12:00:00Z', 'day', 10, '2026-01-01', '2026-01-10', '2026-01-10'],
  ] as const)('%s', (_name, start, end, every, count, first, last, lastEnd) => {
    const ws = resetWindows({ start: T(start), end: T(end) }, every);
    expect(ws.length).toBe(count);
    expect([day(ws[0].start), day(ws[ws.length - 1].start), day(ws[ws.length - 1].end)]).toEqual([first, last, lastEnd]);
    for (let i = 1; i < ws.length; i++) expect(ws[i].start).toBe(ws[i - 1].end);
  });

  it('the months of a year from 31 January start on the 28th of February, then the 31st of March again', () => {
    const ws = resetWindows({ start: T('2026-01-31T00:00:00Z'), end: T('2027-01-31T00:00:00Z') }, 'month');
    expect(ws.slice(0, 3).map((w) => day(w.start))).toEqual(['2026-01-31', '2026-02-28', '2026-03-31']);
  });

  it.each([
    ['23:59:59.999 is the old day', '2026-01-01T23:59:59.999Z', '2026-01-01'],
    ['00:00:00.000 is the new day', '2026-01-02T00:00:00.000Z', '2026-01-02'],
  ])('%s', (_name, at, start) => {
    expect(day(resetWindowAt({ start: T('2026-01-01T00:00:00Z'), end: T('2026-02-01T00:00:00Z') }, 'day', T(at)).start)).toBe(start);
  });

  it.each([
    ['each window over by some', '10', ['15', '10', '12'], '7'],
    ['unused units of a window do not help another', '10', ['0', '25'], '15'],
    ['none over', '10', ['10', '9.5'], '0'],
    ['unlimited', null, ['99'], '0'],
  ] as const)('billable: %s', (_name, included, used, billable) => {
    expect(windowsBillable(included, used)).toBe(billable);
  });
});

describeEachDb('reset windows', (t) => {
  it('included and the hard stop apply per day; check names its window; invoice, overage, report and verify agree', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const json = async (args: string[], now: string) => {
      const r = await cli([...args, '--json'], now);
      expect(r.stderr).toBe('');
      return JSON.parse(r.stdout);
    };
    const JAN = '2026-01-01T00:00:00Z';
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'acme');
    await w.subscribe(JAN, 'acme', 'daily', 0);

    // Day 1: 1,500 at midnight and 300 at its last millisecond (800 over); day 2: 1,200 at its
    // first (200 over); the period's last millisecond 1,100 (100 over); the next period's first 5,000.
    await w.usage('2026-01-01T00:00:00Z', 'acme', 'API_CALL', '1500', '2026-01-01T00:00:00.000Z');
    await w.usage('2026-01-01T23:59:59.999Z', 'acme', 'API_CALL', '300', '2026-01-01T23:59:59.999Z');
    expect(await json(['check', 'acme', 'API_CALL'], '2026-01-01T23:59:59.999Z')).toMatchObject({
      used: '1800', included: '1000', reason: 'overage', window: { start: '2026-01-01T00:00:00.000Z', end: '2026-01-02T00:00:00.000Z' },
    });
    await w.usage('2026-01-02T00:00:00Z', 'acme', 'API_CALL', '1200', '2026-01-02T00:00:00.000Z');
    expect(await json(['check', 'acme', 'API_CALL'], '2026-01-02T00:00:00.000Z')).toMatchObject({
      used: '1200', included: '1000', window: { start: '2026-01-02T00:00:00.000Z', end: '2026-01-03T00:00:00.000Z' },
    });

    // A hard stop of 2 exports a day: the third is refused, the next day starts afresh.
    await w.usage('2026-01-03T10:00:00Z', 'acme', 'EXPORT', '1');
    await w.usage('2026-01-03T11:00:00Z', 'acme', 'EXPORT', '1');
    expect(await json(['check', 'acme', 'EXPORT'], '2026-01-03T12:00:00Z')).toMatchObject({ allowed: false, reason: 'limit_reached', used: '2', limit: '2', remaining: '0' });
    expect(await json(['check', 'acme', 'EXPORT'], '2026-01-04T00:00:00Z')).toMatchObject({
      allowed: true, reason: 'within_plan', used: '0', limit: '2', remaining: '2', window: { start: '2026-01-04T00:00:00.000Z', end: '2026-01-05T00:00:00.000Z' },
    });

    await w.usage('2026-01-31T23:59:59.999Z', 'acme', 'API_CALL', '1100', '2026-01-31T23:59:59.999Z');
    await w.usage('2026-02-01T00:00:00Z', 'acme', 'API_CALL', '5000', '2026-02-01T00:00:00.000Z');
    const report = await json(['report'], '2026-01-31T23:59:59.999Z');
    expect(report[0].features.find((f: any) => f.featureKey === 'API_CALL')).toMatchObject({ used: '4100', overage: '1100', overageAmount: '11.00' });

    expect((await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z')).code).toBe(0);
    // Late usage of an invoiced period is priced on its windows again: 1,500 on an unused day is 500 over.
    await w.usage('2026-02-10T00:00:00Z', 'acme', 'API_CALL', '1500', '2026-01-05T12:00:00Z');
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-03-01T01:00:00Z')).code).toBe(0);
    expect((await cli(['overage'], '2026-03-01T02:00:00Z')).code).toBe(0);
    const lines = (await invoicesByNumber(db)).map((i) => i.lines.filter((l) => l.featureKey).map((l) => `${l.description} ${l.amount}`));
    expect(lines).toEqual([
      ['API calls: 31 daily windows, 1000 a day, 1100 billable 11.00', 'Exports: 31 daily windows, 2 a day, 0 billable 0.00'],
      ['API calls: 28 daily windows, 1000 a day, 4000 billable 40.00', 'Late usage for 2026-01-01 to 2026-02-01: API calls, +1500 (now 5600) 5.00'],
    ]);
    const late = (await invoicesByNumber(db))[1].lines.find((l) => l.kind === 'late_usage')!;
    expect(late.quantity).toBe('500');
    const janInvoice = (await invoicesByNumber(db))[0];
    const jan = janInvoice.lines.find((l) => l.featureKey === 'API_CALL')!;
    expect(jan.details).toMatchObject({ usedTotal: '4100', included: '1000', billable: '1100' });
    expect((jan.details as any).windows.slice(0, 3)).toEqual(['1800', '1200', '0']);
    const charges = await db.knex('rated_charges').where({ tenant_id: 'acme', feature_key: 'API_CALL' }).orderBy('period_start').select('billable', 'amount');
    expect(charges.map((c) => `${c.billable} ${c.amount}`)).toEqual(['1600 16.00', '4000 40.00']);
    expect((await cli(['verify'], '2026-03-01T02:00:00Z')).code).toBe(0);

    // verify re-derives the billable from the recorded windows: one window less is named.
    const row = () => db.knex('invoice_lines').where({ invoice_id: janInvoice.id, line_no: jan.lineNo });
    const stored = (await row().first()).details as string;
    await row().update({ details: JSON.stringify({ ...JSON.parse(stored), windows: JSON.parse(stored).windows.slice(1) }) });
    const r = await cli(['verify', '--json'], '2026-03-01T02:00:00Z');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout).violations.map((v: any) => v.message)).toEqual([
      'API_CALL overage has 30 reset windows, but its period has 31',
      'API_CALL overage 11.00 (precise 11) but rating 4100 on its snapshot, less 0.00 billed before, gives 3.00 (3)',
    ]);
    await row().update({ details: stored });
    expect((await cli(['verify'], '2026-03-01T02:00:00Z')).code).toBe(0);
  });

  it('grants cover what the windows leave billable, in window order; check counts what earlier windows left of them', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    const JAN = '2026-01-01T00:00:00Z';
    await w.apply(JAN, CATALOG);
    await w.tenant(JAN, 'gamma');
    await w.subscribe(JAN, 'gamma', 'daily', 0);
    const grant = (await cli(['grant', 'add', 'gamma', 'API_CALL', '1000'], JAN)).stdout.trim();
    await w.usage('2026-01-01T12:00:00Z', 'gamma', 'API_CALL', '1800'); // 800 over: from the grant
    await w.usage('2026-01-02T12:00:00Z', 'gamma', 'API_CALL', '900');
    const check = JSON.parse((await cli(['check', 'gamma', 'API_CALL', '--json'], '2026-01-02T13:00:00Z')).stdout);
    expect(check).toMatchObject({ used: '900', included: '1200', limit: '1200', remaining: '300', window: { start: '2026-01-02T00:00:00.000Z' } });
    expect(check.grants).toEqual([{ id: grant, balance: '1000', drawn: '800', remaining: '200', expires: null }]);
    await w.usage('2026-01-03T12:00:00Z', 'gamma', 'API_CALL', '1500'); // 500 over: 200 from the grant, 300 billable
    expect((await cli(['invoice', 'generate', '--finalize'], '2026-02-01T01:00:00Z')).code).toBe(0);
    const [inv] = await invoicesByNumber(db);
    const line = inv.lines.find((l) => l.featureKey === 'API_CALL')!;
    expect(`${line.description} ${line.amount}`).toBe('API calls: 31 daily windows, 1000 a day, 300 billable 3.00');
    expect(line.details).toMatchObject({ billable: '300', granted: '1000' });
    expect(JSON.parse((await cli(['grant', 'list', 'gamma', '--json'], '2026-02-01T02:00:00Z')).stdout)[0]).toMatchObject({ used: '1000', remaining: '0' });
    expect((await cli(['verify'], '2026-02-01T02:00:00Z')).code).toBe(0);
  });

  it('monthly windows on a yearly plan', async () => {
    const { db, url } = t();
    const w = world(db);
    const cli = (args: string[], now: string) => runCli(args, { db: url, now });
    await w.apply('2026-01-31T00:00:00Z', CATALOG);
    await w.tenant('2026-01-31T00:00:00Z', 'beta');
    await w.subscribe('2026-01-31T00:00:00Z', 'beta', 'annual', 0);
    await w.usage('2026-02-10T00:00:00Z', 'beta', 'API_CALL', '150'); // window from 31 Jan: 50 over
    await w.usage('2026-02-28T00:00:00Z', 'beta', 'API_CALL', '80'); // window from 28 Feb: none over
    const check = JSON.parse((await cli(['check', 'beta', 'API_CALL', '--json'], '2026-03-10T00:00:00Z')).stdout);
    expect(check).toMatchObject({ used: '80', included: '100', window: { start: '2026-02-28T00:00:00.000Z', end: '2026-03-31T00:00:00.000Z' } });
    expect((await cli(['invoice', 'generate', '--finalize'], '2027-01-31T01:00:00Z')).code).toBe(0);
    const lines = (await invoicesByNumber(db)).map((i) => i.lines.filter((l) => l.featureKey).map((l) => `${l.description} ${l.amount}`));
    expect(lines).toEqual([['API calls: 12 monthly windows, 100 a month, 50 billable 5.00']]);
    expect((await cli(['verify'], '2027-01-31T02:00:00Z')).code).toBe(0);
  });
});
