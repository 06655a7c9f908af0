// The README stays short, and no document points at a file the repository lacks.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(new URL('..', import.meta.url).pathname);
const DOCS = [join(ROOT, 'README.md'), ...readdirSync(join(ROOT, 'docs')).filter((n) => n.endsWith('.md')).map((n) => join(ROOT, 'docs', n))];

/** Targets of inline Markdown links and images, outside fenced code blocks. */
function relativeLinks(markdown: string): string[] {
  const prose = markdown.replace(/^```[\s\S]*?^```/gm, '');
  return [...prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)]
    .map((m) => m[1])
    .filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t) && !t.startsWith('#'));
}

describe('documentation', () => {
  it('README.md has at most 250 lines', () => {
    const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length;
    expect(lines).toBeLessThanOrEqual(250);
  });

  it('README.md keeps the two fresh-machine commands CI runs', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    expect(readme).toContain('npm install && npx billing demo');
    expect(readme).toMatch(/^npm test\b/m);
  });

  it('every relative link in README.md and docs/*.md resolves to a file in the repository', () => {
    const broken: string[] = [];
    for (const file of DOCS) {
      for (const target of relativeLinks(readFileSync(file, 'utf8'))) {
        const path = resolve(dirname(file), decodeURIComponent(target.split('#')[0]));
        if (!existsSync(path)) broken.push(`${file.slice(ROOT.length + 1)}: ${target}`);
      }
    }
    expect(DOCS.length).toBeGreaterThan(3);
    expect(broken).toEqual([]);
  });

  it('finds a broken link (the check above can fail)', () => {
    expect(relativeLinks('see [x](docs/nope.md#a), [y](https://e.x/), [z](#top)\n```\n[q](in-code.md)\n```\n')).toEqual(['docs/nope.md#a']);
  });

  it('no document mentions DESIGN.md, which lives outside the repository', () => {
    expect(DOCS.filter((f) => readFileSync(f, 'utf8').includes('DESIGN.md'))).toEqual([]);
  });
});
