import type { Knex } from 'knex';

// DESIGN.md §14: a plan feature's rollover cap (decimal string; null: no rollover).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.string('rollover_max');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.dropColumn('rollover_max');
  });
}
