// Every command's --help: an Examples section whose options exist, and the global options.
import { describe, expect, it } from 'vitest';
import type { Command } from 'commander';
import { buildProgram } from '../src/cli/main.js';
import { EXAMPLES, commandPath } from '../src/cli/examples.js';
import { runCli } from './helpers/cli.js';

function allCommands(program: Command): Command[] {
  const out: Command[] = [];
  const visit = (c: Command) => {
    for (const s of c.commands) {
      out.push(s);
      visit(s);
    }
  };
  visit(program);
  return out;
}

describe('billing --help', () => {
  it('every command has examples, every example names only options its command or the program defines', async () => {
    const program = await buildProgram([]);
    const commands = allCommands(program);
    const paths = commands.map(commandPath);
    expect(paths.filter((p) => !EXAMPLES[p]), 'commands without examples').toEqual([]);
    expect(Object.keys(EXAMPLES).filter((p) => !paths.includes(p)), 'examples of no command').toEqual([]);
    const globals = program.options.map((o) => o.long);
    const problems: string[] = [];
    for (const cmd of commands) {
      const path = commandPath(cmd);
      // Options of the command and of its subcommands (a group's example runs one of them).
      const own = new Set([...globals, ...allCommands(cmd).concat(cmd).flatMap((c) => c.options.map((o) => o.long))]);
      for (const example of EXAMPLES[path]) {
        if (!example.includes(`billing ${path}`)) problems.push(`${path}: "${example}" does not run billing ${path}`);
        for (const flag of example.match(/(?<=\s)--[a-z-]+/g) ?? []) if (!own.has(flag)) problems.push(`${path}: ${flag} in "${example}"`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('a subcommand page shows its examples and the global options', async () => {
    const r = await runCli(['tenant', 'import', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Examples:\n  $ billing tenant import tenants.csv --dry-run');
    expect(r.stdout).toMatch(/Global Options:[\s\S]*--db <url>[\s\S]*--now <iso>[\s\S]*--json/);
  });
});
