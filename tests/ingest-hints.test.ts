// Input a spreadsheet or a hand-made export produces: delimiters, decimal commas, exponents,
// zone-less times, empty quantity cells and empty inputs, through the real CLI.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { NOW, seedIngest, storedEvents, totals } from './ingest-support.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ingest-hints-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, content: string) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

describeEachDb('ingest hints and input rules (CLI)', (t) => {
  it('detects a semicolon or tab header, hints at decimal commas and exponents', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const semi = file(`semi-${dialect}.csv`, 'tenant_id;feature;quantity;event_id\nt1;API_CALL;2;a\nt1;API_CALL;1,5;b\nt1;API_CALL;1e3;c\nt1;API_CALL;1,250;d\n');
    const r = await runCli(['ingest', semi], { db: url, now: NOW });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`  ${semi}:3: quantity: "1,5" is not a number (decimal comma? use 1.5)\n`);
    expect(r.stderr).toContain(`  ${semi}:4: quantity: "1e3" is not a number (exponent not accepted: write 1000)\n`);
    expect(r.stderr).toContain(`  ${semi}:5: quantity: "1,250" is not a number (decimal comma or digit grouping? write 1.250 or 1250)\n`);

    // A tab-separated file, with an empty middle cell kept as a field (tabs are not blanks here).
    const tab = file(`tab-${dialect}.tsv`, 'tenant_id\tfeature\tsource_service\tquantity\tevent_id\nt2\tAPI_CALL\t\t4\te\n');
    const tr = await runCli(['ingest', tab, '--format', 'csv', '--json'], { db: url, now: NOW });
    expect(tr.code).toBe(0);
    expect(JSON.parse(tr.stdout)).toMatchObject({ read: 1, inserted: 1, rejected: 0 });
    expect(await totals(db)).toEqual({ count: 2, sum: '6000000' });

    // Split on the wrong delimiter, the missing column names the one the header has.
    const forced = await runCli(['ingest', semi, '--delimiter', ','], { db: url, now: NOW });
    expect(forced.code).toBe(2);
    expect(forced.stderr).toMatch(/the header has no tenant_id column .*; the header was split on "," but contains ";": try --delimiter ';'\n$/);
    const pipe = file(`pipe-${dialect}.csv`, 'tenant_id|feature|quantity\nt1|API_CALL|7\n');
    const auto = await runCli(['ingest', pipe], { db: url, now: NOW });
    expect(auto.code).toBe(2);
    expect(auto.stderr).toContain(`the header was split on "," (detected) but contains "|": try --delimiter '|'`);
    expect((await runCli(['ingest', pipe, '--delimiter', '|', '--json'], { db: url, now: NOW })).code).toBe(0);
    expect((await runCli(['ingest', pipe, '--delimiter', 'colon'], { db: url, now: NOW })).code).toBe(2);
    expect(await totals(db)).toEqual({ count: 3, sum: '13000000' });
  });

  it('rejects zone-less times with a hint, or reads them as UTC with --assume-utc', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const csv = file(`tz-${dialect}.csv`, 'tenant_id,feature,occurred_at,event_id\nt1,API_CALL,2026-11-20T10:00:00,a\nt1,API_CALL,2026-11-20 11:30,b\nt1,API_CALL,2026-11-20,c\n');
    const r = await runCli(['ingest', csv], { db: url, now: NOW });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(
      `  ${csv}:2: occurred_at: "2026-11-20T10:00:00" has no time zone: add Z or an offset such as +02:00, or pass --assume-utc to read zone-less times as UTC\n`,
    );
    expect(r.stderr).toContain(`  ${csv}:3: occurred_at: "2026-11-20 11:30" has no time zone`);
    expect((await storedEvents(db)).map((e) => e.event_id)).toEqual(['c']); // a bare date stays UTC midnight

    const utc = await runCli(['ingest', csv, '--assume-utc', '--json'], { db: url, now: NOW });
    expect(utc.code).toBe(0);
    expect(JSON.parse(utc.stdout)).toMatchObject({ inserted: 2, duplicates: 1, rejected: 0 });
    const times = Object.fromEntries((await storedEvents(db)).map((e) => [e.event_id, new Date(e.occurred_at).toISOString()]));
    expect(times).toEqual({ a: '2026-11-20T10:00:00.000Z', b: '2026-11-20T11:30:00.000Z', c: '2026-11-20T00:00:00.000Z' });
  });

  it('an empty quantity is a reject in CSV, NDJSON and billing record; no quantity at all counts 1', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const csv = file(`q-${dialect}.csv`, 'tenant_id,feature,quantity,event_id\nt1,API_CALL,,a\nt1,API_CALL,  ,b\nt1,API_CALL,3,c\n');
    const r = await runCli(['ingest', csv], { db: url, now: NOW });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`  ${csv}:2: quantity: is empty (leave the field out for the default 1)\n`);
    expect(r.stderr).toContain(`  ${csv}:3: quantity: is empty`);

    const ndjson = [
      { tenantId: 't1', usageType: 'API_CALL', quantity: '', id: 'n1' },
      { tenantId: 't1', usageType: 'API_CALL', qty: null, id: 'n2' },
      { tenantId: 't1', usageType: 'API_CALL', id: 'n3' },
      { specversion: '1.0', id: 'n4', source: 's', type: 'API_CALL', subject: 't1', data: { quantity: null } },
    ].map((e) => JSON.stringify(e)).join('\n');
    const n = await runCli(['ingest'], { db: url, now: NOW, input: ndjson });
    expect(n.code).toBe(3);
    expect(n.stderr).toContain('  stdin:1: quantity: is empty (leave the field out for the default 1)\n');
    expect(n.stderr).toContain('  stdin:2: qty: is empty');
    expect(n.stderr).toContain('  stdin:4: data.quantity: is empty');

    const rec = await runCli(['record', '--tenant', 't1', '--feature', 'API_CALL', '--quantity', ''], { db: url, now: NOW });
    expect(rec.code).toBe(3);
    expect(rec.stdout).toBe('rejected: quantity: is empty (leave the field out for the default 1)\n');

    // Without a quantity column every row counts 1.
    const noColumn = file(`noq-${dialect}.csv`, 'tenant_id,feature,event_id\nt2,API_CALL,x\n');
    expect((await runCli(['ingest', noColumn], { db: url, now: NOW })).code).toBe(0);
    expect(await totals(db)).toEqual({ count: 3, sum: '5000000' }); // c=3, n3=1, x=1
  });

  it('warns on stderr about an input without rows and still exits 0', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const headerOnly = file(`h-${dialect}.csv`, 'tenant_id,feature,quantity\n');
    const empty = file(`e-${dialect}.csv`, '');
    const r = await runCli(['ingest', headerOnly, empty, '--json'], { db: url, now: NOW });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ read: 0, inserted: 0 });
    expect(r.stderr).toBe(`warning: ${headerOnly}: no rows to ingest (empty input)\nwarning: ${empty}: no rows to ingest (empty input)\n`);
    const stdin = await runCli(['ingest'], { db: url, now: NOW, input: '' });
    expect(stdin.code).toBe(0);
    expect(stdin.stderr).toMatch(/^warning: stdin: no rows to ingest \(empty input\)\nread 0, inserted 0/);
  });
});
