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
