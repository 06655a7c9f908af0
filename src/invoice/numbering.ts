import type { Knex } from 'knex';

const ISSUER = 'default'; // one numbering sequence per issuer; one issuer per database for now

export function formatInvoiceNumber(n: number): string {
  return `INV-${String(n).padStart(6, '0')}`;
}

/**
 * Take the next number inside the invoice's own transaction. The counter row's update lock
 * serialises invoice creation across processes, and a rollback returns the number: no gaps.
 */
export async function takeInvoiceNumber(trx: Knex.Transaction): Promise<string> {
  return formatInvoiceNumber(await takeNumber(trx, ISSUER));
}

/** Credit notes have their own gapless sequence, CN-000001, taken the same way. */
export async function takeCreditNoteNumber(trx: Knex.Transaction): Promise<string> {
  return `CN-${String(await takeNumber(trx, 'credit_note')).padStart(6, '0')}`;
}

async function takeNumber(trx: Knex.Transaction, issuer: string): Promise<number> {
  const updated = await trx('invoice_counters').where('issuer', issuer).increment('last_number', 1);
  if (!updated) await trx('invoice_counters').insert({ issuer, last_number: 1 });
  const row = await trx('invoice_counters').where('issuer', issuer).first('last_number');
  return Number(row.last_number);
}
