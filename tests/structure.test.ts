import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

// The shape of src/: which folder imports which, and where the dialect may be asked.

const SRC = resolve(new URL('..', import.meta.url).pathname, 'src');

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sourceFiles(p) : /\.tsx?$/.test(n) ? [p] : [];
  });
}

const folderOf = (file: string) => relative(SRC, file).split('/')[0].replace(/\.tsx?$/, '');

/** folder → the folders its files import (relative imports under src/ only). */
function folderEdges(): Map<string, Set<string>> {
  const edges = new Map<string, Set<string>>();
  for (const file of sourceFiles()) {
    for (const m of readFileSync(file, 'utf8').matchAll(/(?:from|import)\s*\(?\s*'(\.[^']+)'/g)) {
      const target = resolve(dirname(file), m[1]);
      if (relative(SRC, target).startsWith('..')) continue;
      const [a, b] = [folderOf(file), folderOf(target)];
      if (a === b) continue;
      if (!edges.has(a)) edges.set(a, new Set());
      edges.get(a)!.add(b);
    }
  }
  return edges;
}

/** Strongly connected components of more than one folder (Tarjan). */
function cycles(edges: Map<string, Set<string>>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.sort());
    }
  };
  const nodes = new Set([...edges.keys(), ...[...edges.values()].flatMap((s) => [...s])]);
  for (const v of [...nodes].sort()) if (!index.has(v)) visit(v);
  return out;
}

/** Upward imports allowed as exceptions: none; keep it that way. */
const KNOWN_UPWARD_IMPORTS: ReadonlyArray<readonly [string, string]> = [];

/** Files outside storage allowed to read db.dialect: none (use forDialect). */
const KNOWN_DIALECT_LOOKUPS: string[] = [];

describe('structure of src/', () => {
  const edges = folderEdges();
  const known = (a: string, b: string) => KNOWN_UPWARD_IMPORTS.some(([x, y]) => x === a && y === b);

  it('no folder imports src/cli, except the known ones being removed', () => {
    const importers = [...edges].filter(([a, bs]) => bs.has('cli') && !known(a, 'cli')).map(([a]) => a);
    expect(importers).toEqual([]);
  });

  it('has no import cycle between folders once the known upward imports are set aside', () => {
    const rest = new Map([...edges].map(([a, bs]) => [a, new Set([...bs].filter((b) => !known(a, b)))]));
    expect(cycles(rest)).toEqual([]);
  });

  it('asks the dialect only in src/storage and in files named per dialect', () => {
    const branches = sourceFiles()
      .filter((f) => !relative(SRC, f).startsWith('storage/') && !/-(pg|sqlite)\.tsx?$/.test(f))
      .filter((f) => !KNOWN_DIALECT_LOOKUPS.includes(relative(SRC, f)))
      .flatMap((f) =>
        readFileSync(f, 'utf8')
          .split('\n')
          .map((line, i) => ({ line, at: `${relative(SRC, f)}:${i + 1}` }))
          .filter(({ line }) => /dialect\s*[!=]==|[!=]==\s*'(pg|sqlite)'|\[[\w.]*dialect\]/.test(line))
          .map(({ at }) => at),
      );
    expect(branches).toEqual([]);
  });
});
