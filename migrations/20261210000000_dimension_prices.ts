import type { Knex } from 'knex';

// DESIGN.md §14 prices by dimension: a plan feature's metadata field and its prices (JSON
// array), and the value an invoice usage line bills (null: a feature not priced by dimension).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.string('dimension');
    t.text('prices');
  });
  await knex.schema.alterTable('invoice_lines', (t) => {
    t.text('dimension_value');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.dropColumn('dimension');
    t.dropColumn('prices');
  });
  await knex.schema.alterTable('invoice_lines', (t) => {
    t.dropColumn('dimension_value');
  });
}
