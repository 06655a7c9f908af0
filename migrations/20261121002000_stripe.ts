import type { Knex } from 'knex';

// Stripe sync (DESIGN.md §9): the outbox of calls to make, the Stripe invoice behind each
// local one, processed webhook events and dunning. The customer id lives on
// tenants.stripe_customer_id; the events cursor and meter watermark live in job_state.

export async function up(knex: Knex): Promise<void> {
  // One row per Stripe call, written in the transaction of the local change that needs it.
  await knex.schema.createTable('stripe_outbox', (t) => {
    t.string('tenant_id').notNullable();
    t.string('idempotency_key', 255).notNullable(); // deterministic from the local id
    t.string('kind').notNullable(); // customer | invoice | invoice_item | invoice_finalize | invoice_pay | meter_event
    t.string('local_ref').notNullable(); // tenant, invoice, invoice:line or usage event seq
    t.text('payload').notNullable(); // JSON: Stripe params, minus ids resolved at send time
    t.string('status').notNullable(); // pending | sent | failed | dead
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at').notNullable();
    t.bigInteger('first_attempt_at'); // idempotency keys expire 24 h after first use
    t.text('last_error');
    t.string('stripe_id');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'idempotency_key']);
    t.index(['tenant_id', 'kind', 'local_ref']);
    t.index(['status', 'next_attempt_at']);
  });

  await knex.schema.createTable('stripe_invoices', (t) => {
    t.string('tenant_id').notNullable();
    t.string('invoice_id').notNullable();
    t.string('stripe_invoice_id').notNullable();
    t.string('stripe_status').notNullable(); // draft | open | paid | void | uncollectible | deleted (a draft)
    t.string('stripe_number');
    t.bigInteger('amount_due'); // minor units, as Stripe computed it at finalization
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'invoice_id']);
    t.index(['stripe_invoice_id']); // webhooks arrive with Stripe's id
  });

  // Stripe event ids already applied (webhook or `stripe events`): each applies once.
  await knex.schema.createTable('stripe_events', (t) => {
    t.string('event_id').primary();
    t.string('type').notNullable();
    t.string('tenant_id');
    t.bigInteger('created_at').notNullable(); // Stripe's `created`, epoch ms
    t.bigInteger('received_at').notNullable();
    t.string('outcome').notNullable(); // applied | ignored
    t.text('detail');
  });

  await knex.schema.createTable('stripe_dunning', (t) => {
    t.string('tenant_id').notNullable();
    t.string('invoice_id').notNullable();
    t.string('stripe_invoice_id').notNullable();
    t.string('status').notNullable(); // active | recovered | exhausted | closed
    t.bigInteger('started_at').notNullable(); // the first payment failure
    t.integer('retries_done').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at'); // null once no longer active
    t.text('last_error');
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'invoice_id']);
    t.index(['status', 'next_attempt_at']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['stripe_dunning', 'stripe_events', 'stripe_invoices', 'stripe_outbox']) {
    await knex.schema.dropTableIfExists(table);
  }
}
