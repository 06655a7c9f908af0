import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { parse } from 'csv-parse/sync';
import { expect, it } from 'vitest';
import { fileInput } from '../src/ingest/source.js';
import { ingest, type IngestSummary } from '../src/ingest/ingest.js';
import { runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { NOW, NOW_MS, seedIngest, storedEvents, type StoredEvent } from './ingest-support.js';

/**
 * The bad-input corpus (fixtures/bad-input/cases.json), ingest cases: each file is ingested
 * with a rejects file and must give exactly the expected counts, with every reject naming the
 * expected field and kept in the rejects file. Cases marked `cli` also go through the real
 * CLI: the exit code, a clean --json stdout, and no stack trace on stderr.
 */

const CORPUS = fileURLToPath(new URL('../fixtures/bad-input/', import.meta.url));

interface Expect {
  read: number;
  inserted: number;
  duplicates: number;
  rejected: number;
  /** The field named by each reject, in order. */
  rejects: string[];
  exit: 0 | 2 | 3;
  /** For exit 2: part of the one-line error. */
  error?: string;
  /** Column values that must be among the events stored by the case. */
  stored?: Partial<Record<keyof StoredEvent, string[]>>;
  rejectsContain?: string[];
  messagesContain?: string[];
}

interface Case {
  name: string;
  kind: 'ingest' | 'catalog' | 'http' | 'webhook';
  description: string;
  file: string;
  generate?: string;
  cli?: boolean;
  /** Replacements that fix the rejected rows: the fixed rejects file must then ingest cleanly. */
  fix?: Array<[string, string]>;
  expect: Expect;
}

const manifest = JSON.parse(readFileSync(path.join(CORPUS, 'cases.json'), 'utf8')) as { cases: Case[] };
const cases = manifest.cases.filter((c) => c.kind === 'ingest');

const okRows = (n: number, p: string) => Array.from({ length: n }, (_, i) => `t1,API_CALL,1,2026-11-01T00:00:00Z,${p}-${i}`).join('\n');
const HEAD = 'tenant_id,feature,quantity,occurred_at,event_id';
const okLine = (id: string) => JSON.stringify({ tenant_id: 't1', feature: 'API_CALL', id });

/** Inputs too large to commit, or binary. */
const GENERATE: Record<string, () => Buffer> = {
  'unclosed-quote-spill': () => Buffer.from(`${HEAD}\nt1,API_CALL,1,,"open\n${okRows(25_000, 'spill')}\nt1,API_CALL,1,,"closed"\n${okRows(1, 'after')}\n`),
  'oversized-quoted': () => Buffer.from(`${HEAD}\n${okRows(50, 'a')}\nt1,API_CALL,1,,"${'x'.repeat(1_100_000)}"\n${okRows(50, 'b')}\n`),
  'oversized-plain': () => Buffer.from(`${HEAD}\n${okRows(50, 'a')}\nt1,API_CALL,1,,${'x'.repeat(1_100_000)}\n${okRows(50, 'b')}\n`),
  'deep-metadata-csv': () =>
    Buffer.from(`${HEAD},metadata\nt1,API_CALL,1,,deep,"${'{""a"":'.repeat(100_000)}1${'}'.repeat(100_000)}"\n${okRows(1, 'ok')},\n`),
  'deep-nesting-ndjson': () =>
    Buffer.from(`${okLine('a')}\n{"tenant_id":"t1","feature":"API_CALL","metadata":${'{"a":'.repeat(150_000)}1${'}'.repeat(150_000)}}\n${okLine('b')}\n`),
  'overlong-ndjson': () => Buffer.from(`${okLine('a')}\n${JSON.stringify({ tenant_id: 't1', feature: 'API_CALL', metadata: { pad: 'x'.repeat(1_100_000) } })}\n`),
  gzip: () => gzipSync(`${HEAD}\n${okRows(2, 'gz')}\nt1,API_CALL,-1,,bad\n`),
  'gzip-truncated': () => {
    const z = gzipSync(`${HEAD}\n${okRows(200, 'gz')}\n`);
    return z.subarray(0, z.length - 200);
  },
};

function inputFile(dir: string, c: Case): string {
  if (!c.generate) return path.join(CORPUS, c.file);
  const p = path.join(dir, c.file);
  writeFileSync(p, GENERATE[c.generate]());
  return p;
}

/** Records in a rejects file: CSV (quoted cells may hold line breaks) or JSON lines. */
function rejectsRecords(file: string): unknown[] {
  const text = readFileSync(file, 'utf8');
  if (file.endsWith('.csv')) return parse(text, { columns: true, relax_column_count: true }) as unknown[];
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as unknown);
}

const fieldOf = (message: string) => /^.*?:\d+: ([^:]+): /.exec(message)?.[1];

describeEachDb('bad-input corpus', (t) => {
  it(`has at least 40 ingest cases, each with a description and an outcome`, () => {
    expect(cases.length).toBeGreaterThanOrEqual(40);
    for (const c of cases) {
      expect(c.description, c.name).toBeTruthy();
      expect(c.generate === undefined || c.generate in GENERATE, c.name).toBe(true);
    }
  });

  it('ingest: no crash, counts add up, every reject named and kept, valid rows land', async () => {
    const { db } = t();
    await seedIngest(db);
    const dir = tempDir('bad-input-');
    for (const c of cases) {
      const e = c.expect;
      const file = inputFile(dir, c);
      const rejectsPath = path.join(dir, `${c.name}.rejects${file.includes('.ndjson') ? '.ndjson' : '.csv'}`);
      await db.knex('usage_events').del(); // each case on its own: ids repeat across cases
      const before = 0;
      let s: IngestSummary;
      try {
        s = await ingest(db, [fileInput(file)], { now: NOW_MS, rejectsPath, maxMessages: 1000 });
      } catch (err) {
        expect(e.exit, `${c.name}: ${(err as Error).message}`).toBe(2);
        expect((err as Error).message).toContain(e.error);
        expect(Number((await db.knex('usage_events').count({ n: '*' }))[0].n), c.name).toBe(before);
        continue;
      }
      expect(e.exit, `${c.name} was expected to be refused`).not.toBe(2);
      expect({ read: s.read, inserted: s.inserted, duplicates: s.duplicates, rejected: s.rejected }, c.name).toEqual({
        read: e.read,
        inserted: e.inserted,
        duplicates: e.duplicates,
        rejected: e.rejected,
      });
      expect(s.read, c.name).toBe(s.inserted + s.duplicates + s.rejected);
      expect(s.messages.map(fieldOf), c.name).toEqual(e.rejects);
      for (const m of e.messagesContain ?? []) expect(s.messages.join('\n'), c.name).toContain(m);

      const kept = rejectsRecords(rejectsPath);
      expect(kept, `${c.name}: rejects file`).toHaveLength(e.rejected);
      const rejectsText = readFileSync(rejectsPath, 'utf8');
      for (const m of e.rejectsContain ?? []) expect(rejectsText, c.name).toContain(m);

      const events = (await storedEvents(db)).slice(before);
      expect(events, c.name).toHaveLength(e.inserted);
      for (const [column, values] of Object.entries(e.stored ?? {})) {
        for (const v of values) expect(events.map((ev) => String(ev[column as keyof StoredEvent])), `${c.name}: ${column}`).toContain(v);
      }
      expect(({} as Record<string, unknown>).polluted, c.name).toBeUndefined();

      if (c.fix) {
        let fixed = rejectsText;
        for (const [from, to] of c.fix) fixed = fixed.split(from).join(to);
        const fixedPath = rejectsPath.replace('.rejects', '.fixed');
        writeFileSync(fixedPath, fixed);
        const again = await ingest(db, [fileInput(fixedPath)], { now: NOW_MS });
        expect({ inserted: again.inserted, rejected: again.rejected, messages: again.messages }, `${c.name}: fixed rejects`).toEqual({
          inserted: e.rejected,
          rejected: 0,
          messages: [],
        });
      }
    }
  });

  it('CLI: the exit code, a clean --json stdout, one line per problem and no stack trace', async () => {
    const { db, url } = t();
    await seedIngest(db);
    const dir = tempDir('bad-input-cli-');
    for (const c of cases.filter((x) => x.cli)) {
      const e = c.expect;
      const file = inputFile(dir, c);
      const rejects = path.join(dir, `${c.name}.rejects${file.includes('.ndjson') ? '.ndjson' : '.csv'}`);
      const r = await runCli(['ingest', file, '--rejects', rejects, '--json'], { db: url, now: NOW });
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(e.exit);
      expect(r.stderr, c.name).not.toMatch(/^\s+at /m);
      if (e.exit === 2) {
        expect(r.stdout, c.name).toBe('');
        expect(r.stderr.trim().split('\n'), c.name).toHaveLength(1);
        expect(r.stderr, c.name).toContain(e.error);
        continue;
      }
      const out = JSON.parse(r.stdout) as IngestSummary;
      expect({ read: out.read, inserted: out.inserted + out.duplicates, rejected: out.rejected }, c.name).toEqual({
        read: e.read,
        inserted: e.inserted + e.duplicates,
        rejected: e.rejected,
      });
      expect(out.messages.map(fieldOf), c.name).toEqual(e.rejects);
      expect(rejectsRecords(rejects), c.name).toHaveLength(e.rejected);
    }
  }, 240_000);
});
