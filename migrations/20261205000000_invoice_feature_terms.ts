import type { Knex } from 'knex';

// The terms (plan at period end after the tenant's quota override) of every metered feature an
// invoice priced, JSON by feature key: late usage of its period is priced on them, whatever the
// override or plan says by then. NULL on invoices issued before this column: current terms.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('invoices', (t) => {
    t.text('feature_terms');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('invoices', (t) => {
    t.dropColumn('feature_terms');
  });
}
