// `billing completion SHELL`: scripts generated from the command tree; the bash one is run.
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runCli } from './helpers/cli.js';
import { tempDir } from './helpers/temp.js';

const hasShell = (shell: string) => spawnSync(shell, ['-c', 'true']).status === 0;

describe('billing completion', () => {
  let bashScript = '';
  beforeAll(async () => {
    const r = await runCli(['completion', 'bash']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    bashScript = r.stdout;
  });

  /** What bash's completion offers for the words typed so far (the last one is being completed). */
  function complete(line: string): string[] {
    const dir = tempDir('completion');
    const file = join(dir, 'billing.bash');
    writeFileSync(file, bashScript);
    const words = line.split(' ');
    const program = [
      `source ${JSON.stringify(file)}`,
      `COMP_WORDS=(${words.map((w) => JSON.stringify(w)).join(' ')})`,
      `COMP_CWORD=${words.length - 1}`,
      '_billing',
      'printf "%s\\n" "${COMPREPLY[@]}"',
    ].join('\n');
    const r = spawnSync('bash', ['--norc', '--noprofile', '-c', program], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    return r.stdout.split('\n').filter(Boolean).sort();
  }

  it.skipIf(!hasShell('bash'))('bash completes commands, subcommands and options from the command tree', () => {
    expect(complete('billing ten')).toEqual(['tenant']);
    expect(complete('billing cre')).toEqual(['credit', 'credit-note']);
    expect(complete('billing tenant ')).toEqual(['create', 'import', 'list', 'show', 'update']);
    expect(complete('billing credit-note c')).toEqual(['create']);
    expect(complete('billing invoice generate --')).toEqual(['--config', '--db', '--debug', '--dry-run', '--finalize', '--help', '--json', '--now', '--tenant']);
    // global options and their values before the command do not hide it
    expect(complete('billing --db sqlite:x.db tax s')).toEqual(['set', 'show']);
    expect(complete('billing --config ops.json tax s')).toEqual(['set', 'show']);
    expect(complete('billing --j')).toEqual(['--json']);
    // a command without subcommands leaves the word to file-name completion
    expect(complete('billing ingest us')).toEqual([]);
  });

  it('zsh and fish scripts name every command, subcommand and option', async () => {
    for (const shell of ['zsh', 'fish']) {
      const r = await runCli(['completion', shell]);
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('credit-note');
      expect(r.stdout).toMatch(shell === 'fish' ? /-l dry-run/ : /--dry-run/);
      if (hasShell(shell)) expect(spawnSync(shell, ['-n'], { input: r.stdout }).status, `${shell} -n`).toBe(0);
    }
    const fish = (await runCli(['completion', 'fish'])).stdout;
    expect(fish).toContain("complete -c billing -n '__fish_seen_subcommand_from tenant; and __fish_seen_subcommand_from import' -l dry-run");
    expect(fish).toContain("-a 'update' -d 'change a tenant\\'s name or currency'");
  });

  it('refuses an unknown shell with a usage error', async () => {
    const r = await runCli(['completion', 'ksh']);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain("'ksh' is invalid");
  });
});
