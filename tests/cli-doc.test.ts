// docs/cli.md is generated from the commander program: it must match what the CLI registers now.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../src/cli/main.js';
import { renderCliDoc } from '../src/cli/docs.js';

const CLI_DOC = new URL('../docs/cli.md', import.meta.url);

describe('docs/cli.md', () => {
  it('is what `npm run docs:cli` writes from the registered commands (rerun it when this fails)', async () => {
    const rendered = renderCliDoc(await buildProgram([]));
    expect(readFileSync(CLI_DOC, 'utf8')).toBe(rendered);
  });

  it('has every command with its usage, options and examples', async () => {
    const rendered = renderCliDoc(await buildProgram([]));
    expect(rendered).toContain('### billing credit-note create\n');
    expect(rendered).toContain('Usage: billing credit-note create [options] <invoice>');
    expect(rendered).toMatch(/--reason <text> {2,}why, kept with the note/);
    expect(rendered).toContain('$ billing credit-note create INV-000001 --line 2 --reason "usage billed twice"');
    expect(rendered).toMatch(/## Global options[\s\S]*--db <url>/);
  });
});
