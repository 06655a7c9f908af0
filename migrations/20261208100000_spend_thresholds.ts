import type { Knex } from 'knex';

// DESIGN.md §15 spend thresholds: a plan's threshold, and invoices that bill a period before it
// ends. An invoice's billing_reason is `period` (the period's final invoice: one current per
// subscription period) or `threshold` (any number before it, each billing what the period owes
// so far less what its earlier invoices billed).
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_versions', (t) => {
    t.string('spend_threshold'); // decimal string, major units; null: none
  });
  await knex.schema.alterTable('invoices', (t) => {
    t.string('billing_reason').notNullable().defaultTo('period');
  });
  await knex.raw('DROP INDEX invoices_current_period');
  await knex.raw(
    "CREATE UNIQUE INDEX invoices_current_period ON invoices (tenant_id, subscription_id, period_start) WHERE status <> 'void' AND billing_reason = 'period'",
  );
}

export async function down(knex: Knex): Promise<void> {
  await knex.raw('DROP INDEX invoices_current_period');
  await knex.raw(`CREATE UNIQUE INDEX invoices_current_period ON invoices (tenant_id, subscription_id, period_start) WHERE status <> 'void'`);
  await knex.schema.alterTable('invoices', (t) => t.dropColumn('billing_reason'));
  await knex.schema.alterTable('plan_versions', (t) => t.dropColumn('spend_threshold'));
}
