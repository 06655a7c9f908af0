import { readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { isKnownCurrency } from '../domain/money.js';
import { BillingError } from '../domain/errors.js';
import type { SellerDetails } from '../domain/seller.js';
import { daemonSection, toDaemonConfig, type DaemonConfig } from '../jobs/schedules.js';

/**
 * billing.config.json: settings an operator keeps in a file instead of flags and environment.
 * Precedence is resolved by the CLI (flags > environment > this file > defaults); this module
 * only finds, reads and validates the file.
 */

export const CONFIG_FILE_NAME = 'billing.config.json';

export interface ConfigFile {
  /** The file read, or null when none was given and ./billing.config.json is absent. */
  file: string | null;
  databaseUrl: string | undefined;
  defaultCurrency: string | undefined;
  invoiceDueDays: number | undefined;
  seller: SellerDetails | undefined;
  daemon: DaemonConfig;
}

const text = (what: string) => z.string({ error: `must be ${what}` }).trim().min(1, { error: `must be ${what}` });

const schema = z.strictObject(
  {
    // Checked for its scheme only; the value is never echoed (it may hold a password).
    databaseUrl: text('a database URL string (sqlite:PATH or postgres://...)')
      .refine((u) => u.startsWith('sqlite:') || /^postgres(ql)?:\/\//.test(u), { error: 'must start with sqlite: or postgres://' })
      .optional(),
    defaultCurrency: text('an ISO 4217 currency code such as "USD"')
      .refine((c) => isKnownCurrency(c.toUpperCase()), { error: 'must be an ISO 4217 currency code such as "USD"' })
      .optional(),
    invoiceDueDays: z
      .number({ error: 'must be a whole number of days from 0 to 3650' })
      .int({ error: 'must be a whole number of days from 0 to 3650' })
      .min(0, { error: 'must be a whole number of days from 0 to 3650' })
      .max(3650, { error: 'must be a whole number of days from 0 to 3650' })
      .optional(),
    seller: z
      .strictObject(
        {
          name: text('the seller\'s name (a non-empty string)'),
          addressLines: z.array(z.string({ error: 'must be a string' }), { error: 'must be an array of strings, one per address line' }).optional(),
          email: text('an email address string').optional(),
          taxId: text('a tax id string').optional(),
        },
        { error: 'must be an object with name, addressLines, email, taxId' },
      )
      .optional(),
    daemon: daemonSection.optional(),
  },
  { error: 'must be a JSON object' },
);

/** The keys an object at `at` in the file accepts (for "unknown key" messages). */
function keysAt(at: PropertyKey[]): string[] {
  let s: z.ZodType = schema;
  for (const seg of at) {
    while (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
    if (!(s instanceof z.ZodObject)) return [];
    s = (s.shape as Record<string, z.ZodType>)[String(seg)];
    if (!s) return [];
  }
  while (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap() as z.ZodType;
  return s instanceof z.ZodObject ? Object.keys(s.shape) : [];
}

const keyPath = (at: PropertyKey[]) => at.map((k, i) => (typeof k === 'number' ? `[${k}]` : i === 0 ? String(k) : `.${String(k)}`)).join('');

/** `FILE: KEY: problem`, one line (printed after the CLI's `billing: ` prefix). */
function refuse(file: string, key: string | null, problem: string): never {
  throw new BillingError('usage', `${file}: ${key === null ? '' : `${key}: `}${problem}`);
}

/** Validate a parsed config document; `file` names it in errors. */
export function parseConfig(raw: unknown, file: string): ConfigFile {
  const r = schema.safeParse(raw);
  if (!r.success) {
    // An unknown key first: a misspelt key also makes its intended neighbour look absent.
    const issue = r.error.issues.find((i) => i.code === 'unrecognized_keys') ?? r.error.issues[0];
    if (issue.code === 'unrecognized_keys') {
      refuse(file, keyPath([...issue.path, issue.keys[0]]), `unknown key (use ${keysAt(issue.path).join(', ')})`);
    }
    refuse(file, issue.path.length ? keyPath(issue.path) : null, issue.message);
  }
  const c = r.data;
  return {
    file,
    databaseUrl: c.databaseUrl,
    defaultCurrency: c.defaultCurrency?.toUpperCase(),
    invoiceDueDays: c.invoiceDueDays,
    seller: c.seller && {
      name: c.seller.name,
      addressLines: c.seller.addressLines ?? [],
      email: c.seller.email ?? null,
      taxId: c.seller.taxId ?? null,
    },
    daemon: toDaemonConfig(c.daemon),
  };
}

/** The settings of a file that is absent: every value from the environment or the defaults. */
export const NO_CONFIG_FILE: ConfigFile = Object.freeze({
  file: null,
  databaseUrl: undefined,
  defaultCurrency: undefined,
  invoiceDueDays: undefined,
  seller: undefined,
  daemon: toDaemonConfig(undefined),
});

/** Read and validate `file`; `required` false (the default file) tolerates its absence. */
export function loadConfigFile(file: string, required: boolean): ConfigFile {
  let content: string;
  try {
    content = readFileSync(file, 'utf8');
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (!required && err.code === 'ENOENT') return NO_CONFIG_FILE;
    refuse(file, null, err.code === 'ENOENT' ? 'no such file' : `cannot read it (${err.code ?? err.message})`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(content);
  } catch (e) {
    refuse(file, null, `not valid JSON (${(e as Error).message})`);
  }
  return parseConfig(raw, file);
}

/** `--config FILE`, else BILLING_CONFIG, else ./billing.config.json when it exists. */
export function resolveConfigFile(flag: string | undefined, env: NodeJS.ProcessEnv): ConfigFile {
  const given = flag || env.BILLING_CONFIG;
  if (given) return loadConfigFile(given, true);
  return loadConfigFile(path.resolve(CONFIG_FILE_NAME), false);
}
