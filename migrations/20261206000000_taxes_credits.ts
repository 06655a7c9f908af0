import type { Knex } from 'knex';

// DESIGN.md §13: minimum commitments, tax rates (per tenant, or the catalog's default),
// catalog coupons, prepaid credit grants and what invoices consumed of them, credit notes.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.alterTable('plan_versions', (t) => {
    t.string('minimum_commitment'); // decimal string per interval; null: none
  });
  await knex.schema.alterTable('tenants', (t) => {
    // true: the tenant's own tax rates apply (possibly none, `tax set --none`); false: the catalog default.
    t.boolean('taxes_set').notNullable().defaultTo(false);
  });
  await knex.schema.createTable('tenant_tax_rates', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('name').notNullable();
    t.string('rate').notNullable(); // percentage, decimal string
    t.boolean('inclusive').notNullable();
    t.bigInteger('created_at').notNullable();
    t.primary(['tenant_id', 'name']);
  });
  await knex.schema.createTable('default_tax_rates', (t) => {
    t.string('name').primary();
    t.string('rate').notNullable();
    t.boolean('inclusive').notNullable();
  });
  await knex.schema.createTable('coupons', (t) => {
    t.string('key').primary();
    t.string('percent');
    t.string('amount');
    t.string('duration').notNullable();
    t.integer('periods');
    t.text('features'); // JSON array; null: the whole subtotal
    t.bigInteger('updated_at').notNullable();
  });
  await knex.schema.createTable('credit_grants', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // cg_<random>
    t.integer('seq').notNullable(); // creation order: the last tie-break when applying
    t.string('name').notNullable();
    t.string('currency').notNullable();
    t.string('amount').notNullable(); // decimal string, per recurrence for recurring grants
    t.integer('priority').notNullable(); // lower first
    t.bigInteger('effective_at').notNullable();
    t.bigInteger('expires_at'); // null: never
    t.string('recurring'); // null | monthly
    t.string('source').notNullable(); // grant | credit_note
    t.bigInteger('created_at').notNullable();
    t.bigInteger('voided_at');
    t.primary(['tenant_id', 'id']);
    t.unique(['tenant_id', 'seq']);
  });
  // What an invoice took from a grant (recurrence `instance` of a recurring one, else 0). A use on a
  // void invoice does not count: voiding gives the credit back to the reissue.
  await knex.schema.createTable('credit_uses', (t) => {
    t.string('tenant_id').notNullable();
    t.string('grant_id').notNullable();
    t.integer('instance').notNullable();
    t.string('invoice_id').notNullable();
    t.string('amount').notNullable();
    t.primary(['tenant_id', 'grant_id', 'instance', 'invoice_id']);
    t.foreign(['tenant_id', 'grant_id']).references(['tenant_id', 'id']).inTable('credit_grants');
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
  });
  await knex.schema.alterTable('invoices', (t) => {
    t.string('credit_note_total'); // gross credit notes on this invoice; null: none
  });
  await knex.schema.createTable('credit_notes', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable(); // cn_<random>
    t.string('number').notNullable().unique(); // CN-000001
    t.string('invoice_id').notNullable();
    t.integer('line_no'); // null: an amount off the whole invoice
    t.string('currency').notNullable();
    t.string('amount').notNullable(); // gross
    t.string('tax_amount').notNullable(); // its tax share, pro rata
    t.string('due_reduction').notNullable(); // what it took off the amount due
    t.string('credited').notNullable(); // what became a prepaid credit grant (or refund)
    t.string('grant_id'); // the grant it became, if any
    t.boolean('refund').notNullable();
    t.text('reason').notNullable();
    t.bigInteger('created_at').notNullable();
    t.primary(['tenant_id', 'id']);
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
  });
  await knex('invoice_counters').insert({ issuer: 'credit_note', last_number: 0 });
}

export async function down(knex: Knex): Promise<void> {
  await knex('invoice_counters').where('issuer', 'credit_note').del();
  await knex.schema.dropTableIfExists('credit_notes');
  await knex.schema.alterTable('invoices', (t) => t.dropColumn('credit_note_total'));
  await knex.schema.dropTableIfExists('credit_uses');
  await knex.schema.dropTableIfExists('credit_grants');
  await knex.schema.dropTableIfExists('coupons');
  await knex.schema.dropTableIfExists('default_tax_rates');
  await knex.schema.dropTableIfExists('tenant_tax_rates');
  await knex.schema.alterTable('tenants', (t) => t.dropColumn('taxes_set'));
  await knex.schema.alterTable('plan_versions', (t) => t.dropColumn('minimum_commitment'));
}
