import type { Knex } from 'knex';

// DESIGN.md §13 totals next to subtotal and total, decimal strings in the invoice currency:
// discount_total, tax_total, credits_applied, amount_due. Existing invoices had none of them:
// zero, and amount_due = total.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('invoices', (t) => {
    t.string('discount_total');
    t.string('tax_total');
    t.string('credits_applied');
    t.string('amount_due');
  });
  // Zero spelled with the currency's digits, taken from a stored total of that currency.
  const samples = await knex('invoices').select('currency').max('total as total').groupBy('currency');
  for (const s of samples) {
    const total = String(s.total);
    const dot = total.indexOf('.');
    const zero = dot < 0 ? '0' : `0.${'0'.repeat(total.length - dot - 1)}`;
    await knex('invoices')
      .where('currency', s.currency)
      .update({ discount_total: zero, tax_total: zero, credits_applied: zero, amount_due: knex.ref('total') });
  }
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('invoices', (t) => {
    t.dropColumn('discount_total');
    t.dropColumn('tax_total');
    t.dropColumn('credits_applied');
    t.dropColumn('amount_due');
  });
}
