import { BillingError } from '../domain/errors.js';

export type DbTarget =
  | { dialect: 'sqlite'; filename: string; display: string; readonly: boolean }
  | { dialect: 'pg'; connectionString: string; schema: string | null; display: string };

export const DEFAULT_DB_URL = 'sqlite:./billing.db';

/** Resolve the database URL the way every command does: flag, env, config file, default. */
export function resolveDbUrl(flag: string | undefined, env: NodeJS.ProcessEnv, fromFile?: string): string {
  return flag || env.BILLING_DATABASE_URL || env.DATABASE_URL || fromFile || DEFAULT_DB_URL;
}

/** The URL with any password replaced, safe to print in errors and logs. */
export function redactUrl(url: string): string {
  // Greedy up to the last "@" before the host: a password may itself contain "@".
  return url.replace(/(\/\/[^:/@\s]*:)[^/\s]*@/g, '$1***@');
}

export function parseDbUrl(url: string): DbTarget {
  if (url.startsWith('sqlite:')) {
    let filename = url.slice('sqlite:'.length);
    if (filename.startsWith('//')) filename = filename.slice(2); // sqlite:///abs/path or sqlite://rel
    // sqlite:PATH?mode=ro opens the file read-only (as does a file or directory we cannot write).
    const readonly = filename.endsWith('?mode=ro');
    if (readonly) filename = filename.slice(0, -'?mode=ro'.length);
    if (!filename) throw new BillingError('usage', `database URL "${url}" has no file path (e.g. sqlite:./billing.db)`);
    return { dialect: 'sqlite', filename, display: url, readonly };
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      throw new BillingError('usage', `database URL "${redactUrl(url)}" is not a valid URL`);
    }
    const schema = parsed.searchParams.get('schema');
    parsed.searchParams.delete('schema');
    return { dialect: 'pg', connectionString: parsed.toString(), schema, display: redactUrl(url) };
  }
  throw new BillingError(
    'usage',
    `unsupported database URL "${redactUrl(url)}": use sqlite:PATH or postgres://user@host:port/db`,
  );
}
