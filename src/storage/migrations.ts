import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import path from 'node:path';
import type { Knex } from 'knex';

// Works from both the TypeScript sources (tests) and the compiled dist/ tree.
const MIGRATIONS_DIR = fileURLToPath(new URL('../../migrations/', import.meta.url));

/** Lists migrations/ in name order; loads .ts under the test runner and .js once compiled. */
export class MigrationSource implements Knex.MigrationSource<string> {
  async getMigrations(): Promise<string[]> {
    const files = readdirSync(MIGRATIONS_DIR).filter((f) => /\.(js|ts)$/.test(f) && !f.endsWith('.d.ts'));
    const byName = new Map<string, string>();
    for (const f of files) {
      const name = f.replace(/\.(js|ts)$/, '');
      // Prefer .js (compiled) when both exist.
      if (!byName.has(name) || f.endsWith('.js')) byName.set(name, f);
    }
    return [...byName.keys()].sort().map((n) => byName.get(n)!);
  }
  getMigrationName(file: string): string {
    return file.replace(/\.(js|ts)$/, '');
  }
  async getMigration(file: string): Promise<Knex.Migration> {
    return import(pathToFileURL(path.join(MIGRATIONS_DIR, file)).href);
  }
}
