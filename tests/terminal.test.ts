// What a person at a terminal sees: the real CLI under a pseudo-terminal (util-linux `script`),
// with ink drawing frames as it does outside CI.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { BIN } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { NOW as INGEST_NOW, seedIngest } from './ingest-support.js';
import { seedWorld } from './jobs-support.js';

const SCRIPT = '/usr/bin/script';
const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const plain = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '');

/** Run bin/billing on a pseudo-terminal (stdin, stdout and stderr) and return all it drew. */
function onTerminal(args: string[]): Promise<{ code: number; out: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, TERM: 'xterm-256color' };
  // ink draws only the last frame under CI; NO_COLOR turns the live views off.
  for (const k of ['CI', 'NO_COLOR', 'BILLING_DATABASE_URL', 'DATABASE_URL', 'BILLING_NOW']) delete env[k];
  const cmd = `stty rows 40 cols 160; exec ${[process.execPath, BIN, ...args].map(quote).join(' ')}`;
  return new Promise((resolve, reject) => {
    const child = spawn(SCRIPT, ['-qec', cmd, '/dev/null'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, out: plain(out) }));
  });
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'terminal-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeEachDb('on a terminal', (t) => {
  it.skipIf(!existsSync(SCRIPT))('billing run prints each stage once (the live lines, no table repeating them)', async () => {
    const { db, url } = t();
    await seedWorld(db);
    const r = await onTerminal(['run', '--db', url, '--now', '2026-02-10T12:00:00Z']);
    expect(r.code, r.out).toBe(0);
    for (const stage of ['aggregate', 'overage', 'invoice', 'stripe-sync', 'dunning', 'webhooks']) {
      // A stage line is the name then a column gap; the progress bar's label has one space.
      const lines = r.out.split('\n').filter((l) => new RegExp(`(^|\\s)${stage} {2,}\\S`).test(l));
      expect(lines, `${stage} in:\n${r.out}`).toHaveLength(1);
    }
    expect(r.out).not.toContain('STAGE');
  });

  it.skipIf(!existsSync(SCRIPT))('the ingest progress bar is up, at 0 % "reading…", before the first batch', async () => {
    const { db, url, dialect } = t();
    await seedIngest(db);
    const rows = Array.from({ length: 50 }, (_, i) => `t1,API_CALL,1,e${i}`);
    const csv = path.join(dir, `u-${dialect}.csv`);
    writeFileSync(csv, `tenant_id,feature,quantity,event_id\n${rows.join('\n')}\n`);
    const r = await onTerminal(['ingest', csv, '--db', url, '--now', INGEST_NOW, '--batch-size', '10']);
    expect(r.code, r.out).toBe(0);
    // The first frame is drawn before any row is read, so it is in the output whatever
    // the speed of the rest; the last one shows the whole file.
    const first = r.out.indexOf('0% reading…');
    expect(first, r.out).toBeGreaterThanOrEqual(0);
    expect(r.out.indexOf('100% 50 rows', first), r.out).toBeGreaterThan(first);
    expect(r.out).toContain('read 50, inserted 50, duplicates 0, rejected 0');
  });
});
