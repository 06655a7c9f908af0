import { spawnSync } from 'node:child_process';
import { expect, it } from 'vitest';
import { BIN } from './helpers/cli.js';

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
