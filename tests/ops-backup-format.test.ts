import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it, onTestFinished } from 'vitest';
import { describeEachDb, freshDb } from './helpers/db.js';
import { tempDir } from './helpers/temp.js';
import { runCli } from './helpers/cli.js';
import { NOW, seedWorld, snapshot } from './jobs-support.js';
import { backup } from '../src/ops/backup.js';
import { restore } from '../src/ops/restore.js';

const ISO_NOW = new Date(NOW).toISOString();

// The file format does not depend on the database: one dialect is enough here.
describe('backup header checksum', () => {
  it('refuses a flip of the low bit of a header byte (ends and a spread sample), and still restores the untouched file', async () => {
    const t = await freshDb('sqlite');
    onTestFinished(() => t.cleanup());
    const { db } = t;
    await seedWorld(db, ['acme']);
    const dir = tempDir('billing-backup-format-');
    const file = path.join(dir, 'acme.ndjson');
    await backup(db, { out: file, tenantId: 'acme', now: NOW });
    const bytes = readFileSync(file);
    const headerEnd = bytes.indexOf(0x0a);
    expect(headerEnd).toBeGreaterThan(100);
    const before = await snapshot(db);
    const target = path.join(dir, 'flipped.ndjson');
    const accepted: string[] = [];
    // Both ends of the header and every 13th byte between (every byte takes too long for the suite).
    const positions = [...Array(headerEnd).keys()].filter((i) => i < 64 || i >= headerEnd - 64 || i % 13 === 0);
    for (const i of positions) {
      const flipped = Buffer.from(bytes);
      flipped[i] ^= 0x01;
      writeFileSync(target, flipped);
      try {
        await restore(db, { file: target, now: NOW, actor: 'test' });
        accepted.push(`byte ${i}`);
      } catch (e) {
        if (!/is not usable/.test((e as Error).message)) accepted.push(`byte ${i}: ${(e as Error).message}`);
      }
    }
    expect(accepted).toEqual([]);
    expect(await snapshot(db)).toEqual(before);
    // The file as written restores.
    const ok = await restore(db, { file, now: NOW, actor: 'test' });
    expect(ok).toMatchObject({ scope: 'tenant', tenant: 'acme', warnings: [] });
  }, 180_000);
});

describeEachDb('backup file format', (t) => {

  it('a version 1 file (checksum over the data lines only) is restored with a warning', async () => {
    const { db, url } = t();
    await seedWorld(db, ['acme']);
    const dir = tempDir('billing-backup-format-');
    const file = path.join(dir, 'acme.ndjson');
    await backup(db, { out: file, tenantId: 'acme', now: NOW });
    const [head, ...rest] = readFileSync(file, 'utf8').split('\n');
    const { createHash } = await import('node:crypto');
    const data = rest.filter((l) => l !== '').map((l) => l + '\n').join('');
    const v1 = { ...JSON.parse(head), version: 1, checksum: `sha256:${createHash('sha256').update(data).digest('hex')}` };
    const old = path.join(dir, 'old.ndjson');
    writeFileSync(old, JSON.stringify(v1) + '\n' + data);
    const r = await runCli(['restore', old, '--json'], { db: url, now: ISO_NOW });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^warning: backup .*old\.ndjson has format version 1, whose checksum covers the data lines only/);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ scope: 'tenant', tenant: 'acme' });
  });

  it('--out - writes the backup to stdout, messages to stderr, and no file named "-"', async () => {
    const { db, url, dialect } = t();
    await seedWorld(db);
    const cwd = tempDir('billing-backup-stdout-');
    for (const json of [false, true]) {
      const r = await runCli(['backup', '--out', '-', ...(json ? ['--json'] : [])], { db: url, now: ISO_NOW, cwd });
      expect(r.code).toBe(0);
      expect(readdirSync(cwd)).toEqual([]);
      expect(existsSync(path.join(cwd, '-'))).toBe(false);
      const lines = r.stdout.trimEnd().split('\n');
      const header = JSON.parse(lines[0]);
      expect(header).toMatchObject({ format: 'billing-backup', version: 2, scope: 'full' });
      expect(lines.length - 1).toBe(header.tables.reduce((n: number, x: { count: number }) => n + x.count, 0));
      if (json) expect(JSON.parse(r.stderr)).toMatchObject({ file: '-', checksum: header.checksum });
      else expect(r.stderr).toMatch(/wrote \d+ row\(s\) to stdout \(full, sha256:/);
      // What went to stdout is a whole backup: it restores into a fresh database.
      const file = path.join(tempDir('billing-backup-piped-'), 'piped.ndjson');
      writeFileSync(file, r.stdout);
      const target = await freshDb(dialect);
      try {
        const restored = await runCli(['restore', file], { db: target.url, now: ISO_NOW });
        expect(restored.stderr).toBe('');
        expect(restored.code).toBe(0);
        expect((await snapshot(target.db)).usage_events).toEqual((await snapshot(db)).usage_events);
      } finally {
        await target.cleanup();
      }
    }
  });
});
