import type { Knex } from 'knex';

// Invoices (DESIGN.md §8). Amounts are decimal strings in major units plus the rounded
// integer in minor units; instants are epoch ms; tenant_id leads every key.

export async function up(knex: Knex): Promise<void> {
  // One row per issuer; bumped in the invoice's own transaction so numbers have no gaps.
  await knex.schema.createTable('invoice_counters', (t) => {
    t.string('issuer').primary();
    t.bigInteger('last_number').notNullable();
  });
  await knex('invoice_counters').insert({ issuer: 'default', last_number: 0 });

  await knex.schema.createTable('invoices', (t) => {
    t.string('tenant_id').notNullable();
    t.string('id').notNullable(); // in_<random>
    t.string('number').notNullable().unique(); // INV-000001, sequential per issuer
    t.string('subscription_id').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.string('status').notNullable(); // draft | open | paid | void | uncollectible
    t.string('currency', 3).notNullable();
    t.string('subtotal').notNullable();
    t.string('total').notNullable();
    t.bigInteger('total_minor').notNullable();
    t.bigInteger('issued_at').notNullable();
    t.bigInteger('due_at').notNullable();
    t.bigInteger('finalized_at');
    t.bigInteger('voided_at');
    t.text('void_reason');
    t.bigInteger('paid_at');
    t.string('payment_ref'); // e.g. the Stripe invoice or payment id that settled it
    t.bigInteger('uncollectible_at');
    t.string('supersedes'); // id of the void invoice this one reissues
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'id']);
    t.index(['id']); // lookups by id alone (show, finalize, void)
    t.index(['status', 'tenant_id']);
  });
  // One current invoice per subscription period; a void one may be reissued.
  await knex.raw(
    `CREATE UNIQUE INDEX invoices_current_period ON invoices (tenant_id, subscription_id, period_start) WHERE status <> 'void'`,
  );

  await knex.schema.createTable('invoice_lines', (t) => {
    t.string('tenant_id').notNullable();
    t.string('invoice_id').notNullable();
    t.integer('line_no').notNullable();
    t.string('kind').notNullable(); // base_fee | overage | late_usage | credit | minimum
    t.string('feature_key');
    t.text('description').notNullable();
    t.string('quantity'); // decimal string (units, or seconds for base fee proration)
    t.string('unit_price');
    t.string('amount_precise').notNullable();
    t.string('amount').notNullable();
    t.bigInteger('amount_minor').notNullable();
    t.bigInteger('period_start').notNullable(); // the period the line is FOR
    t.bigInteger('period_end').notNullable();
    t.string('plan_key');
    t.integer('plan_version');
    t.text('price_snapshot'); // JSON
    t.text('details'); // JSON
    t.primary(['tenant_id', 'invoice_id', 'line_no']);
    t.foreign(['tenant_id', 'invoice_id']).references(['tenant_id', 'id']).inTable('invoices');
    t.index(['tenant_id', 'feature_key', 'period_start']); // what was already billed for a period
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('invoice_lines');
  await knex.schema.dropTableIfExists('invoices');
  await knex.schema.dropTableIfExists('invoice_counters');
}
