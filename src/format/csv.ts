import { stringify } from 'csv-stringify/sync';

/**
 * Formula-injection guard: a cell starting with = + - @ tab or CR gets a leading '.
 * Plain numbers (-5, -1.25) stay as they are, which csv-stringify's own escape_formulas would not allow.
 */
export function formulaSafe(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s) ? `'${s}` : s;
}

/** RFC 4180 CSV with a header row; every cell is made a formula-safe string first, so quoting is the library's only job. */
export function toCsv(columns: string[], rows: unknown[][]): string {
  return stringify([columns, ...rows].map((r) => r.map(formulaSafe)), { record_delimiter: '\n' });
}
