import { BillingError } from '../domain/errors.js';
import { readCsv } from './readers/csv.js';
import { readLines } from './readers/lines.js';
import { inputBytes, sniffFormat, type IngestInput } from './source.js';

/** A record of a small tabular input: its line and its named fields as text. */
export interface TableRecord {
  line: number;
  fields: Record<string, string>;
}

export interface TableRecords {
  records: TableRecord[];
  /** Lines that are not a record: unreadable, not a JSON object, a value that is not a scalar. */
  unreadable: Array<{ line: number; field: string | null; message: string }>;
}

/**
 * Every record of a CSV (with a header) or JSON-lines input, held in memory: for inputs of
 * thousands of rows (tenants to import), not usage streams. Header names and JSON keys are
 * lower-cased; numbers and booleans are kept as their JSON text; null is absent. Only the
 * `known` fields (and those `family` matches) are kept; an unknown column is an error of the
 * whole input (a typo would otherwise drop data silently).
 */
export async function readTableRecords(input: IngestInput, known: readonly string[], family?: { pattern: RegExp; label: string }): Promise<TableRecords> {
  const chunks: Buffer[] = [];
  for await (const b of inputBytes(input.open(), { bytes: 0 })) chunks.push(b);
  const all = Buffer.concat(chunks);
  const out: TableRecords = { records: [], unreadable: [] };
  if (all.length === 0) return out;
  const format = input.format === 'csv' || input.format === 'ndjson' ? input.format : sniffFormat(all);
  const bytes = (async function* () {
    yield all;
  })();
  const unreadable = (line: number, message: string) => out.unreadable.push({ line, field: null, message });
  const checkKey = (key: string, line: number) => {
    if (!known.includes(key) && !family?.pattern.test(key)) {
      throw new BillingError('invalid_input', `${input.label}:${line}: unknown field "${key}" (expected ${known.join(', ')}${family ? `, ${family.label}` : ''})`);
    }
  };
  if (format === 'csv') {
    let header: string[] | null = null;
    const handler = {
      record(fields: string[], line: number) {
        if (!header) {
          header = fields.map((h) => h.trim().toLowerCase());
          for (const h of header) checkKey(h, line);
          return;
        }
        const rec: Record<string, string> = {};
        if (fields.length > header.length) {
          out.unreadable.push({ line, field: null, message: `has ${fields.length} fields, the header ${header.length}` });
          return;
        }
        header.forEach((h, i) => {
          if (fields[i] !== undefined && fields[i].trim() !== '') rec[h] = fields[i].trim();
        });
        out.records.push({ line, fields: rec });
      },
      unreadable,
    };
    for await (const _ of readCsv(bytes, 10_000, handler));
  } else {
    const handler = {
      record(text: string, line: number) {
        let value: unknown;
        try {
          value = JSON.parse(text);
        } catch {
          out.unreadable.push({ line, field: null, message: 'is not valid JSON' });
          return;
        }
        if (!value || typeof value !== 'object' || Array.isArray(value)) {
          out.unreadable.push({ line, field: null, message: 'is not a JSON object' });
          return;
        }
        const rec: Record<string, string> = {};
        for (const [k, v] of Object.entries(value)) {
          const key = k.toLowerCase();
          checkKey(key, line);
          if (v === null) continue;
          if (typeof v === 'object') {
            out.unreadable.push({ line, field: key, message: 'is not a string or a number' });
            return;
          }
          rec[key] = String(v);
        }
        out.records.push({ line, fields: rec });
      },
      unreadable,
    };
    for await (const _ of readLines(bytes, 10_000, handler));
  }
  return out;
}
