import type { Knex } from 'knex';

// The summary quantity (micro-units) a charge was rated from, so the overage stage can find
// in SQL the summaries whose usage changed since they were rated. Null: no summary (a
// minimum charged on a period without usage).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('rated_charges', (t) => {
    t.bigInteger('summary_quantity');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('rated_charges', (t) => {
    t.dropColumn('summary_quantity');
  });
}
