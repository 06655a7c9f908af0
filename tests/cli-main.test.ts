import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BIN, runCli } from './helpers/cli.js';

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
