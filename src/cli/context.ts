import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { BillingError } from '../domain/errors.js';
import { parseInstant, type Instant } from '../domain/period.js';
import type { SellerDetails } from '../domain/seller.js';
import type { DaemonConfig } from '../jobs/schedules.js';
import type { Db, MigrationPolicy } from '../storage/db.js';
import { resolveDbUrl } from '../storage/url.js';
import { resolveConfigFile, type ConfigFile } from './config-file.js';

/** The login name of the process's user (no $USER under cron, systemd or `env -i`); null if unknown. */
function osUser(): string | null {
  try {
    return userInfo().username || null;
  } catch {
    return null; // a uid with no passwd entry (some containers)
  }
}

/** What every command gets: resolved once here, so the core never reads env or clock. */
export interface CliContext {
  dbUrl: string;
  /** --db, BILLING_DATABASE_URL, DATABASE_URL or the config file named one (not the default database). */
  dbExplicit: boolean;
  now: Instant;
  /** The instant --now / BILLING_NOW pinned, or undefined when the clock is the real one. */
  pinnedNow: Instant | undefined;
  /** `now` for long-running commands: the pinned instant, else the real clock read at each call. */
  clock: () => Instant;
  /** The real clock, even under --now (e.g. how long ago a job last ran). */
  wallClock: () => number;
  json: boolean;
  debug: boolean;
  /** Actor written to the audit log. */
  actor: string;
  /** BILLING_BACKFILL_DAYS: how far before its tenant's creation an event may lie. */
  backfillDays: number | undefined;
  env: NodeJS.ProcessEnv;
  /** INVOICE_DUE_DAYS, else the config file's invoiceDueDays (undefined: the core's default). */
  invoiceDueDays(): number | undefined;
  /** The currency of a tenant created without --currency: BILLING_DEFAULT_CURRENCY, else the config file's. */
  defaultCurrency(): string | undefined;
  /** The seller block of invoices, from the config file (undefined when it has none). */
  seller(): SellerDetails | undefined;
  /** The daemon's settings from the config file (or the defaults), before --schedule flags. */
  daemonConfig: DaemonConfig;
  /** The config file read, or null when there is none. */
  configFile: string | null;
  openDb(policy?: MigrationPolicy): Promise<Db>;
}

export interface GlobalOptions {
  db?: string;
  config?: string;
  now?: string;
  json?: boolean;
  debug?: boolean;
}

/** The instant --now / BILLING_NOW pins the clock to, or undefined for the real clock. */
export function resolvePinnedNow(flag: string | undefined, env: NodeJS.ProcessEnv): Instant | undefined {
  const raw = flag ?? env.BILLING_NOW;
  if (raw === undefined || raw === '') return undefined;
  const t = parseInstant(raw);
  if (t === null) throw new BillingError('usage', `--now / BILLING_NOW "${raw}" is not an ISO 8601 instant`);
  return t;
}

export function resolveNow(flag: string | undefined, env: NodeJS.ProcessEnv, clock: () => number): Instant {
  return resolvePinnedNow(flag, env) ?? clock();
}

/** INVOICE_DUE_DAYS (DESIGN.md §8), else the config file's; undefined lets the core apply its default of 7. */
export function resolveDueDays(env: NodeJS.ProcessEnv, fromFile?: number): number | undefined {
  const raw = env.INVOICE_DUE_DAYS;
  if (raw === undefined || raw === '') return fromFile;
  if (!/^\d+$/.test(raw.trim())) throw new BillingError('usage', `INVOICE_DUE_DAYS "${raw}" must be a whole number of days`);
  return Number(raw.trim());
}

export function resolveBackfillDays(env: NodeJS.ProcessEnv): number | undefined {
  const raw = env.BILLING_BACKFILL_DAYS?.trim();
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,6}$/.test(raw)) throw new BillingError('usage', `BILLING_BACKFILL_DAYS "${raw}" must be a whole number of days`);
  return Number(raw);
}

/** BILLING_DEFAULT_CURRENCY, else the config file's defaultCurrency. */
export function resolveDefaultCurrency(env: NodeJS.ProcessEnv, file: ConfigFile): string | undefined {
  const raw = env.BILLING_DEFAULT_CURRENCY?.trim();
  return raw ? raw : file.defaultCurrency;
}

export function buildContext(cmd: Command, env: NodeJS.ProcessEnv = process.env): CliContext {
  const opts = cmd.optsWithGlobals() as GlobalOptions;
  // Read first: a bad config file stops every command before it touches the database.
  const file = resolveConfigFile(opts.config, env);
  const dbUrl = resolveDbUrl(opts.db, env, file.databaseUrl);
  const pinnedNow = resolvePinnedNow(opts.now, env);
  const ctx: CliContext = {
    dbUrl,
    dbExplicit: Boolean(opts.db || env.BILLING_DATABASE_URL || env.DATABASE_URL || file.databaseUrl),
    now: pinnedNow ?? Date.now(),
    pinnedNow,
    clock: pinnedNow === undefined ? Date.now : () => pinnedNow,
    wallClock: Date.now,
    json: Boolean(opts.json),
    debug: Boolean(opts.debug),
    actor: env.BILLING_ACTOR || `cli:${env.USER || osUser() || 'unknown'}`,
    backfillDays: resolveBackfillDays(env),
    env,
    invoiceDueDays: () => resolveDueDays(env, file.invoiceDueDays),
    defaultCurrency: () => resolveDefaultCurrency(env, file),
    seller: () => file.seller,
    daemonConfig: file.daemon,
    configFile: file.file,
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
