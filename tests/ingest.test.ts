import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { describeEachDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { NOW_MS, ingestText, seedIngest, storedEvents, totals } from './ingest-support.js';
import { Readable } from 'node:stream';
import { ingest } from '../src/ingest/ingest.js';
import { streamInput } from '../src/ingest/source.js';
import { recordUsage, recordUsageBatches } from '../src/ingest/record.js';
import { parseFieldMap } from '../src/ingest/fields.js';
import { idempotencyKey } from '../src/ingest/idempotency.js';
import { quantityMicro } from '../src/ingest/validate.js';

const HEADER = 'tenant_id,usage_type,quantity,occurred_at,event_id,metadata';

describeEachDb('ingest', (t) => {
  it('rejects each kind of bad row with file, line, field and reason, and keeps the good ones', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv = [
      HEADER,
      't1,API_CALL,2,2026-11-01T00:00:00Z,ok-1,', // line 2: fine
      't9,API_CALL,1,,e3,',
      't1,NOPE,1,,e4,',
      't1,PREMIUM_VOICE,1,,e5,',
      ',API_CALL,1,,e6,',
      't1,,1,,e7,',
      't1,API_CALL,-3,,e8,',
      't1,API_CALL,abc,,e9,',
      't1,API_CALL,1000000000001,,e10,',
      't1,API_CALL,0.1234567,,e11,',
      't1,API_CALL,1,yesterday,e12,',
      't1,API_CALL,1,2026-11-21T10:00:00,e13,', // no offset: ambiguous, rejected
      't1,API_CALL,1,2026-11-21T12:05:01Z,e14,', // 5 min 1 s after now
      't1,API_CALL,1,,e15,{oops',
      't1,API_CALL,1,,e16,"[1,2]"',
      't1,API_CALL,1,e17',
      't1,API_CALL,1,,e18,,extra',
      't1,API_CALL,1,2026-11-21T12:05:00Z,ok-2,"{""k"":""v""}"', // exactly 5 minutes ahead: accepted
    ].join('\n');
    const s = await ingestText(db, 'usage.csv', csv, { maxMessages: 100 });
    expect(s.messages).toEqual([
      'usage.csv:3: tenant_id: "t9" is not a known tenant',
      'usage.csv:4: usage_type: "NOPE" is not a known feature',
      'usage.csv:5: usage_type: "PREMIUM_VOICE" is a boolean feature and takes no usage',
      'usage.csv:6: tenant_id: is missing',
      'usage.csv:7: usage_type: is missing',
      'usage.csv:8: quantity: "-3" is negative',
      'usage.csv:9: quantity: "abc" is not a number',
      'usage.csv:10: quantity: "1000000000001" is more than 1e12',
      'usage.csv:11: quantity: "0.1234567" has more than 6 decimals',
      'usage.csv:12: occurred_at: "yesterday" is not an ISO 8601 time with offset or epoch seconds/milliseconds',
      'usage.csv:13: occurred_at: "2026-11-21T10:00:00" has no time zone: add Z or an offset such as +02:00',
      'usage.csv:14: occurred_at: "2026-11-21T12:05:01Z" is more than 5 minutes in the future',
      'usage.csv:15: metadata: "{oops" is not valid JSON',
      'usage.csv:16: metadata: "[1,2]" is not a JSON object',
      'usage.csv:17: row: has 4 fields, the header has 6',
      'usage.csv:18: row: has 7 fields, the header has 6',
    ]);
    expect(s).toMatchObject({ read: 18, inserted: 2, duplicates: 0, rejected: 16 });
    const events = await storedEvents(db);
    expect(events.map((e) => [e.event_id, e.quantity, e.occurred_at, e.metadata])).toEqual([
      ['ok-1', '2000000', Date.parse('2026-11-01T00:00:00Z'), null],
      ['ok-2', '1000000', NOW_MS + 5 * 60_000, '{"k":"v"}'],
    ]);
  });

  it('counts duplicates within a file and across reruns, never inserting twice', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv = [
      'tenant_id,feature,quantity,occurred_at,event_id,source_service,source_entity_id',
      't1,API_CALL,1,2026-11-01T00:00:00Z,evt-1,,', // event id
      't1,API_CALL,5,2026-11-02T00:00:00Z,evt-1,,', // same event id: duplicate even with other content
      't2,API_CALL,1,2026-11-01T00:00:00Z,evt-1,,', // same id, other tenant: keys are per tenant
      't1,API_CALL,2,2026-11-01T00:00:00Z,,ocr,doc-9', // source service + entity
      't1,API_CALL,3,2026-11-03T00:00:00Z,,ocr,doc-9', // same source + entity + feature: duplicate
      't1,STORAGE_GB,3,2026-11-03T00:00:00Z,,ocr,doc-9', // another feature: distinct
      't1,API_CALL,7,,,,', // no id, no time: content hash, stable across reruns
      't1,API_CALL,7,,,,', // identical content: duplicate
    ].join('\n');
    const first = await ingestText(db, 'u.csv', csv, { batchSize: 2, rowsPerTransaction: 4 });
    expect(first).toMatchObject({ read: 8, inserted: 5, duplicates: 3, rejected: 0 });
    const again = await ingestText(db, 'u.csv', csv, { now: NOW_MS + 3_600_000 });
    expect(again).toMatchObject({ read: 8, inserted: 0, duplicates: 8, rejected: 0 });
    const events = await storedEvents(db);
    expect(events.map((e) => [e.tenant_id, e.idempotency_key, e.quantity])).toEqual([
      ['t1', 'e:evt-1', '1000000'],
      ['t2', 'e:evt-1', '1000000'],
      ['t1', 's:ocr:doc-9:API_CALL', '2000000'],
      ['t1', 's:ocr:doc-9:STORAGE_GB', '3000000'],
      ['t1', expect.stringMatching(/^h:[\w-]{43}$/), '7000000'],
    ]);
    // A row without a time takes the ingest time of the run that inserted it.
    expect(events[4].occurred_at).toBe(NOW_MS);
  });

  it('counts an id-less, time-less row again on a later day; a same-day rerun stays a no-op', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv = 'tenant_id,feature,quantity\nt1,API_CALL,7\n';
    const day = 86_400_000;
    const runs = [NOW_MS, NOW_MS + 3_600_000, NOW_MS + day, Date.parse('2026-12-21T12:00:00Z')];
    const inserted = [];
    for (const now of runs) inserted.push((await ingestText(db, 'u.csv', csv, { now })).inserted);
    expect(inserted).toEqual([1, 0, 1, 1]);
    // recordUsage keys the same row the same way: a duplicate on a day already counted.
    const again = await recordUsage(db, [{ tenantId: 't1', featureKey: 'API_CALL', quantity: '7' }], { now: NOW_MS + day + 60_000 });
    expect(again).toEqual([{ status: 'duplicate', idempotencyKey: expect.stringMatching(/^h:/) }]);
    const fresh = await recordUsage(db, [{ tenantId: 't1', featureKey: 'API_CALL', quantity: '7' }], { now: NOW_MS + 2 * day });
    expect(fresh.map((r) => r.status)).toEqual(['inserted']);
    expect((await totals(db)).count).toBe(4);
  });

  it('reads CSV with BOM, CRLF, quoted fields, embedded newlines, extra whitespace and blank lines', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv =
      '\ufefftenant_id , usage_type,quantity,metadata,source_service,source_entity_id\r\n' +
      't1,API_CALL,1,"{""note"":""a, b""}",svc,"ent,1"\r\n' + // line 2
      '\r\n' + // line 3 blank
      '  t1 ,  API_CALL  , 2 ,,svc,"ent\r\n2"\r\n' + // lines 4-5
      't1,API_CALL,-1,,svc,ent-3\r\n'; // line 6: rejected, line number counts the quoted newline
    const s = await ingestText(db, 'q.csv', csv);
    expect(s).toMatchObject({ read: 3, inserted: 2, rejected: 1 });
    expect(s.messages).toEqual(['q.csv:6: quantity: "-1" is negative']);
    const events = await storedEvents(db);
    expect(events.map((e) => [e.tenant_id, e.feature_key, e.quantity, e.source_entity_id, e.metadata])).toEqual([
      ['t1', 'API_CALL', '1000000', 'ent,1', '{"note":"a, b"}'],
      ['t1', 'API_CALL', '2000000', 'ent\r\n2', null],
    ]);
  });

  it('rejects what cannot be read as a record and goes on: an unclosed quote, an overlong JSON line', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv = await ingestText(db, 'c.csv', 'tenant_id,feature,event_id\nt1,API_CALL,a\nt1,API_CALL,"b\n');
    expect(csv).toMatchObject({ read: 2, inserted: 1, rejected: 1 });
    expect(csv.messages).toEqual(['c.csv:3: row: has a quote that is never closed']);
    const long = JSON.stringify({ tenant_id: 't1', feature: 'API_CALL', metadata: { pad: 'x'.repeat(1_100_000) } });
    const ok = JSON.stringify({ tenant_id: 't2', feature: 'API_CALL', event_id: 'after' });
    const whole = await ingestText(db, 'l.ndjson', `${long}\n${ok}\n`);
    expect(whole).toMatchObject({ read: 2, inserted: 1, rejected: 1 });
    expect(whole.messages).toEqual(['l.ndjson:1: line: is longer than 1048576 bytes']);
    // The same when the line arrives in pieces (never buffered whole).
    const input = streamInput('p.ndjson', Readable.from([long.slice(0, 600_000), long.slice(600_000), `\n${ok.replace('after', 'after-2')}\n`].map((s) => Buffer.from(s))));
    const pieces = await ingest(db, [input], { now: NOW_MS });
    expect(pieces).toMatchObject({ read: 2, inserted: 1, rejected: 1 });
    expect(pieces.messages).toEqual(['p.ndjson:1: line: is longer than 1048576 bytes']);
  });

  it('an oversized CSV record or an unclosed quote is one reject with its text, and every other row lands', async () => {
    const { db } = t();
    await seedIngest(db);
    const dir = tempDir('ingest-recover-');
    const rows = (n: number, p: string) => Array.from({ length: n }, (_, i) => `t1,API_CALL,1,${p}${i}`).join('\n');
    const head = 'tenant_id,feature,quantity,event_id';
    const big = 'x'.repeat(1_100_000);
    // Whole in one chunk, and in 64 KiB pieces (the record spans many reads).
    const cases: Array<[string, string, string]> = [
      ['quoted.csv', `t1,API_CALL,1,"${big}"`, 'row: is longer than 1048576 bytes'],
      ['plain.csv', `t1,API_CALL,1,${big}`, 'row: is longer than 1048576 bytes'],
      ['open.csv', 't1,API_CALL,1,"oops', 'row: has a quote that is never closed'],
    ];
    for (const [name, bad, reason] of cases) {
      for (const chunk of [Infinity, 65_536]) {
        const text = Buffer.from(`${head}\n${rows(50, `${name}-${chunk}-a`)}\n${bad}\n${rows(50, `${name}-${chunk}-b`)}\n`);
        const pieces: Buffer[] = [];
        for (let i = 0; i < text.length; i += Math.min(chunk, text.length)) pieces.push(text.subarray(i, i + chunk));
        const rejectsPath = path.join(dir, `rejects-${name}`);
        const s = await ingest(db, [streamInput(name, Readable.from(pieces))], { now: NOW_MS, rejectsPath });
        expect(s, `${name} in chunks of ${chunk}`).toMatchObject({ read: 101, inserted: 100, duplicates: 0, rejected: 1 });
        expect(s.messages).toEqual([`${name}:52: ${reason}`]);
        const [header, rejected, ...rest] = readFileSync(rejectsPath, 'utf8').split('\n');
        expect(header).toBe(`${head},line,reason`);
        expect(rest).toEqual(['']);
        if (name === 'open.csv') {
          expect(rejected).toBe(`t1,API_CALL,1,"""oops",52,${reason}`);
        } else {
          const start = `t1,API_CALL,1,${name === 'quoted.csv' ? '"""' : '"'}${'x'.repeat(1000)}`; // quoted: the note has a comma
          expect(rejected.slice(0, start.length)).toBe(start);
          expect(rejected.length).toBeLessThan(1200);
          expect(rejected).toContain(`... (truncated, ${bad.length} bytes)`);
        }
      }
    }
    // A stray quote that only a quote more than 1 MiB further closes: one reject, not the rows in between.
    const spill = `${head}\nt1,API_CALL,1,"open\n${rows(45_000, 'spill-')}\nt1,API_CALL,1,"closed"\n${rows(3, 'after-')}\n`;
    const s = await ingestText(db, 'spill.csv', spill);
    expect(s).toMatchObject({ read: 45_005, inserted: 45_004, duplicates: 0, rejected: 1 });
    expect(s.messages).toEqual(['spill.csv:2: row: has a quote that is not closed within 1048576 bytes']);
  });

  it('reads JSON numbers from their text: exact quantities and ids, what cannot be stored exactly is rejected as written', async () => {
    const { db } = t();
    await seedIngest(db);
    const dir = tempDir('ingest-numbers-');
    const rejectsPath = path.join(dir, 'rejects.ndjson');
    const line = (rest: string) => `{"tenant_id":"t1","feature":"API_CALL",${rest}}`;
    const deep = `${'{"a":'.repeat(150_000)}1${'}'.repeat(150_000)}`;
    const text = [
      line('"quantity":123456789012.123456,"event_id":"exact"'),
      line('"quantity":999999999999.9999999,"event_id":"seven"'),
      line('"quantity":1e400,"event_id":"huge"'),
      line('"quantity":1e3,"event_id":"exp"'),
      line('"user_id":12345678901234567890,"event_id":"uid"'),
      line('"event_id":12345678901234567891'),
      line(`"metadata":{"n":12345678901234567890,"f":0.1000000000000000055511151231257827},"event_id":"meta"`),
      line(`"metadata":${deep},"event_id":"deep"`),
      line('"quantity":-1e-7,"event_id":"neg"'),
      line('"quantity":1e-999999999,"event_id":"tiny"'),
      line('"occurred_at":1e400,"event_id":"time"'),
    ].join('\n');
    const s = await ingestText(db, 'n.ndjson', text, { rejectsPath, maxMessages: 100 });
    expect(s.messages).toEqual([
      'n.ndjson:2: quantity: "999999999999.9999999" has more than 6 decimals',
      'n.ndjson:3: quantity: "1e400" is more than 1e12',
      'n.ndjson:8: line: nests deeper than 64 levels',
      'n.ndjson:9: quantity: "-1e-7" is negative',
      'n.ndjson:10: quantity: "1e-999999999" has more than 6 decimals',
      'n.ndjson:11: occurred_at: "1e400" is outside the range of dates',
    ]);
    expect(s).toMatchObject({ read: 11, inserted: 5, rejected: 6 });
    const events = await storedEvents(db);
    expect(events.map((e) => [e.event_id, e.quantity, e.user_id, e.metadata])).toEqual([
      ['exact', '123456789012123456', null, null],
      ['exp', '1000000000', null, null],
      ['uid', '1000000', '12345678901234567890', null],
      ['12345678901234567891', '1000000', null, null],
      ['meta', '1000000', null, '{"n":12345678901234567890,"f":0.1000000000000000055511151231257827}'],
    ]);
    const rejects = readFileSync(rejectsPath, 'utf8').trim().split('\n');
    expect(rejects[0]).toBe(`${line('"quantity":999999999999.9999999,"event_id":"seven"').slice(0, -1)},"line":2,"reason":"quantity: \\"999999999999.9999999\\" has more than 6 decimals"}`);
    expect(rejects[1]).toContain('"quantity":1e400,');
    expect(JSON.parse(rejects[2])).toMatchObject({ line: 8, reason: 'line: nests deeper than 64 levels', raw: text.split('\n')[7] });
  });

  it('recordUsage (HTTP API, billing record): metadata nested too deep is rejected, not a crash', async () => {
    const { db } = t();
    await seedIngest(db);
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 150_000; i++) deep = { a: deep };
    const text = `${'{"a":'.repeat(150_000)}1${'}'.repeat(150_000)}`;
    const results = await recordUsage(
      db,
      [
        { tenantId: 't1', featureKey: 'API_CALL', eventId: 'obj', metadata: deep },
        { tenantId: 't1', featureKey: 'API_CALL', eventId: 'text', metadata: text },
        { tenantId: 't1', featureKey: 'API_CALL', eventId: 'ok', metadata: { a: { b: 1 } } },
      ],
      { now: NOW_MS },
    );
    expect(results.map((r) => (r.status === 'rejected' ? `${r.field}: ${r.reason}` : r.status))).toEqual([
      'metadata: nests deeper than 64 levels',
      'metadata: nests deeper than 64 levels',
      'inserted',
    ]);
  });

  it('rejects records that are not valid UTF-8, naming the line (and the CSV column), instead of storing U+FFFD', async () => {
    const { db } = t();
    await seedIngest(db);
    const bytes = (...parts: Array<string | number[]>) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : Buffer.from(p))));
    // Three distinct entities whose bytes differ only where they are not UTF-8.
    const csv = bytes(
      'tenant_id,feature,source_service,source_entity_id\n',
      't1,API_CALL,ocr,doc-', [0xff], '\n',
      't1,API_CALL,ocr,doc-', [0xfe], '\n',
      't1,API_CALL,ocr,doc-', [0xc3, 0x28], '\n',
      't1,API_CALL,ocr,doc-\u00e9\n',
    );
    const c = await ingestText(db, 'u.csv', csv, { maxMessages: 10 });
    expect(c).toMatchObject({ read: 4, inserted: 1, duplicates: 0, rejected: 3 });
    expect(c.messages).toEqual([2, 3, 4].map((n) => `u.csv:${n}: source_entity_id: is not valid UTF-8`));
    const ndjson = bytes('{"tenant_id":"t1","feature":"API_CALL","user_id":"u-', [0xff], '"}\n{"tenant_id":"t1","feature":"API_CALL","user_id":"u-\u00e9"}\n');
    const n = await ingestText(db, 'u.ndjson', ndjson);
    expect(n).toMatchObject({ read: 2, inserted: 1, rejected: 1 });
    expect(n.messages).toEqual(['u.ndjson:1: line: is not valid UTF-8']);
    const events = await storedEvents(db);
    expect(events.map((e) => e.source_entity_id ?? e.user_id)).toEqual(['doc-\u00e9', 'u-\u00e9']);
  });

  it('stores quantities exactly: 0.1 + 0.2 is 0.3', async () => {
    const { db } = t();
    await seedIngest(db);
    await ingestText(db, 'q.csv', 'tenant_id,feature,quantity,event_id\nt1,API_CALL,0.1,a\nt1,API_CALL,0.2,b\n');
    await ingestText(db, 'q.ndjson', '{"tenant_id":"t1","feature":"API_CALL","quantity":0.000001,"event_id":"c"}\n');
    expect(await totals(db)).toEqual({ count: 3, sum: '300001' }); // micro-units: 0.300001
  });

  it('parses epoch seconds, epoch milliseconds and ISO 8601 with offsets', async () => {
    const { db } = t();
    await seedIngest(db);
    const ndjson = [
      { tenant_id: 't1', feature: 'API_CALL', id: 's', occurred_at: 1_793_491_200 },
      { tenant_id: 't1', feature: 'API_CALL', id: 'ms', timestamp: 1_793_491_200_123 },
      { tenant_id: 't1', feature: 'API_CALL', id: 'iso', time: '2026-11-01T02:00:00+02:00' },
      { tenant_id: 't1', feature: 'API_CALL', id: 'iso-z', time: '2026-11-01T00:00:00.5Z' },
      { tenant_id: 't1', feature: 'API_CALL', id: 'str-s', time: '1793491200' },
    ]
      .map((o) => JSON.stringify(o))
      .join('\n');
    const s = await ingestText(db, 'times.ndjson', ndjson);
    expect(s.rejected).toBe(0);
    const byId = Object.fromEntries((await storedEvents(db)).map((e) => [e.event_id, e.occurred_at]));
    const base = Date.parse('2026-11-01T00:00:00Z');
    expect(byId).toEqual({ s: base, ms: base + 123, iso: base, 'iso-z': base + 500, 'str-s': base });
  });

  it('reads NDJSON aliases and CloudEvents (recognised by specversion, or forced)', async () => {
    const { db } = t();
    await seedIngest(db);
    const lines = [
      { organizationId: 't1', usageType: 'API_CALL', qty: '1.5', sourceService: 'api', sourceEntityId: 'r1', userId: 'u1', metadata: { a: 1 } },
      { specversion: '1.0', id: 'ce-1', source: 'ocr', type: 'STORAGE_GB', subject: 't2', time: '2026-11-05T00:00:00Z', data: { value: 4, userId: 'u2' } },
      { specversion: '1.0', id: 'ce-2', source: 'ocr', type: 'API_CALL', subject: 't2', data: { quantity: '-2' } },
    ];
    const s = await ingestText(db, 'e.jsonl', lines.map((l) => JSON.stringify(l)).join('\r\n') + '\r\n\r\nnot json\n[]\n');
    expect(s.messages).toEqual([
      'e.jsonl:3: data.quantity: "-2" is negative',
      expect.stringMatching(/^e\.jsonl:5: line: is not valid JSON \(/),
      'e.jsonl:6: line: is not a JSON object',
    ]);
    expect((await storedEvents(db)).map((e) => [e.tenant_id, e.feature_key, e.quantity, e.event_id, e.source_service, e.user_id, e.metadata])).toEqual([
      ['t1', 'API_CALL', '1500000', null, 'api', 'u1', '{"a":1}'],
      ['t2', 'STORAGE_GB', '4000000', 'ce-1', 'ocr', 'u2', null],
    ]);
    // --format cloudevents reads the envelope even without specversion.
    const forced = await ingestText(db, 'x', '{"id":"ce-3","type":"API_CALL","subject":"t1","data":{"value":2}}\n', { format: 'cloudevents' });
    expect(forced).toMatchObject({ inserted: 1, rejected: 0 });
  });

  it('maps other column names with --map, and refuses a header without tenant or feature', async () => {
    const { db } = t();
    await seedIngest(db);
    const map = parseFieldMap(['customer=tenant_id', 'metric=feature', 'units=qty', 'type=user_id']);
    const s = await ingestText(db, 'm.csv', 'customer,metric,units,type,tenant_id\nt1,API_CALL,3,u7,t2\n', { map });
    expect(s).toMatchObject({ inserted: 1, rejected: 0 });
    expect((await storedEvents(db)).map((e) => [e.tenant_id, e.quantity, e.user_id])).toEqual([['t1', '3000000', 'u7']]);
    await expect(ingestText(db, 'n.csv', 'who,feature\nt1,API_CALL\n')).rejects.toThrow(
      /n\.csv: the header has no tenant_id column .*--map COLUMN=tenant_id/,
    );
    expect(() => parseFieldMap(['a=nonsense'])).toThrow(/--map "a=nonsense" must be col=field/);
  });

  it('with strict, inserts nothing when anything is rejected', async () => {
    const { db } = t();
    await seedIngest(db);
    const csv = 'tenant_id,feature,event_id\n' + Array.from({ length: 30 }, (_, i) => `t1,API_CALL,e${i}`).join('\n') + '\nt9,API_CALL,bad\n';
    const s = await ingestText(db, 's.csv', csv, { strict: true, batchSize: 7 });
    expect(s).toMatchObject({ read: 31, inserted: 0, rejected: 1, rolledBack: true });
    expect((await totals(db)).count).toBe(0);
    const ok = await ingestText(db, 's.csv', csv.replace('t9,API_CALL,bad\n', ''), { strict: true, batchSize: 7 });
    expect(ok).toMatchObject({ read: 30, inserted: 30, rolledBack: false });
    expect((await totals(db)).count).toBe(30);
  });

  it('records each run in ingest_runs with its counts', async () => {
    const { db } = t();
    await seedIngest(db);
    const s = await ingestText(db, 'r.csv', 'tenant_id,feature,event_id\nt1,API_CALL,a\nt1,API_CALL,a\nt9,API_CALL,b\n', {
      elapsedMs: () => 1500,
    });
    const runs = await db.knex('ingest_runs').select('*');
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ id: s.inputs[0].runId, source: 'r.csv', status: 'completed', read: 3, inserted: 1, duplicates: 1, rejected: 1 });
    expect(Number(runs[0].started_at)).toBe(NOW_MS);
    expect(Number(runs[0].finished_at)).toBe(NOW_MS + 1500);
    expect(s.rowsPerSecond).toBe(2);
    const [ev] = await db.knex('usage_events').select('ingest_run_id');
    expect(Number(ev.ingest_run_id)).toBe(s.inputs[0].runId);
  });

  it('reads several inputs in one run, one ingest_runs row each, one rejects file', async () => {
    const { db } = t();
    await seedIngest(db);
    const dir = mkdtempSync(path.join(tmpdir(), 'ingest-multi-'));
    try {
      const rejectsPath = path.join(dir, 'rejects.csv');
      const input = (name: string, text: string) => streamInput(name, Readable.from([Buffer.from(text)]));
      const s = await ingest(
        db,
        [input('a.csv', 'tenant_id,feature,event_id\nt1,API_CALL,a\nt9,API_CALL,b\n'), input('b.csv', 'tenant_id,feature,event_id\nt2,API_CALL,a\nt1,API_CALL,a\n')],
        { now: NOW_MS, rejectsPath },
      );
      expect(s).toMatchObject({ read: 4, inserted: 2, duplicates: 1, rejected: 1 });
      expect(s.inputs.map((i) => [i.source, i.read, i.inserted, i.duplicates, i.rejected])).toEqual([
        ['a.csv', 2, 1, 0, 1],
        ['b.csv', 2, 1, 1, 0],
      ]);
      expect(readFileSync(rejectsPath, 'utf8')).toBe('tenant_id,feature,event_id,line,reason\nt9,API_CALL,b,3,"tenant_id: ""t9"" is not a known tenant"\n');
      expect((await db.knex('ingest_runs').select('source', 'status').orderBy('id')).map((r) => [r.source, r.status])).toEqual([
        ['a.csv', 'completed'],
        ['b.csv', 'completed'],
      ]);
      await expect(ingest(db, [input('a.csv', ''), input('b.ndjson', '')], { now: NOW_MS, rejectsPath })).rejects.toThrow(
        /--rejects needs inputs of one kind/,
      );
      const other = input('c.csv', 'tenant_id,usage_type\nt1,API_CALL\n');
      await expect(ingest(db, [input('a.csv', 'tenant_id,feature\n'), other], { now: NOW_MS, rejectsPath })).rejects.toThrow(
        /c\.csv: its header differs from the previous CSV input's/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads gzip transparently', async () => {
    const { db } = t();
    await seedIngest(db);
    const s = await ingestText(db, 'z.csv.gz', gzipSync('tenant_id,feature,event_id\nt1,API_CALL,a\nt2,API_CALL,a\n'));
    expect(s).toMatchObject({ read: 2, inserted: 2 });
  });

  it('recordUsage: inserted, duplicate and rejected, in input order', async () => {
    const { db } = t();
    await seedIngest(db);
    const results = await recordUsage(
      db,
      [
        { tenantId: 't1', featureKey: 'API_CALL', quantity: '0.1', eventId: 'x' },
        { tenantId: 't1', featureKey: 'API_CALL', quantity: 5, eventId: 'x' },
        { tenantId: 't2', featureKey: 'API_CALL', eventId: 'x' },
        { tenantId: 't1', featureKey: 'API_CALL', sourceService: 'api', sourceEntityId: 'req-1', metadata: { ip: '10.0.0.1' } },
        { tenantId: 't1', featureKey: 'API_CALL', quantity: '-1' },
        { tenantId: 't1', featureKey: 'API_CALL', occurredAt: '2026-11-21T12:06:00Z' },
        { tenantId: 'ghost', featureKey: 'API_CALL' },
        { tenantId: 't1', featureKey: 'API_CALL', metadata: '{bad' },
      ],
      { now: NOW_MS },
    );
    expect(results).toEqual([
      { status: 'inserted', idempotencyKey: 'e:x' },
      { status: 'duplicate', idempotencyKey: 'e:x' },
      { status: 'inserted', idempotencyKey: 'e:x' },
      { status: 'inserted', idempotencyKey: 's:api:req-1:API_CALL' },
      { status: 'rejected', field: 'quantity', reason: '"-1" is negative' },
      { status: 'rejected', field: 'occurredAt', reason: '"2026-11-21T12:06:00Z" is more than 5 minutes in the future' },
      { status: 'rejected', field: 'tenantId', reason: '"ghost" is not a known tenant' },
      { status: 'rejected', field: 'metadata', reason: '"{bad" is not valid JSON' },
    ]);
    const again = await recordUsage(db, [{ tenantId: 't1', featureKey: 'API_CALL', eventId: 'x' }], { now: NOW_MS });
    expect(again).toEqual([{ status: 'duplicate', idempotencyKey: 'e:x' }]);
    expect(await totals(db)).toEqual({ count: 3, sum: '2100000' });
    // Inside a caller's transaction, rolled back with it.
    await db.knex
      .transaction(async (trx) => {
        await recordUsage(db, [{ tenantId: 't1', featureKey: 'API_CALL', eventId: 'y' }], { now: NOW_MS, trx });
        throw new Error('roll back');
      })
      .catch(() => {});
    expect((await totals(db)).count).toBe(3);
  });

  it('recordUsageBatches: one transaction, each batch at its own clock, duplicates in batch order', async () => {
    const { db } = t();
    await seedIngest(db);
    const later = NOW_MS + 10 * 60_000;
    const [first, second] = await recordUsageBatches(db, [
      { now: NOW_MS, inputs: [{ tenantId: 't1', featureKey: 'API_CALL', eventId: 'a' }, { tenantId: 't1', featureKey: 'API_CALL', occurredAt: later }] },
      { now: later, inputs: [{ tenantId: 't1', featureKey: 'API_CALL', eventId: 'a' }, { tenantId: 't1', featureKey: 'API_CALL', eventId: 'b', occurredAt: later }] },
    ]);
    // 10 minutes ahead of the first batch's clock is in the future; at the second's it is now.
    expect(first.map((r) => r.status)).toEqual(['inserted', 'rejected']);
    expect(second).toEqual([{ status: 'duplicate', idempotencyKey: 'e:a' }, { status: 'inserted', idempotencyKey: 'e:b' }]);
    const rows = await db.knex('usage_events').orderBy('idempotency_key').select('idempotency_key', 'occurred_at', 'ingested_at');
    expect(rows.map((r) => [r.idempotency_key, Number(r.occurred_at), Number(r.ingested_at)])).toEqual([
      ['e:a', NOW_MS, NOW_MS],
      ['e:b', later, later],
    ]);
  });

  it('refuses NUL characters, which PostgreSQL cannot store, alike on both databases', async () => {
    const { db } = t();
    await seedIngest(db);
    const results = await recordUsage(
      db,
      [
        { tenantId: 't1', featureKey: 'API_CALL', sourceService: 'api', sourceEntityId: 'req\u00001' },
        { tenantId: 't1', featureKey: 'API_CALL', metadata: { note: { deep: 'a\u0000b' } } },
        { tenantId: 't1', featureKey: 'API_CALL', metadata: '{"k\\u0000":1}' },
        { tenantId: 't1', featureKey: 'API_CALL', metadata: '{"path":"C:\\\\u0000"}' }, // an escaped backslash, then "u0000": no NUL
      ],
      { now: NOW_MS },
    );
    const nul = 'contains a NUL character (U+0000), which cannot be stored';
    expect(results.map((r) => (r.status === 'rejected' ? `${r.field}: ${r.reason}` : r.status))).toEqual([
      `sourceEntityId: ${nul}`,
      `metadata: ${nul}`,
      `metadata: ${nul}`,
      'inserted',
    ]);
  });

  it('produces the same key for the same event through recordUsage and file ingest', async () => {
    const { db } = t();
    await seedIngest(db);
    await recordUsage(db, [{ tenantId: 't1', featureKey: 'API_CALL', quantity: '2', occurredAt: '2026-11-01T00:00:00Z', userId: 'u' }], { now: NOW_MS });
    const s = await ingestText(db, 'same.csv', 'tenant_id,feature,quantity,time,user_id\nt1,API_CALL,2,1793491200,u\n');
    expect(s).toMatchObject({ inserted: 0, duplicates: 1 });
  });
});

describe('ingest pieces', () => {
  it('converts quantities to micro-units without floats', () => {
    expect(quantityMicro('0.1')).toBe('100000');
    expect(quantityMicro('007.50')).toBe('7500000');
    expect(quantityMicro('0')).toBe('0');
    expect(quantityMicro(3)).toBe('3000000');
    expect(quantityMicro(0.3)).toBe('300000');
    expect(quantityMicro(1e-6)).toBe('1');
    expect(quantityMicro('1000000000000')).toBe('1000000000000000000');
    expect(quantityMicro('1e3')).toBe('not_a_number');
    expect(quantityMicro(-1)).toBe('negative');
    expect(quantityMicro(1e13)).toBe('too_large');
    expect(quantityMicro('0.0000001')).toBe('too_precise');
  });

  it('keeps source keys unambiguous and short enough for the column', () => {
    const base = { featureKey: 'F', micro: '1', occurredAt: null, ingestedAt: 0, eventId: null, userId: null, metadata: null };
    const a = idempotencyKey({ ...base, sourceService: 'a:b', sourceEntityId: 'c' });
    const b = idempotencyKey({ ...base, sourceService: 'a', sourceEntityId: 'b:c' });
    expect(a).toBe('s:a%3Ab:c:F');
    expect(b).toBe('s:a:b%3Ac:F');
    const long = idempotencyKey({ ...base, eventId: 'x'.repeat(255), sourceService: null, sourceEntityId: null });
    expect(long).toMatch(/^e#[\w-]{43}$/);
  });
});
