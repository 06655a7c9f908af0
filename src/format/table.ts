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
