import { readFile } from 'node:fs/promises';
import { BillingError } from '../domain/errors.js';

/** Parse catalog text: YAML for .yaml/.yml names, JSON otherwise. */
export async function parseCatalogText(text: string, name: string): Promise<unknown> {
  // Editors on Windows save UTF-8 with a BOM; ingest accepts it, so catalogs do too.
  if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
  if (/\.ya?ml$/i.test(name)) {
    const YAML = await import('yaml');
    const doc = YAML.parseDocument(text, { prettyErrors: false });
    if (doc.errors.length > 0) {
      const e = doc.errors[0];
      const where = e.linePos ? ` (line ${e.linePos[0].line}, column ${e.linePos[0].col})` : '';
      throw new BillingError('catalog_invalid', `cannot parse ${name} as YAML${where}: ${e.message.split('\n')[0]}`);
    }
    try {
      // yaml refuses documents whose aliases expand past maxAliasCount (an "alias bomb").
      return doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new BillingError('catalog_invalid', `cannot parse ${name} as YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new BillingError('catalog_invalid', `cannot parse ${name} as JSON: ${(e as Error).message}`);
  }
}

/** Read and parse a catalog file (JSON, or YAML by extension). */
export async function readCatalogFile(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new BillingError('usage', `cannot read catalog file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  return parseCatalogText(text, file);
}
