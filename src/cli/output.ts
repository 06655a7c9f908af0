/** Plain output helpers: JSON for machines, aligned text for people. */

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function printLine(s = ''): void {
  process.stdout.write(s + '\n');
}

export function printErr(s: string): void {
  process.stderr.write(s + '\n');
}

/** Render rows as an aligned text table (no escape codes: safe for pipes and logs). */
export function formatTable(columns: string[], rows: Array<Array<string | number | boolean | null>>): string {
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '' : String(c))));
  const widths = columns.map((c, i) => Math.max(c.length, ...cells.map((r) => (r[i] ?? '').length)));
  const isNumeric = columns.map((_, i) => cells.length > 0 && cells.every((r) => /^-?[\d.,]*$/.test(r[i] ?? '')));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (isNumeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  return [fmt(columns), fmt(widths.map((w) => '-'.repeat(w))), ...cells.map(fmt)].join('\n');
}

/** Escape a CSV cell, including formula-injection guards (= + - @ and tab/CR prefixes). */
export function csvCell(v: unknown): string {
  let s = v === null || v === undefined ? '' : String(v);
  if (/^[=+\-@\t\r]/.test(s) && !/^-?\d+(\.\d+)?$/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export function toCsv(columns: string[], rows: unknown[][]): string {
  return [columns.map(csvCell).join(','), ...rows.map((r) => r.map(csvCell).join(','))].join('\n') + '\n';
}
