import { createWriteStream, openSync, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { BillingError } from '../domain/errors.js';
import { stringifyJson } from './json.js';

/**
 * The `--rejects FILE`: every rejected record as it came in, plus its line and the reason,
 * in the input's format so that a fixed file can be ingested again as is (`line` and
 * `reason` are not field names ingest reads). CSV in → the header's columns, then `line`,
 * `reason` (and any cells beyond the header's width after those); JSON lines in → the
 * original object with `line` and `reason` added, or `{ line, reason, raw }` for a line
 * that is not a JSON object.
 */
export class RejectsFile {
  private readonly out: WriteStream;
  private kind: 'csv' | 'json' | null = null;
  private header: string[] | null = null;
  private pending: string[] = [];
  private failure: Error | null = null;

  constructor(readonly path: string) {
    let fd: number;
    try {
      fd = openSync(path, 'w'); // fail now, before anything is ingested, if it cannot be written
    } catch (e) {
      throw new BillingError('usage', `cannot write rejects file ${path}: ${(e as Error).message}`);
    }
    this.out = createWriteStream(path, { fd });
    this.out.on('error', (e) => (this.failure = e));
  }

  /** Called with each CSV input's header: one rejects file holds one header. */
  beginCsv(header: readonly string[], label: string): void {
    if (this.kind === 'json') throw this.mixed();
    if (this.header && this.header.join('\u0000') !== header.join('\u0000')) {
      throw new BillingError(
        'usage',
        `${label}: its header differs from the previous CSV input's; one --rejects file holds one header (ingest the files separately)`,
      );
    }
    if (!this.header) {
      this.header = [...header];
      this.pending.push(csvLine([...header, 'line', 'reason']));
    }
    this.kind = 'csv';
  }

  beginJson(): void {
    if (this.kind === 'csv') throw this.mixed();
    this.kind = 'json';
  }

  csv(fields: readonly string[], line: number, reason: string): void {
    const width = this.header?.length ?? fields.length;
    const cells = fields.slice(0, width);
    while (cells.length < width) cells.push('');
    this.pending.push(csvLine([...cells, String(line), reason, ...fields.slice(width)]));
  }

  json(original: unknown, line: number, reason: string): void {
    const rec =
      typeof original === 'object' && original !== null && !Array.isArray(original)
        ? { ...(original as Record<string, unknown>), line, reason }
        : { line, reason, raw: original };
    this.pending.push(stringifyJson(rec) + '\n'); // numbers as written in the input

  }

  /** Write what was collected; waits when the disk is slower than the input. */
  async flush(): Promise<void> {
    if (this.failure) throw this.writeError();
    if (this.pending.length === 0) return;
    const chunk = this.pending.join('');
    this.pending = [];
    if (!this.out.write(chunk)) await once(this.out, 'drain');
  }

  async close(): Promise<void> {
    await this.flush();
    this.out.end();
    await once(this.out, 'close');
    if (this.failure) throw this.writeError();
  }

  private mixed(): BillingError {
    return new BillingError('usage', '--rejects needs inputs of one kind: all CSV, or all JSON lines');
  }

  private writeError(): BillingError {
    return new BillingError('invalid_input', `cannot write rejects file ${this.path}: ${this.failure?.message}`);
  }
}

/**
 * A cell a spreadsheet would run as a formula (= + - @, tab, CR first; numbers aside) gets a
 * leading ' as in `billing report --format csv`: rejects files are fixed in spreadsheets.
 */
function csvCell(cell: string): string {
  const s = /^[=+\-@\t\r]/.test(cell) && !/^-?\d+(\.\d+)?$/.test(cell) ? `'${cell}` : cell;
  return /[",\n\r]/.test(s) || /^\s|\s$/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

function csvLine(cells: readonly string[]): string {
  return cells.map(csvCell).join(',') + '\n';
}
