import type pg from 'pg';

/**
 * `COPY ... FROM STDIN` on a node-postgres client without pg-copy-streams: a minimal
 * Submittable that answers CopyInResponse with the given data, then CopyDone. The whole
 * payload is in memory (one ingest batch), which keeps this far simpler than a stream.
 */
class CopyIn {
  callback?: (err: Error | null, rowCount?: number) => void;
  private rowCount = 0;
  private failed = false;

  constructor(
    private readonly text: string,
    private readonly data: Buffer,
  ) {}

  submit(connection: PgConnection): void {
    connection.query(this.text);
  }

  handleCopyInResponse(connection: PgConnection): void {
    // CopyData messages are capped by the server's 1 GB message size; stay well below.
    const CHUNK = 1 << 20;
    for (let i = 0; i < this.data.length; i += CHUNK) connection.sendCopyFromChunk(this.data.subarray(i, i + CHUNK));
    connection.endCopyFrom();
  }

  handleCommandComplete(msg: { text?: string }): void {
    const m = /^COPY (\d+)/.exec(msg.text ?? '');
    this.rowCount = m ? Number(m[1]) : 0;
  }

  handleReadyForQuery(): void {
    if (!this.failed) this.callback?.(null, this.rowCount);
  }

  handleError(err: Error): void {
    this.failed = true;
    this.callback?.(err);
  }

  // Not expected for COPY FROM; present so an odd server reply cannot crash the client.
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handleCopyData(): void {}
  handlePortalSuspended(): void {}
}

interface PgConnection {
  query(text: string): void;
  sendCopyFromChunk(chunk: Buffer): void;
  endCopyFrom(): void;
}

/** Run `copySql` (a `COPY ... FROM STDIN` statement) with `data` in COPY text format. */
export function copyFrom(client: pg.ClientBase, copySql: string, data: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const q = new CopyIn(copySql, data);
    q.callback = (err, n) => (err ? reject(err) : resolve(n ?? 0));
    (client as unknown as { query(q: CopyIn): void }).query(q);
  });
}

const NEEDS_ESCAPE = /[\\\t\n\r]/;

/** One value in COPY text format: \N for null, backslash escapes for \ tab LF CR. */
export function copyValue(v: unknown): string {
  if (v === null || v === undefined) return '\\N';
  const s = typeof v === 'string' ? v : String(v);
  if (!NEEDS_ESCAPE.test(s)) return s;
  return s.replace(/[\\\t\n\r]/g, (c) => (c === '\\' ? '\\\\' : c === '\t' ? '\\t' : c === '\n' ? '\\n' : '\\r'));
}

/** One row (values in column order) as a line of COPY text format, newline included. */
export function copyLine(row: readonly unknown[]): string {
  let line = copyValue(row[0]);
  for (let j = 1; j < row.length; j++) line += '\t' + copyValue(row[j]);
  return line + '\n';
}

/** Rows as a COPY text payload. */
export function copyText(rows: readonly (readonly unknown[])[]): Buffer {
  return Buffer.from(rows.map(copyLine).join(''), 'utf8');
}
