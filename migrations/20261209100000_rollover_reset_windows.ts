import type { Knex } from 'knex';

// DESIGN.md §14: a plan feature's rollover cap (decimal string; null: no rollover) and its
// reset window (day / week / month; null: the whole period).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.string('rollover_max');
    t.string('reset_every');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_features', (t) => {
    t.dropColumn('rollover_max');
    t.dropColumn('reset_every');
  });
}
