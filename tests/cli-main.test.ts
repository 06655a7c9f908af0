import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from './helpers/cli.js';
import { describeEachDb } from './helpers/db.js';
import { seedWorld } from './jobs-support.js';

it('exits quietly when its reader goes away (billing --help | a reader that closed its input)', () => {
  // The reader closes stdin at once, so the CLI's first write hits a closed pipe (EPIPE).
  const r = spawnSync('bash', ['-c', `"${process.execPath}" "${BIN}" --help | (exec 0<&-; sleep 1); echo "rc=\${PIPESTATUS[0]}"`], { encoding: 'utf8' });
  expect(r.stderr).not.toMatch(/EPIPE|Unhandled/);
  expect(r.stdout).toMatch(/rc=0/);
});

it('answers an unknown command with a usage error (exit 2), not a stack trace', () => {
  const r = spawnSync(process.execPath, [BIN, 'no-such-command'], { encoding: 'utf8' });
  expect(r.status).toBe(2);
  expect(r.stderr).toMatch(/unknown command 'no-such-command'/);
  expect(r.stderr).not.toMatch(/\n\s+at /);
});

it('finds the invoked command past global options, so only its file is loaded', async () => {
  const { invokedCommand } = await import('../src/cli/commands/index.js');
  expect(invokedCommand(['--db', 'sqlite:x.db', '--now', '2026-01-01', '--json', 'check', 't', 'F'])).toBe('check');
  expect(invokedCommand(['--db=sqlite:x.db', 'report'])).toBe('report');
  expect(invokedCommand(['--config', 'ops.json', 'status'])).toBe('status');
  expect(invokedCommand(['--help'])).toBeUndefined();
});

it('still lists every command in --help and resolves options given before the command', () => {
  const help = spawnSync(process.execPath, [BIN, '--help'], { encoding: 'utf8' });
  for (const c of ['demo', 'ingest', 'aggregate', 'overage', 'invoice', 'stripe', 'check', 'daemon', 'serve']) {
    expect(help.stdout).toMatch(new RegExp(`\\n  ${c}\\b`));
  }
  const sub = spawnSync(process.execPath, [BIN, '--json', 'check', '--help'], { encoding: 'utf8' });
  expect(sub.status).toBe(0);
  expect(sub.stdout).toMatch(/Usage: billing check/);
});

it("prints an error's CLI hint after its message (the HTTP API leaves it out)", async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-hint-'));
  try {
    const r = await runCli(['report', '--tenant', 'nosuch'], { db: `sqlite:${path.join(dir, 'x.db')}` });
    expect([r.code, r.stdout, r.stderr]).toEqual([2, '', 'billing: tenant "nosuch" does not exist (see `billing tenant list`)\n']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

it('prints the package version for --version and -V', () => {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = spawnSync(process.execPath, [BIN, flag], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(pkg.version);
  }
});

describe('a database that cannot be opened', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'billing-open-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  it.each([
    ['PostgreSQL on a closed port', 'postgres://postgres:SECRETPW@127.0.0.1:1/test', /^billing: cannot open database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/test: connect ECONNREFUSED/],
    ['SQLite in a missing directory', `sqlite:${path.join(dir, 'missing', 'x.db')}`, /^billing: cannot open database sqlite:.*directory does not exist/],
  ])('%s: one line on stderr, nothing on stdout, even with --json', async (_name, url, line) => {
    const r = await runCli(['--json', 'report'], { db: url });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(line);
    expect(r.stderr).not.toMatch(/SECRETPW|\n\s+at /);
  });
});

describe('a read-only SQLite database', () => {
  const NOW = '2026-03-20T12:00:00Z';
  const READS = [['report', '--json'], ['invoice', 'list', '--json'], ['status', '--json'], ['verify', '--json']];
  let root: string;
  let expected: string[];
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  /** Run as a user who cannot write: nobody when the tests run as root (root ignores modes). */
  function asReader(args: string[], db: string): { code: number; stdout: string; stderr: string } {
    const asRoot = process.getuid?.() === 0;
    const r = spawnSync(process.execPath, [BIN, ...args, '--db', db, '--now', NOW], {
      encoding: 'utf8',
      env: { ...process.env, NO_COLOR: '1', HOME: tmpdir() },
      ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
    });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** A copy of the demo database in its own directory, the file mode 444 and the directory writable or not. */
  function copy(name: string, dirWritable: boolean): string {
    const dir = path.join(root, name);
    mkdirSync(dir);
    const file = path.join(dir, 'billing.db');
    copyFileSync(path.join(root, 'billing-demo.db'), file);
    chmodSync(file, 0o444);
    if (process.getuid?.() === 0 && dirWritable) chownSync(dir, 65534, 65534);
    chmodSync(dir, dirWritable ? 0o755 : 0o555);
    return file;
  }

  it('serves report, invoice list, status and verify, refuses writes in one line, and refuses pending migrations', async () => {
    root = mkdtempSync(path.join(tmpdir(), 'billing-ro-'));
    chmodSync(root, 0o755);
    const demo = await runCli(['demo', '--json'], { cwd: root });
    expect(demo.code).toBe(0);
    // Closed cleanly: the WAL is checkpointed into the file and removed.
    expect(existsSync(path.join(root, 'billing-demo.db-wal'))).toBe(false);
    expected = [];
    for (const args of READS) {
      const r = await runCli(args, { db: `sqlite:${path.join(root, 'billing-demo.db')}`, now: NOW });
      expect(r.code, args.join(' ')).toBe(0);
      expected.push(r.stdout);
    }
    const targets = [
      ['?mode=ro', `sqlite:${path.join(root, 'billing-demo.db')}?mode=ro`, false],
      ['file 444, directory writable', `sqlite:${copy('file-ro', true)}`, true],
      ['file 444, directory read-only', `sqlite:${copy('dir-ro', false)}`, true],
    ] as const;
    for (const [name, db, reader] of targets) {
      const run = (args: string[]) => (reader ? Promise.resolve(asReader(args, db)) : runCli(args, { db, now: NOW }));
      for (const [i, args] of READS.entries()) {
        const r = await run(args);
        expect(r.stderr, `${name}: ${args.join(' ')}`).toBe('');
        expect(r.code, `${name}: ${args.join(' ')}`).toBe(0);
        expect(r.stdout, `${name}: ${args.join(' ')}`).toBe(expected[i]);
      }
      const write = await run(['aggregate']);
      expect(write.code, name).toBe(1);
      expect(write.stdout, name).toBe('');
      expect(write.stderr, name).toBe('billing: the database is read-only (sqlite:PATH?mode=ro, or a file or directory this user cannot write): this command writes to it\n');
    }

    const pending = path.join(root, 'pending.db');
    copyFileSync(path.join(root, 'billing-demo.db'), pending);
    const Database = (await import('better-sqlite3')).default;
    const conn = new Database(pending);
    conn.prepare('DELETE FROM knex_migrations WHERE id = (SELECT MAX(id) FROM knex_migrations)').run();
    conn.close();
    const refused = await runCli(['report'], { db: `sqlite:${pending}?mode=ro`, now: NOW });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^billing: database sqlite:.*pending\.db\?mode=ro is read-only and has pending migrations; run `billing migrate` with write access first\n$/);
  });
});

describeEachDb('a database error', (t) => {
  it('is one line with the driver message, never the statement or the values it carried', async () => {
    const { db, url } = t();
    await seedWorld(db, ['acme']);
    // A table gone from under the command: the insert fails in the database itself.
    await db.knex.schema.dropTable('usage_events');
    const r = await runCli(['record', '--tenant', 'acme', '--feature', 'OCR_SCAN', '--source-service', 'scanner', '--source-entity', 'doc-SENTINEL-42'], { db: url, now: '2026-02-10T12:00:00Z' });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^billing: database error: .*usage_events.* \((SQLITE_ERROR|42P01)\) \(run with --debug for details\)$/);
    expect(r.stderr).not.toMatch(/SENTINEL|insert into|select /i);
  });
});
