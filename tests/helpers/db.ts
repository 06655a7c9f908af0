import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describe, beforeEach, afterEach } from 'vitest';
import { openDb, type Db, type Dialect } from '../../src/storage/db.js';

export const PG_URL = process.env.BILLING_TEST_PG_URL || 'postgres://postgres@127.0.0.1:5432/test';

let pgReachable: Promise<boolean> | undefined;

/** Whether PostgreSQL answers. Under CI=true an unreachable server is a failure, never a skip. */
export function isPgReachable(): Promise<boolean> {
  pgReachable ??= (async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch (e) {
      if (process.env.CI === 'true' || process.env.CI === '1') {
        throw new Error(`CI=true but PostgreSQL at ${PG_URL} is unreachable: ${(e as Error).message}`);
      }
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return pgReachable;
}

export interface TestDb {
  dialect: Dialect;
  /** URL to hand to the CLI (--db) for this same fresh database. */
  url: string;
  db: Db;
  cleanup(): Promise<void>;
}

/** A brand-new, migrated database: a temp SQLite file, or a fresh PostgreSQL schema. */
export async function freshDb(dialect: Dialect): Promise<TestDb> {
  if (dialect === 'sqlite') {
    const dir = mkdtempSync(path.join(tmpdir(), 'billing-test-'));
    const url = `sqlite:${path.join(dir, 'test.db')}`;
    const db = await openDb(url);
    return {
      dialect,
      url,
      db,
      async cleanup() {
        await db.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
  const schema = `t_${randomBytes(6).toString('hex')}`;
  const url = `${PG_URL}${PG_URL.includes('?') ? '&' : '?'}schema=${schema}`;
  const bootstrap = await openDb(url, 'none');
  await bootstrap.knex.migrate.latest();
  return {
    dialect,
    url,
    db: bootstrap,
    async cleanup() {
      await bootstrap.knex.raw(`drop schema if exists ?? cascade`, [schema]).catch(() => {});
      await bootstrap.close();
    },
  };
}

export const DIALECTS: Dialect[] = ['sqlite', 'pg'];

/**
 * Run the same suite once per database (knex's knex-instance-provider pattern). Each test
 * gets a fresh database through `t()`. PostgreSQL is skipped only when unreachable and not CI.
 */
export function describeEachDb(name: string, body: (t: () => TestDb) => void): void {
  for (const dialect of DIALECTS) {
    describe(`${name} [${dialect}]`, () => {
      let current: TestDb | undefined;
      beforeEach(async (ctx) => {
        if (dialect === 'pg' && !(await isPgReachable())) {
          ctx.skip();
          return;
        }
        current = await freshDb(dialect);
      });
      afterEach(async () => {
        await current?.cleanup();
        current = undefined;
      });
      body(() => {
        if (!current) throw new Error('test database not initialised');
        return current;
      });
    });
  }
}
