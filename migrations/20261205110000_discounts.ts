import type { Knex } from 'knex';

// Tenant discounts (DESIGN.md §13) and which invoices used a once/repeating one. A use on a
// void invoice does not count, so voiding gives it back to the reissue.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('discounts', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // dsc_<random>
    t.integer('seq').notNullable(); // creation order within the tenant: the order fixed amounts apply in
    t.string('percent'); // decimal string, exactly one of percent / amount
    t.string('amount'); // decimal string in the invoice currency
    t.string('duration').notNullable(); // once | repeating | forever
    t.integer('periods'); // repeating: how many invoices
    t.text('features'); // JSON array of feature keys; null: the whole subtotal
    t.bigInteger('starts_at').notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('removed_at');
    t.primary(['tenant_id', 'id']);
    t.unique(['tenant_id', 'seq']);
  });
  await knex.schema.createTable('discount_uses', (t) => {
    t.string('tenant_id').notNullable();
    t.string('discount_id').notNullable();
    t.string('invoice_id').notNullable();
    t.primary(['tenant_id', 'discount_id', 'invoice_id']);
    t.foreign(['tenant_id', 'discount_id']).references(['tenant_id', 'id']).inTable('discounts');
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('discount_uses');
  await knex.schema.dropTableIfExists('discounts');
}
