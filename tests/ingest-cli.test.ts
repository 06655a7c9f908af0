import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN, runCli } from './helpers/cli.js';
import { describeEachDb, freshDb } from './helpers/db.js';
import { NOW, seedIngest, storedEvents, totals } from './ingest-support.js';
import type { Db } from '../src/storage/db.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'ingest-cli-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, content: string | Buffer) => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};

describeEachDb('billing ingest / record (CLI)', (t) => {
  it('reads NDJSON and CloudEvents from stdin; exit 0 when clean, 3 when something is rejected', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const ndjson = '{"tenantId":"t1","usageType":"API_CALL","quantity":2,"eventId":"a"}\n{"tenantId":"t2","usageType":"API_CALL","eventId":"a"}\n';
    const ok = await runCli(['ingest', '--json'], { db: url, now: NOW, input: ndjson });
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ read: 2, inserted: 2, duplicates: 0, rejected: 0, inputs: [{ source: '-', format: 'ndjson' }] });

    const ce = [
      { specversion: '1.0', id: 'c1', source: 'ocr', type: 'API_CALL', subject: 't1', time: '2026-11-20T00:00:00Z', data: { value: '0.5' } },
      { specversion: '1.0', id: 'c2', source: 'ocr', type: 'API_CALL', subject: 'nobody', data: { value: 1 } },
    ];
    const mixed = await runCli(['ingest', '-', '--format', 'cloudevents'], { db: url, now: NOW, input: ce.map((e) => JSON.stringify(e)).join('\n') });
    expect(mixed.code).toBe(3);
    expect(mixed.stdout).toBe('');
    expect(mixed.stderr).toMatch(/^read 2, inserted 1, duplicates 0, rejected 1 in \d+\.\d\d s \(\d+ rows\/s\)\n/);
    expect(mixed.stderr).toContain('  stdin:2: subject: "nobody" is not a known tenant\n');
    expect(await totals(db)).toEqual({ count: 3, sum: '3500000' });
  });

  it('reads a gzipped CSV and writes the rejects, with line and reason, to --rejects', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const csv = 'tenant_id,feature,quantity,note\r\nt1,API_CALL,1,"a, b"\r\nt1,API_CALL,-2,"x ""y"""\r\nt1,API_CALL\r\nt1,API_CALL,1,z,extra\r\n';
    const rejects = path.join(dir, `rejects-${t().dialect}.csv`);
    const r = await runCli(['ingest', file('u.csv.gz', gzipSync(csv)), '--rejects', rejects], { db: url, now: NOW });
    expect(r.code).toBe(3);
    expect(readFileSync(rejects, 'utf8')).toBe(
      'tenant_id,feature,quantity,note,line,reason\n' +
        't1,API_CALL,-2,"x ""y""",3,"quantity: ""-2"" is negative"\n' +
        't1,API_CALL,,,4,"row: has 2 fields, the header has 4"\n' +
        't1,API_CALL,1,z,5,"row: has 5 fields, the header has 4",extra\n',
    );
    // The rejects file, fixed, can be ingested as it is (line and reason are not fields).
    const fixed = file('fixed.csv', readFileSync(rejects, 'utf8').replace('-2', '2').split('\n').slice(0, 2).join('\n'));
    const again = await runCli(['ingest', fixed, '--json'], { db: url, now: NOW });
    expect(JSON.parse(again.stdout)).toMatchObject({ inserted: 1, rejected: 0 });

    const jsonRejects = path.join(dir, `rejects-${t().dialect}.ndjson`);
    const bad = '{"tenant_id":"t1","feature":"API_CALL","quantity":"1.0000001","line":"kept?"}\n{oops\n';
    const j = await runCli(['ingest', '--rejects', jsonRejects], { db: url, now: NOW, input: bad });
    expect(j.code).toBe(3);
    const lines = readFileSync(jsonRejects, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual([
      { tenant_id: 't1', feature: 'API_CALL', quantity: '1.0000001', line: 1, reason: 'quantity: "1.0000001" has more than 6 decimals' },
      { line: 2, reason: expect.stringMatching(/^line: is not valid JSON/), raw: '{oops' },
    ]);
  });

  it('--strict inserts nothing and exits 3 when a row is rejected; --map renames columns', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const csv = file('s.csv', 'org,metric,units\nt1,API_CALL,1\nt1,API_CALL,2\nt1,API_CALL,x\n');
    const strict = await runCli(['ingest', csv, '--strict', '--map', 'org=tenant_id', '--map', 'metric=feature', '--map', 'units=quantity', '--json'], {
      db: url,
      now: NOW,
    });
    expect(strict.code).toBe(3);
    expect(JSON.parse(strict.stdout)).toMatchObject({ read: 3, inserted: 0, rejected: 1, rolledBack: true, messages: [`${csv}:4: units: "x" is not a number`] });
    expect((await totals(db)).count).toBe(0);
    const lenient = await runCli(['ingest', csv, '--map', 'org=tenant_id', '--map', 'metric=feature', '--map', 'units=quantity'], { db: url, now: NOW });
    expect(lenient.code).toBe(3);
    expect(await totals(db)).toEqual({ count: 2, sum: '3000000' });
  });

  it('exits 2 for bad usage and 1 for a runtime failure', async () => {
    const { url } = t();
    const missing = await runCli(['ingest', path.join(dir, 'nope.csv')], { db: url, now: NOW });
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.csv: no such file/);
    expect((await runCli(['ingest', '--bogus'], { db: url, now: NOW, input: '' })).code).toBe(2);
    expect((await runCli(['ingest', '--format', 'xml'], { db: url, now: NOW, input: '' })).code).toBe(2);
    const map = await runCli(['ingest', '--map', 'a=b'], { db: url, now: NOW, input: '' });
    expect(map.code).toBe(2);
    expect(map.stderr).toMatch(/--map "a=b" must be col=field/);
    expect((await runCli(['ingest', '--batch-size', '0'], { db: url, now: NOW, input: '' })).code).toBe(2);
    const header = await runCli(['ingest', '--format', 'csv'], { db: url, now: NOW, input: 'a,b\n1,2\n' });
    expect(header.code).toBe(2);
    expect(header.stderr).toMatch(/stdin: the header has no tenant_id column/);
    const down = await runCli(['ingest'], { db: 'postgres://nobody@127.0.0.1:1/none', now: NOW, input: 'tenant_id,feature\n' });
    expect(down.code).toBe(1);
  });

  it('billing record: inserted, duplicate (exit 0) and rejected (exit 3)', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const args = ['record', '--tenant', 't1', '--feature', 'API_CALL', '--quantity', '2.5', '--source-service', 'ocr', '--source-entity', 'doc-1'];
    const first = await runCli(args, { db: url, now: NOW });
    expect(first).toMatchObject({ code: 0, stdout: 'inserted (key s:ocr:doc-1:API_CALL)\n' });
    const second = await runCli([...args, '--json'], { db: url, now: NOW });
    expect(second.code).toBe(0);
    expect(JSON.parse(second.stdout)).toEqual({ status: 'duplicate', idempotencyKey: 's:ocr:doc-1:API_CALL' });
    const rejected = await runCli(['record', '--tenant', 't1', '--feature', 'API_CALL', '--metadata', '[1]'], { db: url, now: NOW });
    expect(rejected).toMatchObject({ code: 3, stdout: 'rejected: metadata: "[1]" is not a JSON object\n' });
    const full = await runCli(
      ['record', '--tenant', 't2', '--feature', 'STORAGE_GB', '--event-id', 'm1', '--time', '2026-11-20T10:00:00+01:00', '--user', 'u9', '--metadata', '{"gb":"3"}'],
      { db: url, now: NOW },
    );
    expect(full.code).toBe(0);
    const events = await storedEvents(db);
    expect(events.map((e) => [e.tenant_id, e.idempotency_key, e.quantity, e.occurred_at, e.user_id, e.metadata])).toEqual([
      ['t1', 's:ocr:doc-1:API_CALL', '2500000', Date.parse(NOW), null, null],
      ['t2', 'e:m1', '1000000', Date.parse('2026-11-20T09:00:00Z'), 'u9', '{"gb":"3"}'],
    ]);
    expect((await runCli(['record', '--tenant', 't1'], { db: url, now: NOW })).code).toBe(2);
  });

  it('after a SIGKILL part-way through, a rerun leaves exactly the rows of one clean run', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const rows = 20_000;
    const lines = ['tenant_id,feature,quantity,occurred_at,source_service,source_entity_id'];
    for (let i = 0; i < rows; i++) {
      lines.push(`t${1 + (i % 2)},API_CALL,${i % 10}.${i % 7},${Date.parse('2026-11-01T00:00:00Z') + i * 1000},svc,ent-${i}`);
    }
    const big = file(`big-${dialect}.csv`, lines.join('\n') + '\n');
    const args = [BIN, 'ingest', big, '--batch-size', '500', '--db', url, '--now', NOW];

    const child = spawn(process.execPath, args, { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    let landed = 0;
    while (landed === 0) {
      await new Promise((r) => setTimeout(r, 20));
      landed = (await totals(db)).count;
    }
    child.kill('SIGKILL');
    expect(await exited).toBe(null); // killed, not finished
    const partial = (await totals(db)).count;
    expect(partial).toBeGreaterThan(0);
    expect(partial).toBeLessThan(rows);
    const [run] = await db.knex('ingest_runs').select('status');
    expect(run.status).toBe('running');

    const rerun = await runCli(['ingest', big, '--json'], { db: url, now: NOW });
    expect(rerun.code).toBe(0);
    const summary = JSON.parse(rerun.stdout);
    expect(summary.inserted + summary.duplicates).toBe(rows);
    expect(summary.duplicates).toBeGreaterThanOrEqual(partial);

    const clean = await freshDb(dialect);
    try {
      await seedIngest(clean.db);
      expect((await runCli(['ingest', big], { db: clean.url, now: NOW })).code).toBe(0);
      const expected = await totals(clean.db);
      expect(expected.count).toBe(rows);
      expect(await totals(db)).toEqual(expected);
    } finally {
      await clean.cleanup();
    }
  });
  /** `billing ingest -` fed `first` rows on stdin that stay open, once they are committed. */
  async function ingestWaitingOnStdin(db: Db, url: string, first: number) {
    const child = spawn(process.execPath, [BIN, 'ingest', '-', '--format', 'csv', '--batch-size', '100', '--db', url, '--now', NOW], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const lines = ['tenant_id,feature,quantity,source_service,source_entity_id'];
    for (let i = 0; i < first; i++) lines.push(`t1,API_CALL,1,svc,e-${i}`);
    child.stdin.write(lines.join('\n') + '\n');
    let ended = false;
    void exited.then(() => (ended = true));
    // Poll the database (not the clock) until a first batch is committed.
    while ((await totals(db)).count === 0) {
      if (ended) throw new Error(`ingest ended before committing anything: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    return { child, exited, out: () => ({ stdout, stderr }) };
  }

  it.each([['SIGTERM', 143], ['SIGINT', 130]] as const)('%s commits what was read, marks the run interrupted, says so on stderr and exits %i', async (signal, code) => {
    const { db, url } = t();
    await seedIngest(db);
    const run = await ingestWaitingOnStdin(db, url, 250);
    run.child.kill(signal);
    expect(await run.exited).toEqual({ code, signal: null });
    const committed = (await totals(db)).count;
    expect(committed).toBeGreaterThan(0);
    expect(committed).toBeLessThan(250);
    expect(run.out().stdout).toBe('');
    expect(run.out().stderr).toBe(`interrupted by ${signal}: ${committed} rows committed; rerun the same command to finish (committed rows count as duplicates)\n`);
    const [row] = await db.knex('ingest_runs').select('status', 'inserted', 'finished_at');
    expect(row).toMatchObject({ status: 'interrupted', inserted: committed });
    expect(row.finished_at).not.toBeNull();
    const status = await runCli(['status', '--json'], { db: url, now: NOW });
    expect(JSON.parse(status.stdout).ingestRuns).toEqual([]);
  });

  it('after a SIGKILL the run stays "running"; status shows it, and stale (--strict exit 3) an hour later', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const run = await ingestWaitingOnStdin(db, url, 250);
    run.child.kill('SIGKILL');
    expect(await run.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const n = (await totals(db)).count;
    const fresh = await runCli(['status', '--strict'], { db: url, now: NOW });
    expect(fresh.code).toBe(0);
    expect(fresh.stdout).toMatch(/ingest run \d+ \(-\) running since 2026-11-21T12:00:00.000Z: \d+ rows committed so far/);
    const later = await runCli(['status', '--strict'], { db: url, now: '2026-11-21T13:00:01Z' });
    expect(later.code).toBe(3);
    expect(later.stdout).toMatch(/ingest run \d+ \(-\) stale: "running" since 2026-11-21T12:00:00.000Z with \d+ rows committed; its process died/);
    const json = await runCli(['status', '--json'], { db: url, now: '2026-11-21T13:00:01Z' });
    expect(JSON.parse(json.stdout).ingestRuns).toEqual([
      { id: expect.any(Number), source: '-', startedAt: '2026-11-21T12:00:00.000Z', read: n, inserted: n, stale: true },
    ]);
  });
});
