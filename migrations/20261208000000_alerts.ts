import type { Knex } from 'knex';

// DESIGN.md §15: alert rules per tenant (optionally per feature) and their firings. A rule
// fires at most once per billing period: the firing's key is (tenant, rule, period start), so
// two daemons or a rerun insert it once. tenant_id leads every key.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('alert_rules', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // al_<random>
    t.string('feature_key'); // null: the whole tenant (spend, prepaid credit)
    t.string('kind').notNullable(); // usage_percent | usage | spend | credit_below
    t.string('threshold').notNullable(); // decimal string: percent, units or major-unit amount
    t.string('base'); // usage_percent: included | limit
    t.bigInteger('created_at').notNullable();
    t.bigInteger('removed_at');
    t.primary(['tenant_id', 'id']);
  });
  await knex.schema.createTable('alert_firings', (t) => {
    t.string('tenant_id').notNullable();
    t.string('rule_id').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.bigInteger('fired_at').notNullable();
    t.string('value').notNullable(); // what crossed: units, percent or amount, as the rule measures
    t.string('threshold').notNullable();
    t.string('currency', 3); // spend and prepaid credit rules
    t.primary(['tenant_id', 'rule_id', 'period_start']);
    t.foreign(['tenant_id', 'rule_id']).references(['tenant_id', 'id']).inTable('alert_rules');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTable('alert_firings');
  await knex.schema.dropTable('alert_rules');
}
