import type { Knex } from 'knex';

// Conventions: instants are epoch milliseconds (bigint); quantities are integers of
// micro-units (bigint, see src/domain/quantity.ts); prices and amounts are decimal strings;
// every tenant-owned table has tenant_id leading its primary key or unique index.

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('db_meta', (t) => {
    t.string('key').primary();
    t.text('value');
  });
  await knex('db_meta').insert({ key: 'write_lock', value: '0' });

  await knex.schema.createTable('features', (t) => {
    t.string('key').primary();
    t.string('name').notNullable();
    t.string('unit');
    t.string('type').notNullable(); // metered | boolean
    t.string('aggregation').notNullable(); // sum | count | max | last | unique
    t.string('unique_by');
    t.string('stripe_meter');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
  });

  await knex.schema.createTable('plans', (t) => {
    t.string('key').primary();
    t.integer('current_version').notNullable();
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
  });

  await knex.schema.createTable('plan_versions', (t) => {
    t.string('plan_key').notNullable().references('plans.key');
    t.integer('version').notNullable();
    t.string('name').notNullable();
    t.string('currency', 3).notNullable();
    t.string('price').notNullable();
    t.string('interval').notNullable(); // month | year
    t.integer('trial_days').notNullable().defaultTo(0);
    t.bigInteger('created_at').notNullable();
    t.primary(['plan_key', 'version']);
  });

  await knex.schema.createTable('plan_features', (t) => {
    t.string('plan_key').notNullable();
    t.integer('version').notNullable();
    t.string('feature_key').notNullable().references('features.key');
    t.boolean('enabled').notNullable().defaultTo(true);
    t.string('included'); // null = unlimited
    t.boolean('hard_stop').notNullable().defaultTo(false);
    t.string('limit');
    t.text('overage'); // JSON Pricing or null
    t.primary(['plan_key', 'version', 'feature_key']);
    t.foreign(['plan_key', 'version']).references(['plan_key', 'version']).inTable('plan_versions');
  });

  await knex.schema.createTable('tenants', (t) => {
    t.string('id').primary();
    t.string('name');
    t.string('currency', 3);
    t.string('stripe_customer_id');
    t.bigInteger('created_at').notNullable();
  });

  await knex.schema.createTable('subscriptions', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('id').notNullable();
    t.string('status').notNullable(); // trialing | active | past_due | canceled
    t.bigInteger('anchor_at').notNullable(); // billing anchor (anniversary)
    t.string('interval').notNullable();
    t.string('currency', 3).notNullable();
    t.bigInteger('started_at').notNullable();
    t.bigInteger('trial_ends_at');
    t.bigInteger('cancel_at'); // scheduled or effective end
    t.bigInteger('canceled_at');
    t.bigInteger('created_at').notNullable();
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'id']);
  });

  // One row per plan in force over [starts_at, ends_at) of a subscription: upgrades,
  // downgrades and cancellations close one segment and (maybe) open the next.
  await knex.schema.createTable('subscription_segments', (t) => {
    t.string('tenant_id').notNullable();
    t.string('subscription_id').notNullable();
    t.integer('seq').notNullable();
    t.string('plan_key').notNullable();
    t.integer('plan_version').notNullable();
    t.bigInteger('starts_at').notNullable();
    t.bigInteger('ends_at'); // null = open-ended
    t.bigInteger('created_at').notNullable();
    t.primary(['tenant_id', 'subscription_id', 'seq']);
    t.foreign(['tenant_id', 'subscription_id']).references(['tenant_id', 'id']).inTable('subscriptions');
  });

  await knex.schema.createTable('quota_overrides', (t) => {
    t.string('tenant_id').notNullable().references('tenants.id');
    t.string('feature_key').notNullable().references('features.key');
    t.string('included'); // null with included_set = unlimited
    t.boolean('included_set').notNullable().defaultTo(false);
    t.string('unit_price');
    t.boolean('hard_stop');
    t.string('limit');
    t.bigInteger('updated_at').notNullable();
    t.primary(['tenant_id', 'feature_key']);
  });

  await knex.schema.createTable('ingest_runs', (t) => {
    t.increments('id').primary();
    t.string('source').notNullable();
    t.string('status').notNullable(); // running | completed | failed
    t.bigInteger('started_at').notNullable();
    t.bigInteger('finished_at');
    t.integer('read').notNullable().defaultTo(0);
    t.integer('inserted').notNullable().defaultTo(0);
    t.integer('duplicates').notNullable().defaultTo(0);
    t.integer('rejected').notNullable().defaultTo(0);
  });

  await knex.schema.createTable('usage_events', (t) => {
    t.bigIncrements('seq').primary(); // ingest order; the aggregation watermark
    t.string('tenant_id').notNullable();
    t.string('idempotency_key').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('quantity').notNullable(); // micro-units
    t.bigInteger('occurred_at').notNullable();
    t.bigInteger('ingested_at').notNullable();
    t.string('event_id');
    t.string('source_service');
    t.string('source_entity_id');
    t.string('user_id');
    t.text('metadata'); // JSON object or null
    t.integer('ingest_run_id');
    t.unique(['tenant_id', 'idempotency_key']);
    t.index(['tenant_id', 'feature_key', 'occurred_at']);
  });

  await knex.schema.createTable('audit_log', (t) => {
    t.bigIncrements('id').primary();
    t.bigInteger('at').notNullable();
    t.string('actor').notNullable();
    t.string('tenant_id');
    t.string('entity').notNullable();
    t.string('entity_id').notNullable();
    t.string('action').notNullable();
    t.text('before');
    t.text('after');
    t.index(['tenant_id', 'at']);
  });

  await knex.schema.createTable('usage_summaries', (t) => {
    t.string('tenant_id').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.string('subscription_id');
    t.bigInteger('quantity').notNullable(); // micro-units, per the feature's aggregation
    t.integer('event_count').notNullable();
    t.bigInteger('computed_at').notNullable();
    t.primary(['tenant_id', 'feature_key', 'period_start']);
  });

  // Rated charges: one per summary, the overage stage's output and the invoice's input.
  await knex.schema.createTable('rated_charges', (t) => {
    t.string('tenant_id').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.string('plan_key');
    t.integer('plan_version');
    t.string('currency', 3).notNullable();
    t.string('used').notNullable();
    t.string('included'); // null = unlimited
    t.string('billable').notNullable();
    t.string('amount_precise').notNullable();
    t.string('amount').notNullable(); // rounded, major units
    t.bigInteger('amount_minor').notNullable();
    t.boolean('hard_stop').notNullable();
    t.boolean('is_exceeded').notNullable();
    t.text('price_snapshot'); // JSON: the terms used (after overrides)
    t.text('details'); // JSON: pricer lines ("tier-1", ...)
    t.bigInteger('rated_at').notNullable();
    t.primary(['tenant_id', 'feature_key', 'period_start']);
  });

  await knex.schema.createTable('job_state', (t) => {
    t.string('key').primary(); // e.g. aggregate.watermark
    t.string('value');
    t.bigInteger('updated_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of [
    'job_state',
    'rated_charges',
    'usage_summaries',
    'audit_log',
    'usage_events',
    'ingest_runs',
    'quota_overrides',
    'subscription_segments',
    'subscriptions',
    'tenants',
    'plan_features',
    'plan_versions',
    'plans',
    'features',
    'db_meta',
  ]) {
    await knex.schema.dropTableIfExists(table);
  }
}
