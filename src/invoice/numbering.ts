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
  const updated = await trx('invoice_counters').where('issuer', ISSUER).increment('last_number', 1);
  if (!updated) await trx('invoice_counters').insert({ issuer: ISSUER, last_number: 1 });
  const row = await trx('invoice_counters').where('issuer', ISSUER).first('last_number');
  return formatInvoiceNumber(Number(row.last_number));
}
