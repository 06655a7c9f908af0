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

// Text output only: JSON and CSV carry the exact values.

/** "12345678.5" → "12,345,678.5"; anything that is not a plain decimal is returned as it is. */
export function groupDigits(value: string): string {
  const m = /^(-?)(\d+)(\.\d+)?$/.exec(value);
  if (!m) return value;
  return `${m[1]}${m[2].replace(/\B(?=(\d{3})+(?!\d))/g, ',')}${m[3] ?? ''}`;
}

/** Cells longer than `max` characters end in an ellipsis (a 128-character tenant id must not make a table 300 columns wide). */
export function truncateCell(value: string, max = 24): string {
  const chars = [...value];
  return chars.length <= max ? value : `${chars.slice(0, max - 1).join('')}…`;
}
