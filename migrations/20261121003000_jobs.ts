import type { Knex } from 'knex';

// Batch jobs (DESIGN.md §10): one row per run of a stage, and the lease rows that keep one
// run of a job at a time on SQLite (PostgreSQL uses advisory locks instead).

export async function up(knex: Knex): Promise<void> {
  await knex.schema.createTable('job_runs', (t) => {
    t.bigIncrements('id').primary();
    t.string('job').notNullable(); // aggregate | overage | invoice | stripe-sync | stripe-retry | dunning
    t.string('owner').notNullable(); // host:pid:nonce of the process that ran it
    t.string('trigger').notNullable(); // run | daemon
    t.bigInteger('scheduled_at'); // the daemon tick this run belongs to (null for `billing run`)
    t.bigInteger('started_at').notNullable();
    t.bigInteger('finished_at');
    t.string('status').notNullable(); // running | succeeded | failed | skipped
    t.text('counts'); // JSON object of the stage's counts
    t.text('error'); // "code: message" when failed, the reason when skipped
    t.index(['job', 'started_at']);
    t.index(['job', 'scheduled_at']);
  });

  await knex.schema.createTable('job_locks', (t) => {
    t.string('job').primary();
    t.string('owner').notNullable();
    t.bigInteger('acquired_at').notNullable();
    t.bigInteger('expires_at').notNullable();
  });
}

export async function down(knex: Knex): Promise<void> {
  await knex.schema.dropTableIfExists('job_locks');
  await knex.schema.dropTableIfExists('job_runs');
}
