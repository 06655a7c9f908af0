import type { Knex } from 'knex';

// Scratch and bookkeeping tables of the aggregate stage (src/aggregate/README.md). The
// scratch tables are cleared at the start of every run, inside the run's transaction.

export async function up(knex: Knex): Promise<void> {
  // For `last` features: the latest event folded in, so new events can be merged into the
  // summary without re-reading the period.
  await knex.schema.alterTable('usage_summaries', (t) => {
    t.bigInteger('last_at');
    t.bigInteger('last_seq');
  });

  // The distinct values behind each `unique` summary, so that new events can be merged into
  // it (a value already seen adds nothing) without re-reading the period.
  await knex.schema.createTable('usage_unique_values', (t) => {
    t.string('tenant_id').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('period_start').notNullable();
    t.text('value').notNullable();
    t.primary(['tenant_id', 'feature_key', 'period_start', 'value']);
  });

  // Billing-period windows of the tenants a run looks at (computed in JS, joined in SQL), cut
  // into pieces [lo, hi) that each lie in one fixed-width time bucket, so that a full scan of
  // usage_events can find an event's window with an equi-join on (tenant_id, bucket).
  await knex.schema.createTable('aggregate_windows', (t) => {
    t.integer('window_id').notNullable(); // the same for every piece of one window
    t.string('tenant_id').notNullable();
    t.bigInteger('bucket').notNullable();
    t.bigInteger('lo').notNullable();
    t.bigInteger('hi').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.string('subscription_id');
    t.primary(['tenant_id', 'bucket', 'lo']);
  });

  // The (tenant, feature, period) groups a run touches; `whole` = 1 when the group is
  // recomputed from all its events rather than merged with its new ones.
  await knex.schema.createTable('aggregate_groups', (t) => {
    t.string('tenant_id').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('period_start').notNullable();
    t.bigInteger('period_end').notNullable();
    t.string('subscription_id');
    t.integer('whole').notNullable();
    t.primary(['tenant_id', 'feature_key', 'period_start']);
  });

  // The events a run folds in, each with its window: read once, then merged from here.
  await knex.schema.createTable('aggregate_delta', (t) => {
    t.integer('window_id').notNullable();
    t.string('feature_key').notNullable();
    t.bigInteger('quantity').notNullable();
    t.bigInteger('occurred_at').notNullable();
    t.bigInteger('seq').notNullable();
    t.string('user_id');
    t.text('metadata');
    t.integer('fresh').notNullable(); // 1: above the watermark; 0: found in a hole
  });

  // What each tenant's summaries were cut by: when its subscriptions change (new start,
  // cancellation), its periods move and the tenant is rebuilt.
  await knex.schema.createTable('aggregate_tenants', (t) => {
    t.string('tenant_id').primary();
    t.text('windows_key').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  for (const table of ['aggregate_tenants', 'aggregate_delta', 'aggregate_groups', 'aggregate_windows', 'usage_unique_values']) {
    await knex.schema.dropTableIfExists(table);
  }
  await knex.schema.alterTable('usage_summaries', (t) => {
    t.dropColumn('last_at');
    t.dropColumn('last_seq');
  });
}
