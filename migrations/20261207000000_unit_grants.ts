import type { Knex } from 'knex';

// DESIGN.md §14: grants of units (top-ups of a feature's included quantity) and what each
// invoiced period drew from them. A draw on a void invoice does not count: the reissue draws again.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('unit_grants', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // ug_<random>
    t.integer('seq').notNullable(); // creation order: the last tie-break when drawing
    t.string('feature_key').notNullable();
    t.string('quantity').notNullable(); // decimal string, > 0
    t.integer('priority').notNullable(); // lower first
    t.bigInteger('effective_at').notNullable();
    t.bigInteger('expires_at'); // null: never
    t.bigInteger('created_at').notNullable();
    t.bigInteger('voided_at');
    t.primary(['tenant_id', 'id']);
    t.unique(['tenant_id', 'seq']);
  });
  await knex.schema.createTable('grant_uses', (t) => {
    t.string('tenant_id').notNullable();
    t.string('grant_id').notNullable();
    t.string('invoice_id').notNullable();
    t.bigInteger('period_start').notNullable();
    t.string('quantity').notNullable(); // decimal string, > 0
    t.primary(['tenant_id', 'grant_id', 'invoice_id']);
    t.foreign(['tenant_id', 'grant_id']).references(['tenant_id', 'id']).inTable('unit_grants');
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('grant_uses');
  await knex.schema.dropTableIfExists('unit_grants');
}
