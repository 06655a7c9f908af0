import type { Knex } from 'knex';

// DESIGN.md §15: outgoing webhooks. Endpoints are global (operator configuration); events and
// deliveries carry tenant_id, null only for events that belong to no tenant. An event's id is
// globally unique (receivers dedupe on it), so it is the key; tenant_id leads the lookup
// indexes so the tables can be distributed by tenant later. No triggers.
export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('webhook_endpoints', (t) => {
    t.string('id').primary(); // we_<random>
    t.text('url').notNullable();
    t.text('secret').notNullable(); // HMAC key: never printed, audited or logged
    t.text('events').notNullable(); // JSON array of event types, or ["*"]
    t.boolean('enabled').notNullable().defaultTo(true);
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
  });
  await knex.schema.createTable('webhook_events', (t) => {
    t.string('id').primary(); // evt_<random>
    t.string('tenant_id'); // null: not a tenant's event
    t.string('type').notNullable();
    t.bigInteger('created_at').notNullable(); // epoch ms; the body's `created` is its seconds
    t.text('body').notNullable(); // the exact JSON sent, frozen at write time
    t.index(['tenant_id', 'created_at']);
  });
  await knex.schema.createTable('webhook_deliveries', (t) => {
    t.string('id').primary(); // whd_<random>
    t.string('tenant_id'); // the event's
    t.string('event_id').notNullable();
    t.string('endpoint_id').notNullable();
    t.string('status').notNullable(); // pending | delivered | failed (dead letter)
    t.integer('attempts').notNullable().defaultTo(0);
    t.bigInteger('next_attempt_at').notNullable();
    t.string('lease_owner'); // the run sending it now
    t.bigInteger('lease_until');
    t.integer('last_status_code');
    t.text('last_error');
    t.bigInteger('delivered_at');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.unique(['event_id', 'endpoint_id']);
    t.index(['tenant_id', 'event_id']);
    t.index(['status', 'next_attempt_at']);
    t.index(['endpoint_id']);
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['webhook_deliveries', 'webhook_events', 'webhook_endpoints']) {
    await knex.schema.dropTableIfExists(table);
  }
}
