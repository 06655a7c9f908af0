import type { Command } from 'commander';
import { BillingError } from '../domain/errors.js';
import { parseInstant, type Instant } from '../domain/period.js';
import type { Db, MigrationPolicy } from '../storage/db.js';
import { resolveDbUrl } from '../storage/url.js';

/** What every command gets: resolved once here, so the core never reads env or clock. */
export interface CliContext {
  dbUrl: string;
  now: Instant;
  json: boolean;
  debug: boolean;
  /** Actor written to the audit log. */
  actor: string;
  /** BILLING_BACKFILL_DAYS: how far before its tenant's creation an event may lie. */
  backfillDays: number | undefined;
  env: NodeJS.ProcessEnv;
  openDb(policy?: MigrationPolicy): Promise<Db>;
}

export interface GlobalOptions {
  db?: string;
  now?: string;
  json?: boolean;
  debug?: boolean;
}

export function resolveNow(flag: string | undefined, env: NodeJS.ProcessEnv, clock: () => number): Instant {
  const raw = flag ?? env.BILLING_NOW;
  if (raw === undefined || raw === '') return clock();
  const t = parseInstant(raw);
  if (t === null) throw new BillingError('usage', `--now / BILLING_NOW "${raw}" is not an ISO 8601 instant`);
  return t;
}

export function resolveBackfillDays(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.BILLING_BACKFILL_DAYS?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,6}$/.test(raw)) throw new BillingError('usage', `BILLING_BACKFILL_DAYS "${raw}" must be a whole number of days`);
  return Number(raw);
}

export function buildContext(cmd: Command, env: NodeJS.ProcessEnv = process.env): CliContext {
  const opts = cmd.optsWithGlobals() as GlobalOptions;
  const dbUrl = resolveDbUrl(opts.db, env);
  const ctx: CliContext = {
    dbUrl,
    now: resolveNow(opts.now, env, Date.now),
    json: Boolean(opts.json),
    debug: Boolean(opts.debug),
    actor: env.BILLING_ACTOR || `cli:${env.USER || 'unknown'}`,
    backfillDays: resolveBackfillDays(env),
    env,
    async openDb(policy: MigrationPolicy = 'auto') {
      const { openDb } = await import('../storage/db.js');
      return openDb(dbUrl, policy);
    },
  };
  return ctx;
}

/** Open the database, run fn, always close. */
export async function withDb<T>(ctx: CliContext, fn: (db: Db) => Promise<T>, policy?: MigrationPolicy): Promise<T> {
  const db = await ctx.openDb(policy);
  try {
    return await fn(db);
  } finally {
    await db.close();
  }
}
